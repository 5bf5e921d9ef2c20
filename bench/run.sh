#!/usr/bin/env bash
# CPU, wall time and peak memory of shelcaster-composer on the tone show (host + 4 callers + music,
# compressor + limiter on), offline and --realtime, next to an ffmpeg CLI command doing the same
# work on the same Opus packets and music files. See bench/README.md.
#
#   bench/run.sh [--repeat N] [--realtime-repeat N] [--profile] [--no-build]
#
# A measurement, not a test: exits 0 whether or not the goals are met (non-zero only when it cannot
# measure at all, e.g. no binary). No network: every input and output is a local file.
set -uo pipefail

REPEAT=3            # offline runs (worker, ffmpeg, ffmpeg -vn), interleaved; the table shows medians
RT_REPEAT=2         # --realtime runs (each takes the show's 20 s of wall time)
PROFILE=0           # also run callgrind on a 5 s offline run and list the hot spots
BUILD=1
PROGRAM_S=20
RUN_TIMEOUT=300     # seconds; any single run taking longer is killed

while [ $# -gt 0 ]; do
    case "$1" in
        --repeat) REPEAT="${2:?--repeat needs a number}"; shift 2 ;;
        --realtime-repeat) RT_REPEAT="${2:?--realtime-repeat needs a number}"; shift 2 ;;
        --profile) PROFILE=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
case "$REPEAT$RT_REPEAT" in *[!0-9]*) echo "run.sh: --repeat values must be whole numbers" >&2; exit 2 ;; esac
[ "$REPEAT" -ge 1 ] && [ "$RT_REPEAT" -ge 1 ] || { echo "run.sh: --repeat values must be at least 1" >&2; exit 2; }

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
TONES="$ROOT/fixtures/tones"
SCRATCH="$ROOT/.build-bench"
BIN="$SCRATCH/release/shelcaster-composer"

TMP="$(mktemp -d /tmp/shelcaster-bench.XXXXXX)"
CHILD=""
cleanup() {
    if [ -n "${SAMPLER:-}" ]; then pkill -P "$SAMPLER" 2>/dev/null; kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; fi
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then kill "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }

# --- tools
if [ ! -x /usr/bin/time ]; then
    say "GNU time is missing: installing it (apt-get install -y time)"
    { apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y time >/dev/null 2>&1; }; } \
        || { say "run.sh: could not install GNU time (/usr/bin/time)"; exit 1; }
fi
for t in ffmpeg ffprobe python3 timeout awk; do
    command -v "$t" >/dev/null || { say "run.sh: $t is required"; exit 1; }
done
grep -q ' libopus ' <<<"$(ffmpeg -hide_banner -decoders 2>/dev/null)" || { say "run.sh: this ffmpeg has no libopus decoder"; exit 1; }
grep -q ' libx264 ' <<<"$(ffmpeg -hide_banner -encoders 2>/dev/null)" || { say "run.sh: this ffmpeg has no libx264 encoder"; exit 1; }

# --- 1. the release binary (incremental: a no-op when nothing changed)
if [ "$BUILD" = 1 ]; then
    say "building: swift build -c release --scratch-path $SCRATCH --product shelcaster-composer"
    if ! (cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --product shelcaster-composer) >"$TMP/build.log" 2>&1; then
        if [ -x "$BIN" ]; then
            say "WARNING: the build failed (the tree may be mid-edit); measuring the existing binary from $(date -r "$BIN" '+%F %T')."
            grep -m5 'error:' "$TMP/build.log" >&2
        else
            say "run.sh: the build failed and there is no binary to measure:"; tail -20 "$TMP/build.log" >&2; exit 1
        fi
    fi
fi
[ -x "$BIN" ] || { say "run.sh: no binary at $BIN (run without --no-build)"; exit 1; }

# --- inputs
# The fixture manifest with absolute paths and the dynamics switched on.
python3 - "$TONES/manifest.json" "$TMP/manifest.json" <<'EOF' || { say "run.sh: could not write the manifest"; exit 1; }
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
base = os.path.dirname(os.path.abspath(src))
m = json.load(open(src))
for c in m["captures"]:
    c["file"] = os.path.join(base, c["file"])
for t in m.get("tracklist", {}).get("tracks", []):
    t["file"] = os.path.join(base, t["file"])
m["routing"]["compression"] = {"enabled": True}
m["routing"]["limiter"] = {"enabled": True}
json.dump(m, open(dst, "w"), indent=1)
EOF

