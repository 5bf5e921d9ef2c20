#!/usr/bin/env bash
# A real-time soak of `shelcaster-composer run` (the ECS task): host + 4 callers on the local stage,
# a looping music bed from S3, compressor, limiter and ducking on, streamed into nginx-rtmp; moto
# plays DynamoDB and S3. Samples the worker's CPU and RSS after a warm-up and at the end, counts
# heartbeats and reconnects, then stops it with SIGTERM. See bench/README.md, "join.sh and soak.sh".
#
#   SOAK_SECONDS=600 bench/soak.sh [--seconds S] [--no-build] [--bin PATH] [--keep] [--perf S]
#
# --keep leaves the logs, samples and the nginx recording in /tmp/shelcaster-soak.* (path printed).
# --perf S: after the last sample (outside the measured window), `perf record` the worker for S s
# and list where its CPU goes.
# SOAK_HEARTBEAT_S sets HEARTBEAT_INTERVAL_S (default: unset, the worker's 5 s). A measurement, not
# a test: exits 0 whether or not the goals are met. Everything on 127.0.0.1 (the worker's health
# port listens on all interfaces, as in ECS); every process it started is stopped on exit.
set -uo pipefail

SOAK="${SOAK_SECONDS:-600}"
WARMUP=30           # the first sample; CPU and RSS growth are measured from here to the end
SAMPLE_EVERY=30
BUILD=1
BIN=""
KEEP=0
PERF_S=0            # > 0: perf profile of the worker for this long after the last sample

while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SOAK="${2:?--seconds needs a number}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --bin) BIN="${2:?--bin needs a path}"; BUILD=0; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --perf) PERF_S="${2:?--perf needs seconds}"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "soak.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
case "$SOAK$PERF_S" in ''|*[!0-9]*) echo "soak.sh: the soak length and --perf take whole seconds" >&2; exit 2 ;; esac
[ "$SOAK" -gt "$WARMUP" ] || { echo "soak.sh: the soak must last more than the ${WARMUP} s warm-up" >&2; exit 2; }

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
SCRATCH="$ROOT/.build-bench-static"   # shared with join.sh (release, --static-swift-stdlib)
[ -n "$BIN" ] || BIN="$SCRATCH/release/shelcaster-composer"
MUSIC="$ROOT/fixtures/tones/music/t3-2100.wav"
NGINX_MODULE=/usr/lib/nginx/modules/ngx_rtmp_module.so

