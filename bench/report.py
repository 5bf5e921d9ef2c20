#!/usr/bin/env python3
"""Bookkeeping for bench/run.sh.

    report.py record RESULTS.tsv LABEL ITER RC WALL_S TIMEFILE OUTPUT EXPECT_VIDEO EXPECT_S
        Parses one `/usr/bin/time -v` report, probes OUTPUT with ffprobe (EXPECT_VIDEO 1: must
        hold ~30 fps of video; EXPECT_S: program seconds it must last), appends one row.
    report.py profile INCL_SHORT INCL_LONG EXCL_SHORT EXCL_LONG
        From callgrind_annotate listings of a short and a long run, prints the steady-state hot
        spots (long minus short: the start-up cancels out), inclusive and exclusive.
    report.py table RESULTS.tsv PROGRAM_S [SMAPS STATUS]
        Prints the comparison table and the goals with PASS/MISS, and (given a /proc smaps and
        status snapshot of the --realtime worker) where its resident memory is. Always exits 0
        when the results file is readable: this is a measurement, not a test.
"""
import json
import os
import re
import statistics
import subprocess
import sys

FIELDS = ["label", "iter", "prog_s", "rc", "user", "sys", "wall", "maxrss_kb", "duration", "a_pkts", "v_pkts", "check"]

