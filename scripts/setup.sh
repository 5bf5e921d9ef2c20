#!/usr/bin/env bash
# Installs what building, running and testing the worker needs on Debian 12. Idempotent and quiet
# when everything is already there; run as root (or with sudo available).
set -euo pipefail

BUILD_PKGS=(pkg-config libavformat-dev libavcodec-dev libavfilter-dev libswresample-dev libswscale-dev
            libavutil-dev libsrtp2-dev libopus-dev libssl-dev libcurl4-openssl-dev)
# Test peers and tools: ffmpeg/ffprobe to check outputs, nginx-rtmp + stunnel as the ingest,
# espeak-ng/sox to regenerate fixtures.
TEST_PKGS=(ffmpeg nginx-light libnginx-mod-rtmp stunnel4 espeak-ng sox openssl)

want=("${BUILD_PKGS[@]}")
if [[ "${1:-}" == "--test" ]]; then want+=("${TEST_PKGS[@]}"); else want+=(ffmpeg); fi

missing=()
for p in "${want[@]}"; do
  # Any nginx flavour hosts the rtmp module; only install nginx-light when none is there.
  [[ "$p" == nginx-light ]] && command -v nginx >/dev/null && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged nginx starts a server on port 80 when installed; the tests run their own on loopback.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then systemctl stop nginx || true; fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6 toolchain needed)" >&2; exit 1; }

# Python peers for the tests: moto_server (DynamoDB, S3, IVS) and aiortc (a real WebRTC/DTLS peer,
# also behind the local stage in stage/).
if [[ "${1:-}" == "--test" ]]; then
  py_missing=()
  python3 -c "import moto, flask, flask_cors" 2>/dev/null && command -v moto_server >/dev/null || py_missing+=("moto[server]>=5,<6")
  python3 -c "import aiortc" 2>/dev/null || py_missing+=("aiortc>=1.9,<2")
  if [[ -f stage/requirements.txt ]] && ! python3 -c "import aiohttp, jwt" 2>/dev/null; then py_missing+=(-r stage/requirements.txt); fi
  if ((${#py_missing[@]})); then
    echo "setup: pip installing ${py_missing[*]}" >&2
    python3 -m pip install -q --disable-pip-version-check "${py_missing[@]}"
  fi
fi
