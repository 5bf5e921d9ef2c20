#!/usr/bin/env python3
"""Helpers for bench/soak.sh (moto through boto3, the heartbeat watch, the report).

    soak.py port
        Prints a free TCP port on 127.0.0.1.
    soak.py wait-http URL TIMEOUT_S
        Exits 0 once URL answers (any HTTP status), 1 after TIMEOUT_S.
    soak.py setup ENDPOINT SHOW_ID MUSIC_WAV
        Creates the four tables, the routing item (host + 4 callers on air, music, compressor,
        limiter and ducking on), a looping one-track tracklist whose track is MUSIC_WAV uploaded
        to S3, and the show item (STARTING).
    soak.py watch ENDPOINT SHOW_ID OUT_TSV
        Until SIGTERM: reads the show item every 0.5 s and appends a line to OUT_TSV whenever
        lastHeartbeat or compositionServiceStatus changes (epoch s, lastHeartbeat, status, and the
        heartbeat's metrics uptimeSeconds, cpuPercent, rssMb).
    soak.py show ENDPOINT SHOW_ID OUT_JSON
        Writes the show item as plain JSON.
    soak.py threads PID
        Prints one line per thread of PID: tid, CPU ticks (utime + stime), thread name.
    soak.py perf-threads < (perf script -F tid,ip,dso -G)
        Share of the samples per thread, and each busy thread's top shared objects.
    soak.py report DIR
        Prints the table and the goals from the files soak.sh left in DIR. Exits 0 whenever it
        can read them: a measurement, not a test.
"""
import json
import os
import signal
import socket
import statistics
import sys
import time
import urllib.error
import urllib.request

GOAL_CPU_PCT = 3.0
GOAL_RSS_GROWTH_MB = 2.0
TABLES = {
    "shelcaster-active-shows": [("showId", "HASH")],
    "shelcaster-participants": [("showId", "HASH"), ("participantId", "RANGE")],
    "shelcaster-audio-routing": [("showId", "HASH")],
    "shelcaster-tracklists": [("tracklistId", "HASH")],
}
CALLERS = ["caller-1", "caller-2", "caller-3", "caller-4"]


def clients(endpoint):
    import boto3  # only the subcommands that talk to moto need it
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    return boto3.client("dynamodb", **kw), boto3.client("s3", **kw)


def plain(av):
    """DynamoDB attribute value → plain JSON value."""
    (t, v), = av.items()
    if t == "S":
        return v
    if t == "N":
        return float(v) if any(c in v for c in ".eE") else int(v)
    if t == "BOOL":
        return v
    if t == "NULL":
        return None
    if t == "M":
        return {k: plain(x) for k, x in v.items()}
    if t == "L":
        return [plain(x) for x in v]
    return v


def port(_):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def wait_http(argv):
    url, timeout = argv[0], float(argv[1])
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return 0
        except urllib.error.HTTPError:
            return 0
        except OSError:
            time.sleep(0.2)
    return 1


def setup(argv):
    endpoint, show_id, wav = argv
    ddb, s3 = clients(endpoint)
    for name, keys in TABLES.items():
        ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
                         AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys])
    s3.create_bucket(Bucket="shows-music")
    with open(wav, "rb") as f:
        s3.put_object(Bucket="shows-music", Key="beds/soak.wav", Body=f.read())
    ddb.put_item(TableName="shelcaster-tracklists", Item={
        "tracklistId": {"S": "tl-soak"}, "loop": {"BOOL": True},
        "tracks": {"L": [{"M": {"s3Key": {"S": "beds/soak.wav"}, "bucket": {"S": "shows-music"},
                                "title": {"S": "Soak bed"}}}]}})
    n = lambda x: {"N": str(x)}
    ddb.put_item(TableName="shelcaster-audio-routing", Item={
        "showId": {"S": show_id}, "hostVolume": n(100), "callersVolume": n(80), "tracklistVolume": n(50),
        "masterVolume": n(100), "onAirCallerIds": {"L": [{"S": c} for c in CALLERS]}, "participantVolumes": {"M": {}},
        "compression": {"M": {"enabled": {"BOOL": True}, "threshold": n(-20), "ratio": n(4)}},
        "limiter": {"M": {"enabled": {"BOOL": True}, "ceiling": n(-1)}},
        "ducking": {"M": {"enabled": {"BOOL": True}, "depthDb": n(12)}},
        "tracklist": {"M": {"state": {"S": "PLAYING"}, "skipSeq": n(0)}},
        "updatedAt": n(0)})
    ddb.put_item(TableName="shelcaster-active-shows", Item={
        "showId": {"S": show_id}, "status": {"S": "STARTING"}, "hostUserId": {"S": "host-1"},
        "tracklistId": {"S": "tl-soak"}})