# Labels run.sh uses, in table order, with the text shown.
RUNS = [
    ("worker-offline", "worker, offline"),
    ("worker-startup", "worker, offline, 1 s run (start-up)"),
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
    results, label, it, rc, wall, timefile, output, video, expect_s = argv[:9]
    expect_video = video == "1"
    expect_s = float(expect_s)
    user, sys_, rss = parse_time(timefile)
    dur, a, v = probe(output)
    problems = []
    if rc != "0":
        problems.append(f"exit {rc}")
    if dur is None:
        problems.append("no readable output")
    else:
        if not expect_s - 0.1 <= dur <= expect_s + 0.2:
            problems.append(f"duration {dur:.3f} s")
        if a < int(expect_s * 48000 / 1024) - 5:
            problems.append(f"{a} audio packets")
        if expect_video and v < int(expect_s * 30) - 5:
            problems.append(f"{v} video frames")
        if not expect_video and v:
            problems.append(f"unexpected video ({v} frames)")
    row = [label, it, f"{expect_s:g}", rc, f"{user:.2f}", f"{sys_:.2f}", f"{float(wall):.3f}", str(rss),
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
        "prog": float(rows[0]["prog_s"]),
        "cpu": statistics.median(cpu),
        "cpu_min": min(cpu), "cpu_max": max(cpu),
        "wall": statistics.median(wall),
        "rss_mib": max(rss) / 1024.0,   # the peak over repetitions, not a median
        "ok": all(r["check"] == "ok" for r in rows),
        "checks": sorted({r["check"] for r in rows if r["check"] != "ok"}),
    }


def memory_breakdown(smaps_path, status_path):
    """Lines describing where a process's resident memory is, from /proc snapshots."""
    try:
        status = open(status_path, encoding="utf-8").read()
        smaps = open(smaps_path, encoding="utf-8").read().splitlines()
    except OSError:
        return []
    st = {k: int(v.split()[0]) for k, v in re.findall(r"^(\w+):\s+(\d+ kB)", status, re.M)}
    groups = {"Swift runtime + Foundation": 0, "FFmpeg libav*/sw*": 0, "other shared libraries": 0,
              "the executable": 0, "heap + anonymous": 0}
    libs = set()
    name = ""
    for line in smaps:
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split(None, 5)
            name = parts[5].strip() if len(parts) > 5 else ""
            continue
        if not line.startswith("Rss:"):
            continue
        kb = int(line.split()[1])
        base = os.path.basename(name)
        if ".so" in base:
            libs.add(name)
            if "/swift/" in name:
                groups["Swift runtime + Foundation"] += kb
            elif re.match(r"lib(av|sw|postproc)", base):
                groups["FFmpeg libav*/sw*"] += kb
            else:
                groups["other shared libraries"] += kb
        elif base == "shelcaster-composer":
            groups["the executable"] += kb
        else:
            groups["heap + anonymous"] += kb
    out = [f"Worker memory, sampled mid-way through the --realtime run: RSS {st.get('VmRSS', 0) / 1024:.1f} MB "
           f"(peak so far {st.get('VmHWM', 0) / 1024:.1f} MB; anonymous {st.get('RssAnon', 0) / 1024:.1f} MB, "
           f"file-backed {st.get('RssFile', 0) / 1024:.1f} MB), {len(libs)} shared libraries mapped:"]
    for k, v in groups.items():
        out.append(f"  {k:<28} {v / 1024:6.1f} MB")
    return out


def table(argv):
    results, program_s = argv[0], float(argv[1])
    rows = load(results)
    by = {label: [r for r in rows if r["label"] == label] for label, _ in RUNS}
    s = {label: summarize(rs) for label, rs in by.items() if rs}

    print()
    print(f"Program: the tone show, host + 4 callers + music, compressor + limiter on, {program_s:g} s per run")
    print("(the start-up row: 1 s). Figures are medians over the repetitions (n), CPU s = user + sys;")
    print("peak RSS is the largest seen. MB = MiB (2^20 bytes).")
    print()
    head = ["run", "n", "CPU s (min-max)", "CPU s / prog s", "real-time x", "CPU % 1 core", "peak RSS MB", "output"]
    lines = []
    for label, title in RUNS:
        if label not in s:
            lines.append([title, "0", "-", "-", "-", "-", "-", "not run"])
            continue
        x = s[label]
        prog = x["prog"]
        rtx = prog / x["wall"] if x["wall"] > 0 else float("inf")
        pct = 100.0 * x["cpu"] / x["wall"] if x["wall"] > 0 else float("nan")
        spread = f" ({x['cpu_min']:.2f}-{x['cpu_max']:.2f})" if x["n"] > 1 else ""
        lines.append([title, str(x["n"]), f"{x['cpu']:.2f}{spread}", f"{x['cpu'] / prog:.4f}",
                      f"{rtx:.1f}", f"{pct:.1f}", f"{x['rss_mib']:.1f}",
                      "ok" if x["ok"] else "CHECK: " + ", ".join(x["checks"])])
    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]

    def fmt(r):
        return "  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    print(fmt(head))
    print("  ".join("-" * w for w in widths))
    for r in lines:
        print(fmt(r))
    print()

    w_off = s.get("worker-offline")
    w_st = s.get("worker-startup")
    w_rt = s.get("worker-realtime")
    ff = s.get("ffmpeg-full")
    ffa = s.get("ffmpeg-audio")
    if w_off and ff:
        print(f"worker offline CPU / ffmpeg (audio + H.264) CPU: {w_off['cpu'] / ff['cpu']:.3f}")
    if w_off and ffa:
        print(f"worker offline CPU / ffmpeg audio-only CPU:      {w_off['cpu'] / ffa['cpu']:.3f}"
              "  (information only: the worker also sends H.264)")
    if w_off and w_st and w_off["prog"] > w_st["prog"]:
        # cpu(d) = fixed + per_s * d, fitted through the 1 s and the full-length offline runs.
        per_s = (w_off["cpu"] - w_st["cpu"]) / (w_off["prog"] - w_st["prog"])
        fixed = w_st["cpu"] - per_s * w_st["prog"]
        line = (f"worker start-up vs steady state (estimate from the 1 s and {w_off['prog']:g} s offline runs): "
                f"{fixed:.2f} CPU s once, then {100 * per_s:.2f} % of one core offline")
        if w_rt and w_rt["wall"] > 0:
            rt_per_s = (w_rt["cpu"] - fixed) / w_rt["prog"]
            line += f", {100 * rt_per_s:.2f} % paced (--realtime minus the same start-up)"
        print(line)
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
    worker = [(n, x) for n, x in (("offline", w_off), ("realtime", w_rt)) if x]
    if worker:
        peak = max(x["rss_mib"] for _, x in worker)
        ok = peak < GOAL_RSS_MIB
        by_how = "" if ok else f", {peak - GOAL_RSS_MIB:.1f} MB ({peak / GOAL_RSS_MIB:.2f}x) over"
        parts = ", ".join(f"{n} {x['rss_mib']:.1f} MB" for n, x in worker)
        print(f"  [{verdict(ok)}] worker peak RSS < {GOAL_RSS_MIB:g} MB: {peak:.1f} MB ({parts}){by_how}")
    if any(not x["ok"] for x in s.values()):
        print("\nNote: a run's output failed its check (see the output column); its figures may not be comparable.")
    if len(argv) == 4:
        mem = memory_breakdown(argv[2], argv[3])
        if mem:
            print()
            print("\n".join(mem))
    print()
    print("Raw runs (" + " ".join(FIELDS) + "; wall from the shell's clock, rss in kB):")
    for r in rows:
        print("  " + " ".join(r[k] for k in FIELDS))
    return 0


