#!/usr/bin/env python3
"""Summarise a bench/echo.sh run: medians over rounds, ratios to the C server.

Reads WORK/raw/index.tsv (round, server, test, file) written by echo.sh, prints the table
and writes OUT/echo.json and OUT/echo.txt. Usage: echo_report.py WORK OUT [--meta key=value ...]
"""
import json
import os
import re
import statistics
import sys

READS = {"read", "recvfrom", "readv", "recvmsg"}
WRITES = {"write", "sendto", "writev", "sendmsg"}
WAITS = {"epoll_wait", "epoll_pwait", "epoll_pwait2"}
CTLS = {"epoll_ctl"}
BASELINE = "c"

# name, unit, better, label
METRICS = [
    ("pp_rps", "trips/s", "higher", "ping-pong 50x64B round trips/s"),
    ("pp_p50_us", "us", "lower", "ping-pong 50x64B p50"),
    ("pp_p99_us", "us", "lower", "ping-pong 50x64B p99"),
    ("pp_cpu_us", "us", "lower", "ping-pong 50x64B server CPU/round trip"),
    ("pp_cpu_util", "cores", "", "ping-pong 50x64B server CPU use"),
    ("bulk_mb_s", "MB/s", "higher", "bulk 1 conn echo throughput"),
    ("bulk_cpu_ms_gb", "ms/GB", "lower", "bulk server CPU per GB echoed"),
    ("idle_rss_per_conn_b", "B", "lower", "RSS per idle conn (VmRSS delta/N)"),
    ("idle_p99_us", "us", "lower", "p99, 10 active + idle conns"),
    ("idle_rps", "trips/s", "higher", "round trips/s, 10 active + idle"),
    ("idle_cpu_us", "us", "lower", "server CPU/round trip, 10 active + idle"),
    ("sc50_per_msg", "calls", "lower", "syscalls/msg, 50 conns (strace)"),
    ("sc50_epoll_ctl", "count", "lower", "epoll_ctl total, 50-conn strace run"),
    ("sc1_per_msg", "calls", "lower", "syscalls/msg, 1 conn (strace)"),
    ("sc1_epoll_ctl", "count", "lower", "epoll_ctl total, 1-conn strace run"),
    ("pf50_per_msg", "calls", "lower", "syscalls/msg, 50 conns (perf)"),
    ("pf50_all_per_msg", "calls", "lower", "all syscalls/msg, 50 conns (perf)"),
    ("pf1_per_msg", "calls", "lower", "syscalls/msg, 1 conn (perf)"),
    ("pf1_all_per_msg", "calls", "lower", "all syscalls/msg, 1 conn (perf)"),
    ("pf50_epoll_ctl", "count", "lower", "epoll_ctl total, 50-conn perf run"),
]


def parse_strace(path):
    """{syscall: calls} from an `strace -c` summary."""
    calls = {}
    try:
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 5 and re.match(r"^[\d.]+$", fields[0]) and fields[-1] != "total":
                    calls[fields[-1]] = int(fields[3])
    except OSError:
        pass
    return calls


def parse_perf(path):
    """{syscall: calls} from `perf stat -x,` over syscalls:sys_enter_* (and the total
    of raw_syscalls:sys_enter as "__all")."""
    calls = {}
    try:
        with open(path) as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) < 3 or not fields[0].isdigit():
                    continue
                event = fields[2]
                if event.startswith("syscalls:sys_enter_"):
                    calls[event[len("syscalls:sys_enter_"):]] = int(fields[0])
                elif event == "raw_syscalls:sys_enter":
                    calls["__all"] = int(fields[0])
    except OSError:
        pass
    return calls


