#!/usr/bin/env bash
# Installs the build and test dependencies (apt, pip), then runs the whole test suite: the Swift
# tests, then the local stage's own tests. Tests start their own peers (nginx-rtmp, stunnel,
# moto_server, the aiortc stage) on loopback and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
swift test "$@"
# The local stage stand-in (stage/) has its own tests: it is a peer the Swift tests rely on.
python3 -m pytest -q -p no:cacheprovider stage/test_localstage.py