def watch(argv):
    endpoint, show_id, out = argv
    ddb, _ = clients(endpoint)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    last = None
    with open(out, "a", encoding="utf-8") as f:
        while not stop:
            try:
                item = ddb.get_item(TableName="shelcaster-active-shows", Key={"showId": {"S": show_id}},
                                    ConsistentRead=True).get("Item", {})
            except Exception as e:  # moto busy or gone: note it, keep watching
                f.write(f"{time.time():.3f}\tERROR\t{type(e).__name__}\t\t\t\n")
                f.flush()
                time.sleep(0.5)
                continue
            item = {k: plain(v) for k, v in item.items()}
            now = (item.get("lastHeartbeat"), item.get("compositionServiceStatus"))
            if now != last and now[0] is not None:
                m = item.get("metrics") if isinstance(item.get("metrics"), dict) else {}
                f.write(f"{time.time():.3f}\t{now[0]}\t{now[1]}\t{m.get('uptimeSeconds', '')}\t"
                        f"{m.get('cpuPercent', '')}\t{m.get('rssMb', '')}\n")
                f.flush()
                last = now
            time.sleep(0.5)


def threads(argv):
    pid = argv[0]
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat", encoding="utf-8", errors="replace").read()
        except OSError:
            continue  # the thread ended
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()  # fields 3.. : utime is field 14, stime 15
        print(f"{tid}\t{int(rest[11]) + int(rest[12])}\t{name}")


def perf_threads(_):
    per_tid, per_dso, total = {}, {}, 0
    for line in sys.stdin:
        parts = line.split()
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        tid, dso = parts[0], os.path.basename(parts[-1].strip("()"))
        per_tid[tid] = per_tid.get(tid, 0) + 1
        per_dso[(tid, dso)] = per_dso.get((tid, dso), 0) + 1
        total += 1
    if not total:
        print("  (no samples)")
        return
    print("| tid | share of the worker's CPU | top shared objects (share of the worker's CPU) |")
    print("|-----|--------------------------|-----------------------------------------------|")
    rest = 0
    for tid, n in sorted(per_tid.items(), key=lambda kv: -kv[1]):
        if n / total < 0.02:
            rest += n
            continue
        top = sorted(((c, d) for (t, d), c in per_dso.items() if t == tid), reverse=True)[:4]
        print(f"| {tid} | {100 * n / total:.1f} % | " + ", ".join(f"{d} {100 * c / total:.1f}" for c, d in top) + " |")
    if rest:
        print(f"| (others, < 2 % each) | {100 * rest / total:.1f} % | |")


def show(argv):
    endpoint, show_id, out = argv
    ddb, _ = clients(endpoint)
    item = ddb.get_item(TableName="shelcaster-active-shows", Key={"showId": {"S": show_id}},
                        ConsistentRead=True).get("Item", {})
    with open(out, "w", encoding="utf-8") as f:
        json.dump({k: plain(v) for k, v in item.items()}, f, indent=1, sort_keys=True)


def read(path, default=""):
    try:
        return open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return default


def thread_ticks(path):
    out = {}
    for line in read(path).splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3 and parts[1].isdigit():
            out[parts[0]] = (int(parts[1]), parts[2])
    return out