TMP="$(mktemp -d /tmp/shelcaster-soak.XXXXXX)"
chmod 755 "$TMP"
MOTO_PID="" NGINX_PID="" STAGE_PID="" WORKER_PID="" WATCH_PID=""
stop_pid() {  # stop_pid PID [SIGNAL]: the signal (TERM), up to 5 s, then KILL
    local p="$1" sig="${2:-TERM}" i
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
    kill -"$sig" "$p" 2>/dev/null
    for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p"
} 2>/dev/null   # also bash's "Killed" job notice
cleanup() {
    stop_pid "$WORKER_PID" KILL
    stop_pid "$WATCH_PID"
    stop_pid "$STAGE_PID"
    stop_pid "$NGINX_PID" KILL   # nginx waits for its publisher on TERM
    stop_pid "$MOTO_PID" KILL    # moto waits for idle client connections on TERM
    if [ "$KEEP" = 1 ]; then echo "soak.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'echo "soak.sh: interrupted" >&2; exit 130' INT TERM

say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
die() { say "soak.sh: $*"; exit 1; }

# --- tools
for t in python3 nginx moto_server ffprobe; do command -v "$t" >/dev/null || die "$t is required"; done
[ -f "$NGINX_MODULE" ] || die "the nginx RTMP module is missing ($NGINX_MODULE: apt-get install libnginx-mod-rtmp)"
python3 -c 'import aiortc, aiohttp, jwt, boto3' 2>/dev/null \
    || die "needs aiortc, aiohttp, PyJWT (pip install -r stage/requirements.txt) and boto3"
[ -f "$MUSIC" ] || die "missing $MUSIC"

# --- the release binary (incremental)
if [ "$BUILD" = 1 ]; then
    say "building: swift build -c release --static-swift-stdlib --scratch-path $SCRATCH --product shelcaster-composer"
    if ! (cd "$ROOT" && swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --product shelcaster-composer) \
            >"$TMP/build.log" 2>&1; then
        if [ -x "$BIN" ]; then
            say "WARNING: the build failed (the tree may be mid-edit); measuring the existing binary from $(date -r "$BIN" '+%F %T')."
            grep -m5 'error:' "$TMP/build.log" >&2
        else
            tail -20 "$TMP/build.log" >&2; die "the build failed and there is no binary to measure"
        fi
    fi
fi
[ -x "$BIN" ] || die "no binary at $BIN (run without --no-build, or give --bin)"

SHOW_ID="show-soak"
STREAM_KEY="sk_soak_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

# --- moto (DynamoDB + S3)
MOTO_PORT="$(python3 "$BENCH/soak.py" port)"
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$TMP/moto.log" 2>&1 &
MOTO_PID=$!
MOTO="http://127.0.0.1:$MOTO_PORT"
python3 "$BENCH/soak.py" wait-http "$MOTO/moto-api/" 45 || die "moto_server did not listen on $MOTO_PORT"
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing python3 "$BENCH/soak.py" setup "$MOTO" "$SHOW_ID" "$MUSIC" \
    >"$TMP/setup.log" 2>&1 || { cat "$TMP/setup.log" >&2; die "could not create the tables and items"; }
say "moto: $MOTO (pid $MOTO_PID): tables, routing (4 callers on air, dynamics + ducking on), tracklist, show"

# --- nginx-rtmp, recording what it receives
RTMP_PORT="$(python3 "$BENCH/soak.py" port)"
mkdir -p "$TMP/ingest/rec"
chmod 777 "$TMP/ingest" "$TMP/ingest/rec"   # nginx may drop privileges to write the recording
cat >"$TMP/ingest/nginx.conf" <<EOF
load_module $NGINX_MODULE;
worker_processes 1;
daemon off;
master_process off;
pid $TMP/ingest/nginx.pid;
error_log $TMP/ingest/error.log info;
events { worker_connections 64; }
rtmp {
  server {
    listen 127.0.0.1:$RTMP_PORT;
    chunk_size 4096;
    application app {
      live on;
      record all;
      record_path $TMP/ingest/rec;
      record_unique off;
    }
  }
}
EOF
nginx -p "$TMP/ingest" -c "$TMP/ingest/nginx.conf" -e "$TMP/ingest/error.log" >/dev/null 2>&1 &
NGINX_PID=$!
for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$RTMP_PORT") 2>/dev/null && break
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$RTMP_PORT") 2>/dev/null || { tail -5 "$TMP/ingest/error.log" >&2; die "nginx did not listen on $RTMP_PORT"; }
say "nginx-rtmp: rtmp://127.0.0.1:$RTMP_PORT/app/ (pid $NGINX_PID)"

# --- the stage: host + 4 callers publishing tones
cat >"$TMP/stage.json" <<'EOF'
{"stageId": "st-local", "participants": [
 {"id": "host", "userId": "host-1", "role": "HOST"},
 {"id": "caller-1", "userId": "caller-1-user", "role": "CALLER"},
 {"id": "caller-2", "userId": "caller-2-user", "role": "CALLER"},
 {"id": "caller-3", "userId": "caller-3-user", "role": "CALLER"},
 {"id": "caller-4", "userId": "caller-4-user", "role": "CALLER"}]}
EOF
python3 "$ROOT/stage/localstage.py" serve --port 0 --key-file "$TMP/stage-key.pem" --config "$TMP/stage.json" \
    >"$TMP/stage.out" 2>"$TMP/stage.err" &
STAGE_PID=$!
STAGE_PORT=""
for ((i = 0; i < 300; i++)); do
    STAGE_PORT="$(sed -n 's/^READY \([0-9]*\)$/\1/p' "$TMP/stage.out" | head -1)"
    [ -n "$STAGE_PORT" ] && break
    kill -0 "$STAGE_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$STAGE_PORT" ] || { tail -5 "$TMP/stage.err" >&2; die "the stage did not start"; }
TOKEN="$(python3 "$ROOT/stage/localstage.py" token --key-file "$TMP/stage-key.pem" --stage st-local \
    --participant worker-soak --user worker --subscribe --attr role=VIRTUAL_PARTICIPANT --port "$STAGE_PORT")" \
    || die "could not mint a stage token"
say "stage: 127.0.0.1:$STAGE_PORT (pid $STAGE_PID), 5 participants publishing"

