#!/usr/bin/env bash
# Builds the worker and runs the local demo show (bundled fixtures) into out/demo.flv, then
# describes what it produced.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product shelcaster-composer 2>&1 | grep -E "error|warning: |Compiling|Build complete" | grep -v "^\[" || true
bin="$(swift build -c release --show-bin-path)/shelcaster-composer"
mkdir -p out
"$bin" local fixtures/demo/manifest.json --output out/demo.flv "$@"
echo "--- out/demo.flv (ffprobe):"
ffprobe -v error -show_entries format=duration,size:stream=codec_type,codec_name,sample_rate,channels,width,height \
  -of compact=p=0:nk=0 out/demo.flv