def _annotate(path):
    """{function: instructions} from a callgrind_annotate listing (call lines skipped)."""
    costs = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        if "=>" in line:            # a call line (cost of one call site), not a function
            continue
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*)$", line)
        if not m:
            continue
        name = m.group(2).strip()
        costs[name] = max(costs.get(name, 0), int(m.group(1).replace(",", "")))
    return costs


def _demangle(names):
    try:
        out = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names),
                             capture_output=True, text=True, timeout=60).stdout.split("\n")
        if len(out) >= len(names):
            return out[:len(names)]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return names


def _short(name):
    # "file:function [object]" -> "function  (object basename)"
    m = re.match(r"^(?:\S*?:)?(.*?)(?:\s+\[(.*)\])?$", name)
    func, obj = (m.group(1), m.group(2)) if m else (name, None)
    return f"{func}  ({os.path.basename(obj)})" if obj else func


def profile(argv):
    inc_a, inc_b, exc_a, exc_b = (_annotate(p) for p in argv)
    total = inc_b.get("PROGRAM TOTALS", 0) - inc_a.get("PROGRAM TOTALS", 0)
    if total <= 0:
        print("profile: the listings do not look like callgrind_annotate output")
        return 0
    print()
    print(f"Steady-state profile (callgrind, 6 s minus 1 s offline run = 5 s of mixing): {total / 1e6:.0f} M instructions,")
    print(f"start-up (the 1 s run): {inc_a.get('PROGRAM TOTALS', 0) / 1e6:.0f} M instructions.")
    for title, a, b, n, nested in (("inclusive (a function and what it calls)", inc_a, inc_b, 22, True),
                                   ("exclusive (the function's own instructions)", exc_a, exc_b, 20, False)):
        diff = sorted(((b[k] - a.get(k, 0), k) for k in b if k != "PROGRAM TOTALS"), reverse=True)
        # main, the command, the run loop are the whole program; drop annotate's non-function lines.
        diff = [(v, k) for v, k in diff if 0 < v <= 0.97 * total and ":" in k and not k.startswith("events")][:300]
        names = _demangle([k for _, k in diff])
        entries = [(v, _short(name)) for (v, _), name in zip(diff, names)]
        if nested:
            # Thunks (protocol witnesses, closures, partial applies) and unnamed entry points cost
            # the same as the function they wrap: of each run of near-equal costs, show one name.
            def wrapper(name):
                return any(w in name for w in ("protocol witness", "partial apply", "closure #", "0x0"))
            clusters = []
            for v, name in entries:
                if clusters and abs(clusters[-1][-1][0] - v) <= 0.002 * total:
                    clusters[-1].append((v, name))
                else:
                    clusters.append([(v, name)])
            entries = [next((e for e in c if not wrapper(e[1])), c[0]) for c in clusters]
        print()
        print(f"Hot spots, {title}:")
        for v, name in entries[:n]:
            print(f"  {v / 1e6:8.0f} M {100.0 * v / total:5.1f} %  {name[:150]}")
    # Where the instructions go by shared object (stripped system libraries name no functions).
    by_obj = {}
    for k, v in exc_b.items():
        if k == "PROGRAM TOTALS" or ":" not in k:
            continue
        m = re.search(r"\[(.*)\]\s*$", k)
        obj = os.path.basename(m.group(1)) if m else "(no object named)"
        by_obj[obj] = by_obj.get(obj, 0) + v - exc_a.get(k, 0)
    print()
    print("Exclusive, by object:")
    for obj, v in sorted(by_obj.items(), key=lambda t: -t[1])[:10]:
        if v > 0:
            print(f"  {v / 1e6:8.0f} M {100.0 * v / total:5.1f} %  {obj}")
    # Named library functions that are overhead rather than the codec/filter work itself.
    watch = ("av_channel_layout_describe", "av_samples_set_silence", "av_frame_get_buffer", "malloc", "free",
             "av_frame_ref", "av_frame_unref", "swr_convert")
    shown = []
    for k in inc_b:
        func = _short(k).split("  (")[0].strip()
        if func in watch:
            v = inc_b[k] - inc_a.get(k, 0)
            if v > 0.002 * total:
                shown.append((v, _short(k)))
    if shown:
        print()
        print("Named overheads (inclusive):")
        for v, name in sorted(shown, reverse=True):
            print(f"  {v / 1e6:8.0f} M {100.0 * v / total:5.1f} %  {name}")
    return 0


def main(argv):
    if len(argv) == 11 and argv[1] == "record":
        return record(argv[2:])
    if len(argv) == 6 and argv[1] == "profile":
        return profile(argv[2:])
    if len(argv) in (4, 6) and argv[1] == "table":
        return table(argv[2:])
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
