#!/usr/bin/env python3
"""Bookkeeping for bench/run.sh.

    report.py record RESULTS.tsv LABEL ITER RC WALL_S TIMEFILE OUTPUT [EXPECT_VIDEO]
        Parses one `/usr/bin/time -v` report, probes OUTPUT with ffprobe, appends one row.
    report.py table RESULTS.tsv PROGRAM_S
        Prints the comparison table and the goals with PASS/MISS. Always exits 0 when the
        results file is readable: this is a measurement, not a test.
"""
import json
import os
import re
import statistics
import subprocess
import sys

FIELDS = ["label", "iter", "rc", "user", "sys", "wall", "maxrss_kb", "duration", "a_pkts", "v_pkts", "check"]

# Labels run.sh uses, in table order, with the text shown.
RUNS = [
    ("worker-offline", "worker, offline"),
    ("worker-realtime", "worker, --realtime"),
    ("ffmpeg-full", "ffmpeg CLI, audio + H.264"),
    ("ffmpeg-audio", "ffmpeg CLI, audio only (-vn)"),
]

GOAL_RT_CPU_PCT = 3.0
GOAL_RSS_MIB = 64.0


def parse_time(path):
    text = open(path, encoding="utf-8", errors="replace").read()

    def grab(pattern):
        m = re.search(pattern, text)
        return m.group(1) if m else None

    user = grab(r"User time \(seconds\):\s*([\d.]+)")
    sys_ = grab(r"System time \(seconds\):\s*([\d.]+)")
    rss = grab(r"Maximum resident set size \(kbytes\):\s*(\d+)")
    return (float(user) if user else float("nan"),
            float(sys_) if sys_ else float("nan"),
            int(rss) if rss else -1)


def probe(path):
    """(duration s, audio packets, video packets) of a finished output, or Nones."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None, 0, 0
    try:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-count_packets", "-show_entries",
             "format=duration:stream=codec_type,nb_read_packets", "-of", "json", path],
            capture_output=True, text=True, timeout=60).stdout
        info = json.loads(out or "{}")
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        return None, 0, 0
    dur = info.get("format", {}).get("duration")
    a = v = 0
    for s in info.get("streams", []):
        n = int(s.get("nb_read_packets", 0) or 0)
        if s.get("codec_type") == "audio":
            a += n
        elif s.get("codec_type") == "video":
            v += n
    return (float(dur) if dur else None), a, v


def record(argv):
    results, label, it, rc, wall, timefile, output = argv[:7]
    expect_video = len(argv) > 7 and argv[7] == "1"
    user, sys_, rss = parse_time(timefile)
    dur, a, v = probe(output)
    problems = []
    if rc != "0":
        problems.append(f"exit {rc}")
    if dur is None:
        problems.append("no readable output")
    else:
        if not 19.9 <= dur <= 20.2:
            problems.append(f"duration {dur:.3f} s")
        if a < 930:
            problems.append(f"{a} audio packets")
        if expect_video and v < 595:
            problems.append(f"{v} video frames")
        if not expect_video and v:
            problems.append(f"unexpected video ({v} frames)")
    row = [label, it, rc, f"{user:.2f}", f"{sys_:.2f}", f"{float(wall):.3f}", str(rss),
           f"{dur:.3f}" if dur is not None else "-", str(a), str(v),
           "ok" if not problems else "; ".join(problems)]
    with open(results, "a", encoding="utf-8") as f:
        f.write("\t".join(row) + "\n")
    return 0


def load(results):
    rows = []
    with open(results, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == len(FIELDS):
                rows.append(dict(zip(FIELDS, parts)))
    return rows


def summarize(rows):
    """Median of each figure over a run's repetitions (each figure on its own)."""
    cpu = [float(r["user"]) + float(r["sys"]) for r in rows]
    wall = [float(r["wall"]) for r in rows]
    rss = [int(r["maxrss_kb"]) for r in rows]
    return {
        "n": len(rows),
        "cpu": statistics.median(cpu),
        "cpu_min": min(cpu), "cpu_max": max(cpu),
        "wall": statistics.median(wall),
        "rss_mib": max(rss) / 1024.0,   # the peak over repetitions, not a median
        "ok": all(r["check"] == "ok" for r in rows),
        "checks": sorted({r["check"] for r in rows if r["check"] != "ok"}),
    }