# --- the worker, with the ECS task's environment (DATA-MODEL.md) and nothing else
HEALTH_PORT="$(python3 "$BENCH/soak.py" port)"
ENV=(PATH=/usr/local/bin:/usr/bin:/bin HOME="$TMP" LOG_LEVEL=info
     SHOW_ID="$SHOW_ID" STAGE_TOKEN="$TOKEN" STAGE_EVENTS_URL="ws://127.0.0.1:$STAGE_PORT"
     STAGE_WHIP_URL="http://127.0.0.1:$STAGE_PORT"
     INGEST_URL="rtmp://127.0.0.1:$RTMP_PORT/app/" STREAM_KEY="$STREAM_KEY"
     AWS_ENDPOINT_URL="$MOTO" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIASOAKBENCH0000001
     AWS_SECRET_ACCESS_KEY=soak-bench-secret-key-0123456789abcdef
     HEALTH_PORT="$HEALTH_PORT" TASK_ARN=arn:aws:ecs:us-east-1:123456789012:task/shelcaster/soak-bench
     SHOWS_TABLE=shelcaster-active-shows PARTICIPANTS_TABLE=shelcaster-participants
     ROUTING_TABLE=shelcaster-audio-routing TRACKLISTS_TABLE=shelcaster-tracklists)
HB_S=5
if [ -n "${SOAK_HEARTBEAT_S:-}" ]; then ENV+=(HEARTBEAT_INTERVAL_S="$SOAK_HEARTBEAT_S"); HB_S="$SOAK_HEARTBEAT_S"; fi

AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing python3 "$BENCH/soak.py" watch "$MOTO" "$SHOW_ID" "$TMP/heartbeats.tsv" \
    2>"$TMP/watch.err" &
WATCH_PID=$!

CLK_TCK="$(getconf CLK_TCK)"
now() { awk '{ print $1 }' /proc/uptime; }   # seconds, the clock /proc/PID/stat's start time uses
# The worker's age in seconds (from its start time in /proc), its CPU ticks (utime + stime, all
# threads) and VmRSS in kB. The comm field is skipped by cutting at ") ".
sample() {
    local stat rss start
    stat="$(sed 's/^.*) //' "/proc/$WORKER_PID/stat" 2>/dev/null)" || return 1
    [ -n "$stat" ] || return 1
    rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$WORKER_PID/status" 2>/dev/null)"
    start="$(awk '{ print $20 }' <<<"$stat")"
    local recon
    recon="$(python3 - "$HEALTH_PORT" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    t = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
    print(next((l.split()[-1] for l in t.splitlines() if l.startswith("shelcaster_output_reconnects ")), "-"))
except Exception:
    print("-")
EOF
)"
    awk -v up="$(now)" -v st="$start" -v hz="$CLK_TCK" -v u="$(awk '{ print $12 + $13 }' <<<"$stat")" \
        -v r="$rss" -v c="${recon:--}" 'BEGIN { printf "%.2f\t%d\t%d\t%s\n", up - st / hz, u, r, c }'
}

# Per thread: tid, CPU ticks, name (/proc/PID/task/*/stat), to see where the steady CPU goes.
threads() { python3 "$BENCH/soak.py" threads "$WORKER_PID"; }

env -i "${ENV[@]}" "$BIN" run >"$TMP/worker.out" 2>"$TMP/worker.err" </dev/null &
WORKER_PID=$!
say "worker: shelcaster-composer run (pid $WORKER_PID), health on :$HEALTH_PORT, soak ${SOAK} s"

# Ready: stage joined and the ingest accepted the stream.
ready=0
for ((i = 0; i < 600; i++)); do
    kill -0 "$WORKER_PID" 2>/dev/null || break
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "http://127.0.0.1:$HEALTH_PORT/readyz" 2>/dev/null; then ready=1; break; fi
    sleep 0.1
done
if [ "$ready" != 1 ]; then
    tail -20 "$TMP/worker.out" "$TMP/worker.err" >&2
    die "the worker did not become ready (/readyz) within 60 s"
fi
say "ready after $(sample | cut -f1) s"

