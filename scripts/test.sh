#!/usr/bin/env bash
# Installs the build and test dependencies (apt, pip), then runs the whole test suite: the Swift
# tests, then the local stage's own tests. Tests start their own peers (nginx-rtmp, stunnel,
# moto_server, the aiortc stage) on loopback and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# One test at a time: many tests run real peers and measure time, levels, file descriptors and
# memory; run side by side on 2 cores they disturb each other's figures.
swift test --no-parallel "$@"
# The release binary as the image builds it, for the deployment checks.
swift build -c release --static-swift-stdlib --product shelcaster-composer
export SHELCASTER_RELEASE_BINARY="$(swift build -c release --static-swift-stdlib --show-bin-path)/shelcaster-composer"
# The local stage stand-in (stage/) is a peer the Swift tests rely on: its own tests, then the
# deployment checks (task definition against the ECS model, image libraries against the binary).
python3 -m pytest -q -p no:cacheprovider stage/test_localstage.py deploy/test_deploy.py
