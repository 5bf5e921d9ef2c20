#!/usr/bin/env bash
# The live receive path per participant (ICE + DTLS-SRTP + jitter buffer + Opus decode + its mixer
# input): CPU % of one core and the jitter buffer's arrival → render latency. Runs
# `shelcaster-composer join` against the local stage (stage/localstage.py) with 1 and with 5
# publishing participants (tones). See bench/README.md, "join.sh and soak.sh".
#
#   bench/join.sh [--seconds S] [--startup-seconds S] [--repeat N] [--no-build] [--bin PATH]
#
# A measurement, not a test: exits 0 whether or not the goals are met (non-zero only when it cannot
# measure at all). Everything runs on 127.0.0.1; the stage and every run are stopped on exit.
set -uo pipefail

SECONDS_LONG=30     # program seconds of the measured runs
SECONDS_SHORT=1     # the start-up run, subtracted
REPEAT=3            # rounds (N=1 and N=5, short and long, interleaved); the table shows medians
BUILD=1
BIN=""

while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_LONG="${2:?--seconds needs a number}"; shift 2 ;;
        --startup-seconds) SECONDS_SHORT="${2:?--startup-seconds needs a number}"; shift 2 ;;
        --repeat) REPEAT="${2:?--repeat needs a number}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --bin) BIN="${2:?--bin needs a path}"; BUILD=0; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "join.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
case "$SECONDS_LONG$SECONDS_SHORT$REPEAT" in *[!0-9]*) echo "join.sh: --seconds, --startup-seconds and --repeat take whole numbers" >&2; exit 2 ;; esac
[ "$REPEAT" -ge 1 ] && [ "$SECONDS_SHORT" -ge 1 ] && [ "$SECONDS_LONG" -gt "$SECONDS_SHORT" ] \
    || { echo "join.sh: need --repeat >= 1 and --seconds > --startup-seconds >= 1" >&2; exit 2; }

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
# Release with the Swift runtime linked in, as the Dockerfile builds it. Its own scratch path:
# run.sh's .build-bench is built without --static-swift-stdlib and would be relinked each time.
SCRATCH="$ROOT/.build-bench-static"
[ -n "$BIN" ] || BIN="$SCRATCH/release/shelcaster-composer"

TMP="$(mktemp -d /tmp/shelcaster-join.XXXXXX)"
STAGE_PID=""
CHILD=""
stop_pid() {  # stop_pid PID: TERM, up to 5 s, then KILL
    local p="$1" i
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null
    for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
}
cleanup() {
    stop_pid "$CHILD"
    stop_pid "$STAGE_PID"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "join.sh: interrupted" >&2; exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }

# --- tools
if [ ! -x /usr/bin/time ]; then
    say "GNU time is missing: installing it (apt-get install -y time)"
    { apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y time >/dev/null 2>&1; }; } \
        || { say "join.sh: could not install GNU time (/usr/bin/time)"; exit 1; }
fi
for t in python3 timeout; do command -v "$t" >/dev/null || { say "join.sh: $t is required"; exit 1; }; done
python3 -c 'import aiortc, aiohttp, jwt' 2>/dev/null \
    || { say "join.sh: the stage needs aiortc, aiohttp and PyJWT (pip install -r stage/requirements.txt)"; exit 1; }

# --- the release binary (incremental: a no-op when nothing changed)
if [ "$BUILD" = 1 ]; then
    say "building: swift build -c release --static-swift-stdlib --scratch-path $SCRATCH --product shelcaster-composer"
    if ! (cd "$ROOT" && swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --product shelcaster-composer) \
            >"$TMP/build.log" 2>&1; then
        if [ -x "$BIN" ]; then
            say "WARNING: the build failed (the tree may be mid-edit); measuring the existing binary from $(date -r "$BIN" '+%F %T')."
            grep -m5 'error:' "$TMP/build.log" >&2
        else
            say "join.sh: the build failed and there is no binary to measure:"; tail -20 "$TMP/build.log" >&2; exit 1
        fi
    fi
fi
[ -x "$BIN" ] || { say "join.sh: no binary at $BIN (run without --no-build, or give --bin)"; exit 1; }

# --- the stage: host + 4 callers publishing tones (350/550/750/950/1150 Hz, 0.25). N=1 runs turn
# the callers' publishing off through the admin hook, so both N share one stage process.
cat >"$TMP/stage.json" <<'EOF'
{"stageId": "st-local", "participants": [
 {"id": "host", "userId": "host-1", "role": "HOST"},
 {"id": "caller-1", "userId": "caller-1-user", "role": "CALLER"},
 {"id": "caller-2", "userId": "caller-2-user", "role": "CALLER"},
 {"id": "caller-3", "userId": "caller-3-user", "role": "CALLER"},
 {"id": "caller-4", "userId": "caller-4-user", "role": "CALLER"}]}