# The five voices as Ogg Opus holding the capture's own Opus packets.
VOICES=()
SSRC_ARGS=()
while IFS=$'\t' read -r ssrc pid; do SSRC_ARGS+=("$ssrc=$pid"); VOICES+=("$pid"); done < <(python3 -c '
import json, sys
for c in json.load(open(sys.argv[1]))["captures"]:
    print(c["ssrc"], c["participantId"], sep="\t")' "$TONES/manifest.json")
python3 "$BENCH/pcap_to_ogg.py" "$TONES/captures/tones.pcap" "$TMP/voices" "${SSRC_ARGS[@]}" >"$TMP/ogg.log" \
    || { cat "$TMP/ogg.log" >&2; say "run.sh: could not extract the voices"; exit 1; }
for v in "${VOICES[@]}"; do
    f="$TMP/voices/$v.opus"
    got="$(ffprobe -v error -select_streams a:0 -show_entries stream=codec_name:format=duration -of csv=p=0 "$f" 2>&1 | tr '\n' ' ')"
    case "$got" in
        opus*" 20.0"*|opus*" 19.99"*) ;;
        *) say "run.sh: ffprobe does not read $v.opus as 20 s of Opus (got: $got)"; exit 1 ;;
    esac
done
say "voices: $(wc -l <"$TMP/ogg.log") Ogg Opus files, ffprobe reads each as Opus, 20 s"

python3 "$BENCH/still_png.py" "$TMP/card.png" 1280 720 || { say "run.sh: could not write the still picture"; exit 1; }

# --- the ffmpeg command: same decoders (libopus; libavcodec's for the music), same graph shape
# (per-source volume -> amix normalize=0 -> acompressor -> alimiter, with the worker's settings),
# same encoders (aac fast 128k; libx264 veryfast stillimage, 2 s GOP, no B frames, baseline).
FF_IN=()
FC=""
i=0
for v in "${VOICES[@]}"; do
    FF_IN+=(-c:a libopus -i "$TMP/voices/$v.opus")
    FC+="[$i:a]volume=1:precision=float[v$i];"
    i=$((i + 1))