def load_json(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def fmt(v, unit):
    if v is None:
        return "-"
    if unit in ("trips/s",):
        return f"{v:,.0f}"
    if unit == "MB/s":
        return f"{v:,.0f}"
    if unit == "B":
        return f"{v:,.0f}"
    if unit == "us":
        return f"{v:,.1f}"
    if unit in ("cores", "ms/GB"):
        return f"{v:.2f}" if unit == "cores" else f"{v:,.0f}"
    if unit == "count":
        return f"{v:,.0f}"
    if unit == "calls":
        return f"{v:.3f}" if v < 100 else f"{v:,.0f}"
    return str(v)


def main():
    work, out = sys.argv[1], sys.argv[2]
    meta = {}
    if "--meta" in sys.argv:
        for kv in sys.argv[sys.argv.index("--meta") + 1:]:
            k, _, v = kv.partition("=")
            meta[k] = v
    rows = []
    with open(os.path.join(work, "raw", "index.tsv")) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 4:
                rows.append(parts)

    servers = []
    per = {}  # server -> round -> metric -> value
    breakdown = {}  # server -> test -> round -> {group: calls/msg}
    problems = []
    for rnd, server, test, value in rows:
        if server not in servers:
            servers.append(server)
        r = per.setdefault(server, {}).setdefault(int(rnd), {})
        if test == "loadavg":
            r["loadavg"] = float(value)
            continue
        if test == "exit":
            if value != "0":
                problems.append(f"round {rnd} {server}: exit after SIGTERM: {value}")
            continue
        if test.endswith("-strace") or test.endswith("-perf"):
            base = test.rsplit("-", 1)[0]
            calls = dict(parse_strace(value) if test.endswith("-strace") else parse_perf(value))
            trips = r.get(f"{base}_trips")
            if not calls:
                problems.append(f"round {rnd} {server}: no syscall counts in {value}")
                continue
            everything = calls.pop("__all", None)
            groups = {
                "read": sum(v for k, v in calls.items() if k in READS),
                "write": sum(v for k, v in calls.items() if k in WRITES),
                "epoll_wait": sum(v for k, v in calls.items() if k in WAITS),
                "epoll_ctl": sum(v for k, v in calls.items() if k in CTLS),
            }
            counted = sum(groups.values())
            if everything is None:  # strace lists every syscall it saw
                everything = sum(calls.values())
            r[f"{base}_epoll_ctl"] = groups["epoll_ctl"]
            if trips:
                r[f"{base}_per_msg"] = counted / trips
                r[f"{base}_all_per_msg"] = everything / trips
                bd = {g: v / trips for g, v in groups.items()}
                bd["other"] = (everything - counted) / trips
                bd["trips"] = trips
                bd["calls"] = {k: v for k, v in calls.items() if v}
                if everything != sum(calls.values()):
                    bd["calls"]["(all syscalls)"] = everything
                breakdown.setdefault(server, {}).setdefault(base, {})[int(rnd)] = bd
            continue
        j = load_json(value)
        if j is None:
            problems.append(f"round {rnd} {server} {test}: no result (see {value}.err)")
            continue
        if j.get("errors"):
            err = ""
            try:
                with open(value + ".err") as f:
                    err = f.read().strip().splitlines()[:3]
            except OSError:
                pass
            problems.append(f"round {rnd} {server} {test}: {j['errors']} errors: {err}")
        if test == "pingpong":
            r["pp_rps"], r["pp_p50_us"], r["pp_p99_us"] = j["rps"], j["p50_us"], j["p99_us"]
            if "server_cpu_us_per_trip" in j:
                r["pp_cpu_us"] = j["server_cpu_us_per_trip"]
                r["pp_cpu_util"] = j["server_cpu_util"]
        elif test == "bulk":
            if j.get("echoed") == j.get("bytes"):
                r["bulk_mb_s"] = j["mb_per_s"]
                if "server_cpu_ms_per_gb" in j:
                    r["bulk_cpu_ms_gb"] = j["server_cpu_ms_per_gb"]
        elif test in ("sc50", "sc1", "pf50", "pf1"):
            r[f"{test}_trips"] = j["round_trips"]
        elif test == "idle":
            if "rss_idle_kb" in j:
                r["idle_rss_per_conn_b"] = j["rss_per_idle_bytes"]
                r["idle_p99_us"] = j["p99_us"]
                r["idle_rps"] = j["rps"]
                if "server_cpu_us_per_trip" in j:
                    r["idle_cpu_us"] = j["server_cpu_us_per_trip"]
                r["idle_rss_kb"] = [j["rss_before_kb"], j["rss_idle_kb"], j["rss_after_kb"]]
            if j.get("idle_lost"):
                problems.append(f"round {rnd} {server}: {j['idle_lost']} idle connections closed by the server")

    # Server logs: anything that looks like a warning, an error or a panic.
    logs = os.path.join(work, "logs")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        if not name.endswith(".err"):
            continue
        with open(os.path.join(logs, name), errors="replace") as f:
            bad = [l.rstrip() for l in f
                   if re.search(r"\bWARN\b|\bERROR\b|panicked|error: |Error", l)]
        if bad:
            problems.append(f"log {name}: {len(bad)} warning/error lines, first: {bad[0][:200]}")

    medians = {}
    for s in servers:
        medians[s] = {}
        for m, *_ in METRICS:
            vals = [per[s][r][m] for r in sorted(per[s]) if m in per[s][r]]
            medians[s][m] = statistics.median(vals) if vals else None
    best = {}
    for s in servers:
        best[s] = {}
        for m, _, better, _ in METRICS:
            vals = [per[s][r][m] for r in sorted(per[s]) if m in per[s][r]]
            if vals and better:
                best[s][m] = max(vals) if better == "higher" else min(vals)
    ratios = {}
    for s in servers:
        ratios[s] = {}
        for m, *_ in METRICS:
            a, b = medians[s][m], medians.get(BASELINE, {}).get(m)
            ratios[s][m] = (a / b) if (a is not None and b) else None
    bd_median = {}
    for s, tests in breakdown.items():
        for t, rounds in tests.items():
            keys = ["read", "write", "epoll_wait", "epoll_ctl", "other"]
            bd_median.setdefault(s, {})[t] = {
                k: statistics.median(rd[k] for rd in rounds.values()) for k in keys
            }

    # ---- table ----
    w0, w = 46, 19
    lines = []
    lines.append("metric (median of %d rounds)".ljust(w0) % len({int(r[0]) for r in rows})
                 + "".join(s.rjust(w) for s in servers) + "   better")
    for m, unit, better, label in METRICS:
        cells = []
        for s in servers:
            v, q = medians[s][m], ratios[s][m]
            cell = fmt(v, unit) + (f" ({q:.2f}x)" if q is not None else " (  -  )")
            cells.append(cell.rjust(w))
        lines.append(f"{label} [{unit}]".ljust(w0) + "".join(cells) + f"   {better}")
    lines.append("")
    lines.append("best round of each (max or min; the round least disturbed by other work), ratio to c:")
    for m, unit, better, label in METRICS:
        if not m.startswith(("pp_", "bulk_", "idle_")) or not better:
            continue
        cells = []
        for s in servers:
            v, b = best[s].get(m), best.get(BASELINE, {}).get(m)
            q = v / b if (v is not None and b) else None
            cells.append((fmt(v, unit) + (f" ({q:.2f}x)" if q is not None else " (  -  )")).rjust(w))
        lines.append(f"{label} [{unit}]".ljust(w0) + "".join(cells))
    lines.append("")
    lines.append("syscalls per echoed message, median over rounds (sc: strace -c; pf: perf stat at full speed;")
    lines.append("'other' = every other syscall the server made, e.g. futex, accept4, close):")
    for t in ("sc50", "sc1", "pf50", "pf1"):
        for s in servers:
            b = bd_median.get(s, {}).get(t)
            if b:
                lines.append(f"  {t:5} {s:8} read {b['read']:.3f}  write {b['write']:.3f}  "
                             f"epoll_wait {b['epoll_wait']:.3f}  epoll_ctl {b['epoll_ctl']:.4f}  "
                             f"(other {b['other']:.3f})")
    lines.append("")
    lines.append("per round:")
    for s in servers:
        for r in sorted(per[s]):
            d = per[s][r]
            lines.append(f"  r{r} {s:8} load={d.get('loadavg', '-')}  " + "  ".join(
                f"{m}={fmt(d[m], u)}" for m, u, *_ in METRICS if m in d))
    if problems:
        lines.append("")
        lines.append("PROBLEMS:")
        lines.extend("  " + p for p in problems)
    else:
        lines.append("")
        lines.append("no problems: every loadgen run verified its echoes, no idle connection was lost, "
                     "every server exited 0 on SIGTERM, no warnings in server logs")
    text = "\n".join(lines)
    print(text)

    result = {
        "meta": meta,
        "baseline": BASELINE,
        "metrics": {m: {"unit": u, "better": b, "label": l} for m, u, b, l in METRICS},
        "median": medians,
        "ratio_to_c": ratios,
        "best": best,
        "syscalls_per_msg_breakdown": bd_median,
        "rounds": {s: {str(r): per[s][r] for r in sorted(per[s])} for s in servers},
        "strace_calls": {s: {t: {str(r): rd["calls"] for r, rd in rounds.items()}
                             for t, rounds in tests.items()} for s, tests in breakdown.items()},
        "problems": problems,
    }
    with open(os.path.join(out, "echo.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=False)
        f.write("\n")
    with open(os.path.join(out, "echo.txt"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