def report(argv):
    d = argv[0]
    info = dict(line.split("=", 1) for line in read(os.path.join(d, "info")).splitlines() if "=" in line)
    samples = []
    for line in read(os.path.join(d, "samples.tsv")).splitlines():
        age, ticks, rss_kb, reconnects = line.split("\t")
        samples.append((float(age), int(ticks), int(rss_kb), reconnects))
    hz = int(info.get("clk_tck", "100"))
    soak_s = float(info.get("soak_seconds", "0"))
    warmup = float(info.get("warmup_seconds", "30"))
    hb_interval = float(info.get("heartbeat_s", "5"))

    print()
    print(f"soak: shelcaster-composer run, {soak_s:.0f} s real time, host + 4 callers (tones) + S3 music bed → "
          "nginx-rtmp; moto for DynamoDB/S3; all on 127.0.0.1")
    if len(samples) < 2:
        print("  not enough samples (the worker died early?): see the log excerpt below")
        print(read(os.path.join(d, "worker.tail")))
        return
    first, last_ = samples[0], samples[-1]
    steady = 100 * (last_[1] - first[1]) / hz / (last_[0] - first[0])
    whole = 100 * last_[1] / hz / last_[0]
    growth_mb = (last_[2] - first[2]) / 1024

    hb_lines = [ln.split("\t") for ln in read(os.path.join(d, "heartbeats.tsv")).splitlines()]
    hb_lines = [ln for ln in hb_lines if len(ln) == 6]
    hb_values = [ln[1] for ln in hb_lines if ln[1] != "ERROR"]
    hb_errors_watch = sum(1 for ln in hb_lines if ln[1] == "ERROR")
    statuses = []
    for ln in hb_lines:
        if ln[1] != "ERROR" and (not statuses or statuses[-1] != ln[2]):
            statuses.append(ln[2])
    # The worker's own CPU figure (CPU since its previous heartbeat), heartbeats after the warm-up
    # and before SIGTERM (the STOPPING/STOPPED writes include the shutdown).
    self_cpu = []
    for ln in hb_lines:
        try:
            up, pct = float(ln[3]), float(ln[4])
        except ValueError:
            continue
        if first[0] <= up <= last_[0] + 1 and ln[2] in ("RUNNING", "DEGRADED"):
            self_cpu.append(pct)
    # lastHeartbeat is written by every status write (periodic heartbeats and status changes).
    beats = len(set(hb_values))
    running_beats = len({ln[1] for ln in hb_lines if ln[1] != "ERROR" and ln[2] in ("RUNNING", "DEGRADED")})
    final = {}
    try:
        final = json.loads(read(os.path.join(d, "final.json"), "{}"))
    except json.JSONDecodeError:
        pass
    try:
        before = json.loads(read(os.path.join(d, "before-stop.json"), "{}"))
    except json.JSONDecodeError:
        before = {}
    # The last heartbeat's metrics before SIGTERM (error counters are cumulative).
    metrics = before.get("metrics") if isinstance(before.get("metrics"), dict) else \
        final.get("metrics") if isinstance(final.get("metrics"), dict) else {}
    end_metrics = read(os.path.join(d, "metrics.txt"))
    out_reconnects = next((ln.split()[-1] for ln in end_metrics.splitlines()
                           if ln.startswith("shelcaster_output_reconnects ")), "?")
    status = {}
    try:
        status = json.loads(read(os.path.join(d, "status.json"), "{}"))
    except json.JSONDecodeError:
        pass
    log = read(os.path.join(d, "worker.out")) + read(os.path.join(d, "worker.err"))
    try:
        before_stop = int(read(os.path.join(d, "lines-before-stop"), "0").strip() or 0)
    except ValueError:
        before_stop = 0
    lines = read(os.path.join(d, "worker.out")).splitlines()

    def bad(ln):
        ln = ln.replace(" ", "")
        return '"level":"warning"' in ln or '"level":"error"' in ln or '"level":"critical"' in ln
    subscribed = log.count('"subscribed"') or log.count(" subscribed")
    events_reconnected = log.count("events reconnected")
    warn_run = [ln for ln in lines[:before_stop] if bad(ln)]
    warn_stop = [ln for ln in lines[before_stop:] if bad(ln)]
    rc = info.get("exit_code", "?")
    final_css = final.get("compositionServiceStatus", "?")
    rec_s = info.get("recording_seconds", "?")

    rows = [
        ("CPU % of one core, steady", f"{steady:.2f}", f"between {first[0]:.0f} s and {last_[0]:.0f} s of the process"),
        ("CPU % of one core, whole run", f"{whole:.2f}", f"0 to {last_[0]:.0f} s, start-up included"),
        ("CPU % (worker's own heartbeat metric)",
         f"{statistics.median(self_cpu):.1f}" if self_cpu else "?",
         f"median metrics.cpuPercent of {len(self_cpu)} heartbeats after {first[0]:.0f} s "
         f"(range {min(self_cpu):.1f}-{max(self_cpu):.1f})" if self_cpu else "no heartbeat metrics seen"),
        ("RSS at start (MiB)", f"{first[2] / 1024:.1f}", f"VmRSS at {first[0]:.0f} s"),
        ("RSS at end (MiB)", f"{last_[2] / 1024:.1f}", f"VmRSS at {last_[0]:.0f} s"),
        ("RSS growth (MiB)", f"{growth_mb:+.2f}", "end − start"),
        ("RSS min / max (MiB)", f"{min(s[2] for s in samples) / 1024:.1f} / {max(s[2] for s in samples) / 1024:.1f}",
         f"{len(samples)} samples, every {info.get('sample_every', '30')} s"),
        ("heartbeats", f"{running_beats} ({beats})",
         f"lastHeartbeat writes while RUNNING/DEGRADED (all, with status changes); every {hb_interval:g} s over "
         f"{float(info.get('runtime_s', soak_s)):.0f} s → about {int(float(info.get('runtime_s', soak_s)) / hb_interval)} "
         f"expected; heartbeatErrors {metrics.get('heartbeatErrors', '?')}"),
        ("output reconnects", out_reconnects, "shelcaster_output_reconnects at the end"),
        ("stage: events reconnects / subscriptions", f"{events_reconnected} / {subscribed}",
         "log lines 'events reconnected' / 'subscribed' (5 = no resubscribe)"),
        ("program s at the end", str(status.get("programSeconds", "?")),
         f"output {status.get('output', {}).get('state', '?')}, {status.get('participants', '?')} voices, "
         f"{status.get('onAir', '?')} on air"),
        ("recording at nginx (s)", rec_s, "ffprobe duration of the FLV nginx-rtmp recorded"),
        ("warnings + errors logged", f"{len(warn_run)} / {len(warn_stop)}",
         "during the soak / after SIGTERM (the stage closing each DTLS session warns once per peer)"),
        ("SIGTERM → exit code", rc, f"show item after: compositionServiceStatus {final_css}, status {final.get('status', '?')}"),
        ("statuses written", " → ".join(statuses) or "?", "compositionServiceStatus changes seen by the watch"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print()
    print(f"| {'measure'.ljust(w0)} | {'value'.ljust(w1)} | note")
    print(f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|------")
    for a, b, c in rows:
        print(f"| {a.ljust(w0)} | {b.ljust(w1)} | {c}")

    print()
    print("CPU and RSS per interval")
    print("| from s | to s | CPU % | RSS MiB at end | output reconnects |")
    print("|--------|------|-------|----------------|-------------------|")
    for a, b in zip(samples, samples[1:]):
        pct = 100 * (b[1] - a[1]) / hz / (b[0] - a[0])
        print(f"| {a[0]:6.0f} | {b[0]:4.0f} | {pct:5.2f} | {b[2] / 1024:14.2f} | {b[3]:>17} |")

    start_t, end_t = thread_ticks(os.path.join(d, "threads.start")), thread_ticks(os.path.join(d, "threads.end"))
    if start_t and end_t:
        span = last_[0] - first[0]
        rows_t = sorted(((ticks - start_t.get(tid, (0, name))[0], tid, name) for tid, (ticks, name) in end_t.items()),
                        reverse=True)
        busy = [r for r in rows_t if r[0] > 0]
        print()
        print(f"steady CPU per thread ({first[0]:.0f} s to {last_[0]:.0f} s; {len(end_t)} threads at the end, "
              f"{len(busy)} used CPU; Dispatch/Foundation threads carry no names of their own)")
        print("| tid | name | CPU % |")
        print("|-----|------|-------|")
        for ticks, tid, name in busy[:12]:
            print(f"| {tid} | {name} | {100 * ticks / hz / span:.2f} |")
        if len(busy) > 12:
            rest = sum(r[0] for r in busy[12:])
            print(f"| ({len(busy) - 12} more) | | {100 * rest / hz / span:.2f} |")

    print()
    print("goals")
    verdict = lambda ok: "PASS" if ok else "MISS"
    print(f"  {verdict(steady <= GOAL_CPU_PCT)}  ≤ {GOAL_CPU_PCT:g} % of one core (steady, after {warmup:.0f} s): {steady:.2f} %")
    print(f"  {verdict(growth_mb < GOAL_RSS_GROWTH_MB)}  RSS growth < {GOAL_RSS_GROWTH_MB:g} MB over the soak: {growth_mb:+.2f} MiB")
    clean = rc == "0" and final_css == "STOPPED"
    print(f"  {'ok  ' if clean else 'FAIL'}  SIGTERM: exit {rc}, compositionServiceStatus {final_css}")
    if hb_errors_watch:
        print(f"  note: the heartbeat watch could not read moto {hb_errors_watch} time(s)")


def main(argv):
    cmds = {"port": (port, 0), "wait-http": (wait_http, 2), "setup": (setup, 3), "watch": (watch, 3),
            "show": (show, 3), "threads": (threads, 1), "perf-threads": (perf_threads, 0),
            "report": (report, 1)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    fn = cmds[argv[1]][0]
    return fn(argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