: >"$TMP/samples.tsv"
next="$WARMUP"
died=0
while :; do
    # Sleep until the worker's age reaches the next sample point.
    age="$(sample | cut -f1)" || { died=1; break; }
    [ -n "$age" ] || { died=1; break; }
    wait_s="$(awk -v a="$age" -v n="$next" 'BEGIN { d = n - a; print (d > 0 ? d : 0) }')"
    sleep "$wait_s"
    s="$(sample)" || { died=1; break; }
    [ -n "$s" ] || { died=1; break; }
    printf '%s\n' "$s" >>"$TMP/samples.tsv"
    if [ "$next" = "$WARMUP" ]; then threads >"$TMP/threads.start"; else threads >"$TMP/threads.end"; fi
    say "  sample: age $(cut -f1 <<<"$s") s, CPU ticks $(cut -f2 <<<"$s"), VmRSS $(cut -f3 <<<"$s") kB, output reconnects $(cut -f4 <<<"$s")"
    [ "$next" -ge "$SOAK" ] && break
    next=$((next + SAMPLE_EVERY))
    [ "$next" -gt "$SOAK" ] && next="$SOAK"
done
[ "$died" = 1 ] && say "the worker exited during the soak"

# Optional profile, outside the measured window (the worker keeps running meanwhile).
if [ "$PERF_S" -gt 0 ] && [ "$died" = 0 ]; then
    if command -v perf >/dev/null; then
        say "perf: profiling the worker for ${PERF_S} s (after the measured window)"
        perf record -F 997 -g -p "$WORKER_PID" -o "$TMP/perf.data" -- sleep "$PERF_S" >"$TMP/perf.log" 2>&1 \
            || say "perf record failed: $(tail -1 "$TMP/perf.log")"
    else
        say "perf is not installed: no profile"
    fi
fi
# The end state, then SIGTERM.
python3 - "$HEALTH_PORT" "$TMP" <<'EOF' 2>/dev/null
import sys, urllib.request
port, d = sys.argv[1], sys.argv[2]
for path, name in (("/status", "status.json"), ("/metrics", "metrics.txt")):
    try:
        open(f"{d}/{name}", "w").write(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3).read().decode())
    except Exception as e:
        open(f"{d}/{name}", "w").write("")
EOF
runtime="$(sample | cut -f1)"   # the worker's age at SIGTERM
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing python3 "$BENCH/soak.py" show "$MOTO" "$SHOW_ID" "$TMP/before-stop.json" 2>/dev/null
wc -l <"$TMP/worker.out" >"$TMP/lines-before-stop"
kill -TERM "$WORKER_PID" 2>/dev/null
rc=""
for ((i = 0; i < 600; i++)); do
    kill -0 "$WORKER_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$WORKER_PID" 2>/dev/null; then
    say "the worker did not exit within 60 s of SIGTERM: killing it"
    kill -KILL "$WORKER_PID" 2>/dev/null
fi
wait "$WORKER_PID"; rc=$?
WORKER_PID=""
say "worker exited $rc after SIGTERM"
sleep 1.5   # the watch sees the final write
stop_pid "$WATCH_PID"; WATCH_PID=""
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing python3 "$BENCH/soak.py" show "$MOTO" "$SHOW_ID" "$TMP/final.json" 2>/dev/null

# nginx keeps the recording; its length tells whether the stream stayed up.
stop_pid "$NGINX_PID" KILL; NGINX_PID=""
rec="$TMP/ingest/rec/$STREAM_KEY.flv"
rec_s="$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$rec" 2>/dev/null | head -1)"

{
    echo "soak_seconds=$SOAK"
    echo "warmup_seconds=$WARMUP"
    echo "sample_every=$SAMPLE_EVERY"
    echo "heartbeat_s=$HB_S"
    echo "clk_tck=$CLK_TCK"
    echo "exit_code=$rc"
    echo "runtime_s=${runtime:-$SOAK}"
    echo "recording_seconds=${rec_s:-none}"
} >"$TMP/info"
tail -5 "$TMP/worker.out" >"$TMP/worker.tail" 2>/dev/null
python3 "$BENCH/soak.py" report "$TMP"
if [ -s "$TMP/perf.data" ]; then
    # Swift symbols demangled when the toolchain's demangler is there.
    demangle() { if command -v swift-demangle >/dev/null; then swift-demangle --simplified; else cat; fi; }
    echo
    echo "perf: CPU by shared object (${PERF_S} s after the measured window, self time)"
    perf report -i "$TMP/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15
    echo
    echo "perf: CPU by thread (the tids match the per-thread table above)"
    perf script -i "$TMP/perf.data" -F tid,ip,dso -G 2>/dev/null | python3 "$BENCH/soak.py" perf-threads
    echo
    echo "perf: hottest symbols (self time)"
    perf report -i "$TMP/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' \
        | head -30 | demangle | cut -c1-200
fi
exit 0
