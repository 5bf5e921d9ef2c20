#!/usr/bin/env bash
# Installs the build and test dependencies (apt), then runs the whole test suite. The tests start
# their own peers (nginx-rtmp, stunnel) on loopback and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
swift test "$@"