EOF
# Every caller on air so each one's voice really goes through the mix; dynamics as by default.
echo '{"onAirCallerIds": ["caller-1", "caller-2", "caller-3", "caller-4"]}' >"$TMP/routing.json"

python3 "$ROOT/stage/localstage.py" serve --port 0 --key-file "$TMP/stage-key.pem" --config "$TMP/stage.json" \
    >"$TMP/stage.out" 2>"$TMP/stage.err" &
STAGE_PID=$!
PORT=""
for ((i = 0; i < 300; i++)); do
    PORT="$(sed -n 's/^READY \([0-9]*\)$/\1/p' "$TMP/stage.out" | head -1)"
    [ -n "$PORT" ] && break
    kill -0 "$STAGE_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$PORT" ] || { say "join.sh: the stage did not start:"; tail -5 "$TMP/stage.err" >&2; exit 1; }
say "stage: 127.0.0.1:$PORT (pid $STAGE_PID)"

# publishing N: host always; caller-1..4 only when N=5
set_publishing() {
    local on="$1" c
    for c in caller-1 caller-2 caller-3 caller-4; do
        python3 - "$PORT" "$c" "$on" <<'EOF' || return 1
import json, sys, urllib.request
port, pid, on = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
req = urllib.request.Request(f"http://127.0.0.1:{port}/_admin/participant", method="POST",
                             data=json.dumps({"id": pid, "set": {"publishing": on}}).encode(),
                             headers={"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=10).read()
EOF
    done
}

RESULTS="$TMP/results.jsonl"
: >"$RESULTS"
RUN_NO=0
# measure N SECONDS ITER: one `join` under GNU time, its summary recorded.
measure() {
    local n="$1" secs="$2" iter="$3" label="n$1-$2s-$3" rc t0 t1
    RUN_NO=$((RUN_NO + 1))
    if [ "$n" = 5 ]; then set_publishing 1; else set_publishing 0; fi || { say "join.sh: the stage's admin hook failed"; return 1; }
    sleep 1   # the stage's STAGE_STATE settles before the worker connects
    # A fresh participant id per run: the stage lists each connected client in STAGE_STATE.
    local token
    token="$(python3 "$ROOT/stage/localstage.py" token --key-file "$TMP/stage-key.pem" --stage st-local \
        --participant "bench-worker-$RUN_NO" --user bench-worker --subscribe --attr role=VIRTUAL_PARTICIPANT --port "$PORT")" \
        || { say "join.sh: could not mint a token"; return 1; }
    t0=$(date +%s%N)
    # The token goes through STAGE_TOKEN, not argv (it would show in the process list).
    STAGE_TOKEN="$token" LOG_LEVEL=info timeout -k 5 "$((secs + 90))" /usr/bin/time -v -o "$TMP/$label.time" \
        "$BIN" join --output "$TMP/$label.wav" --duration "$secs" --routing "$TMP/routing.json" \
        >"$TMP/$label.out" 2>"$TMP/$label.err" &
    CHILD=$!
    wait "$CHILD"; rc=$?
    CHILD=""
    t1=$(date +%s%N)
    [ "$rc" = 0 ] || { say "  $label exited $rc:"; tail -5 "$TMP/$label.err" >&2; }
    python3 "$BENCH/join_report.py" record "$RESULTS" "$label" "$n" "$secs" "$iter" "$rc" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" "$TMP/$label.time" "$TMP/$label.out"
    say "  $(python3 "$BENCH/join_report.py" last "$RESULTS")"
    rm -f "$TMP/$label.wav"
}

say "runs: N=1 and N=5 publishing participants, ${SECONDS_SHORT} s and ${SECONDS_LONG} s of program each, $REPEAT round(s)"
for ((r = 1; r <= REPEAT; r++)); do
    measure 1 "$SECONDS_SHORT" "$r"
    measure 1 "$SECONDS_LONG" "$r"
    measure 5 "$SECONDS_SHORT" "$r"
    measure 5 "$SECONDS_LONG" "$r"
done
say "join summary of the last N=5 run:"
sed 's/^/  /' "$TMP/n5-${SECONDS_LONG}s-$REPEAT.out" >&2

python3 "$BENCH/join_report.py" table "$RESULTS" "$SECONDS_SHORT" "$SECONDS_LONG"
exit 0