def table(argv):
    results, program_s = argv[0], float(argv[1])
    rows = load(results)
    by = {label: [r for r in rows if r["label"] == label] for label, _ in RUNS}
    s = {label: summarize(rs) for label, rs in by.items() if rs}

    print()
    print(f"Program: the tone show, host + 4 callers + music, compressor + limiter on, {program_s:g} s each run.")
    print("Figures are medians over the repetitions (n); peak RSS is the largest seen. MB = MiB (2^20 bytes).")
    print()
    head = ["run", "n", "CPU s", "CPU s / prog s", "real-time x", "CPU % 1 core", "peak RSS MB", "output"]
    lines = []
    for label, title in RUNS:
        if label not in s:
            lines.append([title, "0", "-", "-", "-", "-", "-", "not run"])
            continue
        x = s[label]
        rtx = program_s / x["wall"] if x["wall"] > 0 else float("inf")
        pct = 100.0 * x["cpu"] / x["wall"] if x["wall"] > 0 else float("nan")
        spread = f" ({x['cpu_min']:.2f}-{x['cpu_max']:.2f})" if x["n"] > 1 else ""
        lines.append([title, str(x["n"]), f"{x['cpu']:.2f}{spread}", f"{x['cpu'] / program_s:.4f}",
                      f"{rtx:.1f}", f"{pct:.1f}", f"{x['rss_mib']:.1f}",
                      "ok" if x["ok"] else "CHECK: " + ", ".join(x["checks"])])
    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]

    def fmt(r):
        return "  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    print(fmt(head))
    print("  ".join("-" * w for w in widths))
    for r in lines:
        print(fmt(r))
    print()

    w_off = s.get("worker-offline")
    w_rt = s.get("worker-realtime")
    ff = s.get("ffmpeg-full")
    ffa = s.get("ffmpeg-audio")
    if w_off and ff:
        print(f"worker offline CPU / ffmpeg (audio + H.264) CPU: {w_off['cpu'] / ff['cpu']:.3f}")
    if w_off and ffa:
        print(f"worker offline CPU / ffmpeg audio-only CPU:      {w_off['cpu'] / ffa['cpu']:.3f}  (for information: the worker also sends H.264)")
    print()
    print("Goals:")

    def verdict(ok):
        return "PASS" if ok else "MISS"

    if w_off and ff:
        ok = w_off["cpu"] <= ff["cpu"]
        print(f"  [{verdict(ok)}] CPU <= ffmpeg's for the same work: worker {w_off['cpu']:.2f} s vs ffmpeg {ff['cpu']:.2f} s "
              f"({w_off['cpu'] / ff['cpu']:.2f}x)")
    else:
        print("  [ -- ] CPU <= ffmpeg's for the same work: not measured (a run is missing)")
    if w_rt:
        pct = 100.0 * w_rt["cpu"] / w_rt["wall"] if w_rt["wall"] > 0 else float("nan")
        ok = pct <= GOAL_RT_CPU_PCT
        by_how = "" if ok else f", {pct - GOAL_RT_CPU_PCT:.2f} points ({pct / GOAL_RT_CPU_PCT:.2f}x) over"
        print(f"  [{verdict(ok)}] --realtime <= {GOAL_RT_CPU_PCT:g} % of one core: {pct:.2f} %{by_how}")
    else:
        print("  [ -- ] --realtime CPU: not measured")
    worker = [x for x in (w_off, w_rt) if x]
    if worker:
        peak = max(x["rss_mib"] for x in worker)
        ok = peak < GOAL_RSS_MIB
        by_how = "" if ok else f", {peak - GOAL_RSS_MIB:.1f} MB ({peak / GOAL_RSS_MIB:.2f}x) over"
        parts = ", ".join(f"{n} {x['rss_mib']:.1f} MB" for n, x in (("offline", w_off), ("realtime", w_rt)) if x)
        print(f"  [{verdict(ok)}] worker peak RSS < {GOAL_RSS_MIB:g} MB: {peak:.1f} MB ({parts}){by_how}")
    if any(not x["ok"] for x in s.values()):
        print("\nNote: a run's output failed its check (see the output column); its figures may not be comparable.")
    print()
    print("Raw runs (label iter rc user sys wall maxrss_kB duration audio_pkts video_frames check):")
    for r in rows:
        print("  " + " ".join(r[k] for k in FIELDS))
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "record" and len(argv) >= 9:
        return record(argv[2:])
    if len(argv) == 4 and argv[1] == "table":
        return table(argv[2:])
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