done
MUSIC=()
while IFS= read -r f; do MUSIC+=("$f"); done < <(python3 -c '
import json, sys
for t in json.load(open(sys.argv[1]))["tracklist"]["tracks"]: print(t["file"])' "$TMP/manifest.json")
CONCAT=""
for f in "${MUSIC[@]}"; do
    FF_IN+=(-i "$f")
    FC+="[$i:a]aresample=48000[m$i];"
    CONCAT+="[m$i]"
    i=$((i + 1))
done
FC+="${CONCAT}concat=n=${#MUSIC[@]}:v=0:a=1,volume=1:precision=float[music];"
MIX_INPUTS=""
for ((k = 0; k < ${#VOICES[@]}; k++)); do MIX_INPUTS+="[v$k]"; done
# Worker's dynamics (Mixer/ProgramMixer.swift, routing defaults): threshold -20 dBFS, ratio 4,
# attack 20 ms, release 250 ms; limiter ceiling -1 dBFS, attack 5 ms, release 50 ms, no auto level.
FC+="${MIX_INPUTS}[music]amix=inputs=$((${#VOICES[@]} + 1)):normalize=0:duration=longest,"
FC+="acompressor=threshold=0.1:ratio=4:attack=20:release=250,"
FC+="alimiter=limit=0.891251:attack=5:release=50:level=0:latency=1[out]"
PICTURE_INDEX=$i

FF_COMMON=(ffmpeg -nostdin -hide_banner -nostats -loglevel error -y)
FF_AUDIO_OUT=(-map "[out]" -c:a aac -b:a 128k -aac_coder fast)
FF_FULL=("${FF_COMMON[@]}" "${FF_IN[@]}" -loop 1 -framerate 30 -i "$TMP/card.png"
         -filter_complex "$FC" "${FF_AUDIO_OUT[@]}"
         -map "$PICTURE_INDEX:v" -c:v libx264 -preset veryfast -tune stillimage -profile:v baseline
         -pix_fmt yuv420p -g 60 -keyint_min 60 -sc_threshold 0 -bf 0
         -t "$PROGRAM_S" -f flv "$TMP/ffmpeg-full.flv")
FF_AUDIO=("${FF_COMMON[@]}" "${FF_IN[@]}" -filter_complex "$FC" "${FF_AUDIO_OUT[@]}" -vn
          -t "$PROGRAM_S" -f flv "$TMP/ffmpeg-audio.flv")
W_OFF=("$BIN" local "$TMP/manifest.json" --output "$TMP/worker-offline.flv" --duration "$PROGRAM_S")
# The same show stopped after 1 s: what starting up costs (fitted out in the report).
W_ST=("$BIN" local "$TMP/manifest.json" --output "$TMP/worker-startup.flv" --duration 1)
W_RT=("$BIN" local "$TMP/manifest.json" --output "$TMP/worker-realtime.flv" --duration "$PROGRAM_S" --realtime)

RESULTS="$TMP/results.tsv"
: >"$RESULTS"

# measure LABEL ITER EXPECT_VIDEO PROGRAM_S SAMPLE_AT OUTPUT CMD...: one run under GNU time, then
# probe its output. SAMPLE_AT > 0: snapshot the measured process's /proc smaps + status that many
# seconds in (for the memory breakdown).
SAMPLER=""
measure() {
    local label="$1" iter="$2" video="$3" prog="$4" sample_at="$5" out="$6"; shift 6
    rm -f "$out"
    local t0 t1 rc
    t0=$(date +%s%N)
    timeout -k 5 "$RUN_TIMEOUT" /usr/bin/time -v -o "$TMP/$label.$iter.time" "$@" \
        >"$TMP/$label.$iter.out" 2>"$TMP/$label.$iter.err" &
    CHILD=$!
    if [ "$sample_at" != 0 ] && command -v pgrep >/dev/null; then
        # timeout -> time -> the measured program
        ( sleep "$sample_at"
          tp=$(pgrep -P "$CHILD" | head -1); [ -n "$tp" ] || exit 0
          wp=$(pgrep -P "$tp" | head -1); [ -n "$wp" ] || exit 0
          cat "/proc/$wp/smaps" >"$TMP/sample.smaps" 2>/dev/null
          cat "/proc/$wp/status" >"$TMP/sample.status" 2>/dev/null ) &
        SAMPLER=$!
    fi
    wait "$CHILD"; rc=$?
    CHILD=""
    t1=$(date +%s%N)
    if [ -n "$SAMPLER" ]; then
        pkill -P "$SAMPLER" 2>/dev/null; kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; SAMPLER=""
    fi
    if [ "$rc" != 0 ]; then
        say "  $label #$iter exited $rc:"; tail -5 "$TMP/$label.$iter.err" >&2
    fi
    python3 "$BENCH/report.py" record "$RESULTS" "$label" "$iter" "$rc" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" \
        "$TMP/$label.$iter.time" "$out" "$video" "$prog"
    say "  $(tail -1 "$RESULTS" | cut -f1,2,4-7,12 | tr '\t' ' ')"
    rm -f "$out"
}

say "offline runs ($REPEAT each, interleaved): label iter rc user sys wall check"
for ((n = 1; n <= REPEAT; n++)); do
    measure worker-offline "$n" 1 "$PROGRAM_S" 0 "$TMP/worker-offline.flv" "${W_OFF[@]}"
    measure worker-startup "$n" 1 1 0 "$TMP/worker-startup.flv" "${W_ST[@]}"
    measure ffmpeg-full "$n" 1 "$PROGRAM_S" 0 "$TMP/ffmpeg-full.flv" "${FF_FULL[@]}"
    measure ffmpeg-audio "$n" 0 "$PROGRAM_S" 0 "$TMP/ffmpeg-audio.flv" "${FF_AUDIO[@]}"
done
say "realtime runs ($RT_REPEAT, ${PROGRAM_S} s each)"
for ((n = 1; n <= RT_REPEAT; n++)); do
    measure worker-realtime "$n" 1 "$PROGRAM_S" "$((PROGRAM_S / 2))" "$TMP/worker-realtime.flv" "${W_RT[@]}"
done
say "worker summary (last offline run):"
sed 's/^/  /' "$TMP/worker-offline.$REPEAT.out" >&2

if [ -s "$TMP/sample.smaps" ] && [ -s "$TMP/sample.status" ]; then
    python3 "$BENCH/report.py" table "$RESULTS" "$PROGRAM_S" "$TMP/sample.smaps" "$TMP/sample.status"
else
    python3 "$BENCH/report.py" table "$RESULTS" "$PROGRAM_S"
fi

# --- optional: where the worker's time goes. callgrind on a 1 s and a 6 s offline run; the
# difference is 5 s of steady-state mixing with the start-up (x264 GOP, card, linking) taken out.
if [ "$PROFILE" = 1 ]; then
    if command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; then
        say "profiling: valgrind --tool=callgrind, 1 s and 6 s offline (about a minute)"
        ok=1
        for d in 1 6; do
            timeout -k 5 600 valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.$d" \
                "$BIN" local "$TMP/manifest.json" --output "$TMP/profile.flv" --duration "$d" \
                >"$TMP/profile.out" 2>"$TMP/profile.$d.err" &
            CHILD=$!; wait "$CHILD" || ok=0; CHILD=""
            [ -s "$TMP/callgrind.$d" ] || ok=0
        done
        if [ "$ok" = 1 ]; then
            for d in 1 6; do
                callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$TMP/callgrind.$d" >"$TMP/inclusive.$d" 2>/dev/null
                callgrind_annotate --auto=no --inclusive=no --threshold=100 "$TMP/callgrind.$d" >"$TMP/exclusive.$d" 2>/dev/null
            done
            python3 "$BENCH/report.py" profile "$TMP/inclusive.1" "$TMP/inclusive.6" "$TMP/exclusive.1" "$TMP/exclusive.6"
        else
            say "profiling failed:"; tail -5 "$TMP"/profile.*.err >&2
        fi
    else
        say "profiling skipped: valgrind/callgrind_annotate not installed"
    fi
fi
exit 0
