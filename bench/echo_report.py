#!/usr/bin/env python3
"""Summarise a bench/echo.sh run: medians over rounds, ratios to the C server, and what
each server did past select()'s FD_SETSIZE.

Reads WORK/raw/index.tsv (round, server, test, value) written by echo.sh, prints the table
and writes OUT/echo.json and OUT/echo.txt. Usage: echo_report.py WORK OUT [--meta key=value ...]
"""
import json
import os
import re
import statistics
import sys

READS = {"read", "recvfrom", "readv", "recvmsg"}
WRITES = {"write", "sendto", "writev", "sendmsg"}
WAITS = {"epoll_wait", "epoll_pwait", "epoll_pwait2", "select", "pselect6", "poll", "ppoll"}
CTLS = {"epoll_ctl"}
BASELINE = "c"
# Servers built on select(): they cannot watch a descriptor >= FD_SETSIZE, so dying in a
# test that asks for more connections than that is the outcome being measured.
SELECT_SERVERS = {"py"}
FD_SETSIZE = 1024

STRESS_TESTS = ("pp1", "pp50", "idle0", "idle10k", "lim1k", "lim2k")
LOADGEN_TESTS = ("bulk", "sc50", "sc1", "pf50", "pf1")

# name, unit, better, label
METRICS = [
    ("pp1_rps", "trips/s", "higher", "ping-pong 1x64B round trips/s"),
    ("pp1_p50_us", "us", "lower", "ping-pong 1x64B p50"),
    ("pp1_p99_us", "us", "lower", "ping-pong 1x64B p99"),
    ("pp1_cpu_us", "us", "lower", "ping-pong 1x64B server CPU/round trip"),
    ("pp50_rps", "trips/s", "higher", "ping-pong 50x64B round trips/s"),
    ("pp50_p50_us", "us", "lower", "ping-pong 50x64B p50"),
    ("pp50_p99_us", "us", "lower", "ping-pong 50x64B p99"),
    ("pp50_cpu_us", "us", "lower", "ping-pong 50x64B server CPU/round trip"),
    ("bulk_mb_s", "MB/s", "higher", "bulk 1 conn echo throughput"),
    ("bulk_cpu_ms_gb", "ms/GB", "lower", "bulk server CPU per GB echoed"),
    ("idle0_p99_us", "us", "lower", "10 active, 0 idle: p99"),
    ("idle0_rps", "trips/s", "higher", "10 active, 0 idle: round trips/s"),
    ("idle0_cpu_us", "us", "lower", "10 active, 0 idle: server CPU/round trip"),
    ("idle10k_p99_us", "us", "lower", "10 active + 10k idle: p99"),
    ("idle10k_rps", "trips/s", "higher", "10 active + 10k idle: round trips/s"),
    ("idle10k_cpu_us", "us", "lower", "10 active + 10k idle: server CPU/trip*"),
    ("idle_p99_ratio", "x", "lower", "p99 with 10k idle / p99 with 0 idle"),
    ("idle10k_rss_per_conn_b", "B", "lower", "server RSS per conn at 10k idle"),
    ("idle10k_held", "conns", "higher", "conns held at end, 10k idle + 10"),
    ("lim1k_p99_us", "us", "lower", "10 active + 1k idle: p99"),
    ("lim1k_rps", "trips/s", "higher", "10 active + 1k idle: round trips/s"),
    ("lim1k_cpu_us", "us", "lower", "10 active + 1k idle: server CPU/trip*"),
    ("lim1k_rss_per_conn_b", "B", "lower", "server RSS per conn at 1k idle"),
    ("lim2k_held", "conns", "higher", "conns held at end, 2k idle + 10"),
    ("lim2k_p99_us", "us", "lower", "10 active + 2k idle: p99"),
    ("sc50_per_msg", "calls", "lower", "syscalls/msg, 50 conns (strace)"),
    ("sc1_per_msg", "calls", "lower", "syscalls/msg, 1 conn (strace)"),
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
        return json.loads(text.splitlines()[-1]) if text else None
    except (OSError, ValueError, IndexError):
        return None


def fmt(v, unit):
    if v is None:
        return "-"
    if unit in ("trips/s", "MB/s", "B", "count", "conns", "ms/GB"):
        return f"{v:,.0f}"
    if unit == "us":
        return f"{v:,.1f}" if v < 10_000 else f"{v:,.0f}"
    if unit == "x":
        return f"{v:.2f}"
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
    side = {}  # (server, round, test) -> {rc, msg, cpu_ns, fds, died, skipped}
    stress_json = {}  # (server, round, test) -> stress JSON
    breakdown = {}  # server -> test -> round -> {group: calls/msg}
    problems = []
    expected_deaths = set()  # (round, instance, server): logs not to scan for errors

    # Side rows first (exit status of stress, CPU, descriptors, deaths).
    for rnd, server, test, value in rows:
        if server not in servers:
            servers.append(server)
        for suffix in ("rc", "msg", "cpu_ns", "fds", "died", "skipped"):
            if test.endswith("-" + suffix) and test.rsplit("-", 1)[0] in STRESS_TESTS + LOADGEN_TESTS:
                side.setdefault((server, int(rnd), test.rsplit("-", 1)[0]), {})[suffix] = value

    for rnd, server, test, value in rows:
        rnd = int(rnd)
        r = per.setdefault(server, {}).setdefault(rnd, {})
        if test == "loadavg":
            r["loadavg"] = float(value)
            continue
        if test == "exit":
            if value != "0" and not value.startswith("died during"):
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
                "wait": sum(v for k, v in calls.items() if k in WAITS),
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
                breakdown.setdefault(server, {}).setdefault(base, {})[rnd] = bd
            continue
        if test not in STRESS_TESTS + LOADGEN_TESTS:
            continue
        sd = side.get((server, rnd, test), {})
        died = sd.get("died")
        if died is not None:
            status, _, line = died.partition("|")
            requested = None
        j = load_json(value)
        if test in STRESS_TESTS:
            if j is None:
                problems.append(f"round {rnd} {server} {test}: no stress JSON "
                                f"(exit {sd.get('rc')}: {sd.get('msg')})")
                continue
            stress_json[(server, rnd, test)] = j
            requested = j.get("conns_requested", 0)
            if died is not None:
                if server in SELECT_SERVERS and requested > FD_SETSIZE - 8:
                    instance = "idle" if test.startswith("idle") else "limit"
                    expected_deaths.add((rnd, instance, server))
                else:
                    problems.append(f"round {rnd} {server}: died during {test}: exit {status}: {line}")
            ok = sd.get("rc") == "0" and died is None
            if j.get("mismatches"):
                problems.append(f"round {rnd} {server} {test}: {j['mismatches']} mismatched echoes")
            if sd.get("rc") not in (None, "0") and died is None:
                problems.append(f"round {rnd} {server} {test}: stress exit {sd.get('rc')}: {sd.get('msg')}")
            trips = j.get("round_trips") or 0
            cpu_us = (int(sd["cpu_ns"]) / 1000 / trips) if ("cpu_ns" in sd and trips and ok) else None
            if test in ("idle10k", "lim2k"):
                r[f"{test}_held"] = j.get("still_open_at_end", 0)
            if ok:
                r[f"{test}_rps"] = j["rps"]
                r[f"{test}_p50_us"] = j["p50_us"]
                r[f"{test}_p99_us"] = j["p99_us"]
                if cpu_us is not None:
                    r[f"{test}_cpu_us"] = cpu_us
                if j.get("server_rss_bytes_per_conn") is not None:
                    r[f"{test}_rss_per_conn_b"] = j["server_rss_bytes_per_conn"]
            continue
        # loadgen
        if died is not None:
            problems.append(f"round {rnd} {server}: died during {test}: exit {status}: {line}")
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
        if test == "bulk":
            if j.get("echoed") == j.get("bytes"):
                r["bulk_mb_s"] = j["mb_per_s"]
                if "server_cpu_ms_per_gb" in j:
                    r["bulk_cpu_ms_gb"] = j["server_cpu_ms_per_gb"]
        else:
            r[f"{test}_trips"] = j["round_trips"]

    for s in servers:
        for rnd, r in per.get(s, {}).items():
            if r.get("idle0_p99_us") and r.get("idle10k_p99_us") is not None:
                r["idle_p99_ratio"] = r["idle10k_p99_us"] / r["idle0_p99_us"]

    # Outcomes of the runs that ask for many connections (what select() cannot hold).
    outcomes = {}
    for (server, rnd, test), j in sorted(stress_json.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        if test not in ("idle10k", "lim1k", "lim2k"):
            continue
        sd = side.get((server, rnd, test), {})
        e = j.get("connect_errors", {})
        o = {
            "requested": j.get("conns_requested"),
            "open_after_connecting": j.get("conns_open"),
            "still_open_at_end": j.get("still_open_at_end"),
            "closed_by_server": j.get("closed_by_peer"),
            "established_at_some_point": (j.get("still_open_at_end") or 0) + (j.get("closed_by_peer") or 0),
            "connect_refused": e.get("refused"),
            "connect_errors": e.get("total"),
            "round_trips": j.get("round_trips"),
            "p99_us": j.get("p99_us"),
            "stress_exit": int(sd["rc"]) if sd.get("rc", "").lstrip("-").isdigit() else sd.get("rc"),
            "stress_message": sd.get("msg"),
            "server_fds_max_sampled": int(sd["fds"]) if sd.get("fds", "").isdigit() else None,
            "server": "alive",
        }
        if "died" in sd:
            status, _, line = sd["died"].partition("|")
            o["server"] = "died"
            o["server_exit"] = int(status) if status.lstrip("-").isdigit() else status
            o["server_last_stderr"] = line
        outcomes.setdefault(test, {}).setdefault(server, {})[str(rnd)] = o

    # Server logs: anything that looks like a warning, an error or a panic (except the
    # logs of a select() server that died where it was expected to).
    logs = os.path.join(work, "logs")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        if not name.endswith(".err"):
            continue
        m = re.match(r"r(\d+)-(\w+)-(\w+)\.err$", name)
        if m and (int(m.group(1)), m.group(2), m.group(3)) in expected_deaths:
            continue
        with open(os.path.join(logs, name), errors="replace") as f:
            bad = [l.rstrip() for l in f
                   if re.search(r"\bWARN\b|\bERROR\b|panicked|error: |Error", l)]
        if bad:
            problems.append(f"log {name}: {len(bad)} warning/error lines, first: {bad[0][:200]}")

    medians, best, ratios = {}, {}, {}
    for s in servers:
        medians[s], best[s], ratios[s] = {}, {}, {}
        for m, _, better, _ in METRICS:
            vals = [per[s][r][m] for r in sorted(per[s]) if m in per[s][r]]
            medians[s][m] = statistics.median(vals) if vals else None
            if vals and better:
                best[s][m] = max(vals) if better == "higher" else min(vals)
    for s in servers:
        for m, *_ in METRICS:
            a, b = medians[s][m], medians.get(BASELINE, {}).get(m)
            ratios[s][m] = (a / b) if (a is not None and b) else None
    bd_median = {}
    for s, tests in breakdown.items():
        for t, rounds in tests.items():
            keys = ["read", "write", "wait", "epoll_ctl", "other"]
            bd_median.setdefault(s, {})[t] = {
                k: statistics.median(rd[k] for rd in rounds.values()) for k in keys
            }

    # ---- table ----
    nrounds = len({int(r[0]) for r in rows})
    w0, w = 44, 18
    lines = []
    lines.append(f"metric (median of {nrounds} rounds; ratio to c)".ljust(w0)
                 + "".join(s.rjust(w) for s in servers) + "   better")
    for m, unit, better, label in METRICS:
        if all(medians[s][m] is None for s in servers):
            continue
        cells = []
        for s in servers:
            v, q = medians[s][m], ratios[s][m]
            cell = fmt(v, unit) + (f" ({q:.2f}x)" if q is not None else " (  -  )")
            cells.append(cell.rjust(w))
        lines.append(f"{label} [{unit}]".ljust(w0) + "".join(cells) + f"   {better}")
    lines.append("* includes accepting the idle connections (and part of closing them). '-': no "
                 "figure (the server died, or the run could not hold what was asked: see below)")
    lines.append("")
    lines.append("best round of each (max or min; the round least disturbed by other work), ratio to c:")
    for m, unit, better, label in METRICS:
        if not m.startswith(("pp", "bulk_", "idle", "lim1k")) or not better or m.endswith("_held"):
            continue
        if all(best[s].get(m) is None for s in servers):
            continue
        cells = []
        for s in servers:
            v, b = best[s].get(m), best.get(BASELINE, {}).get(m)
            q = v / b if (v is not None and b) else None
            cells.append((fmt(v, unit) + (f" ({q:.2f}x)" if q is not None else " (  -  )")).rjust(w))
        lines.append(f"{label} [{unit}]".ljust(w0) + "".join(cells))
    lines.append("")
    for test, title in (("lim2k", "past select()'s FD_SETSIZE (1,024)"),
                        ("idle10k", "10k idle"), ("lim1k", "under FD_SETSIZE")):
        if test not in outcomes:
            continue
        lines.append(f"{test} ({title}), every round:")
        for s in servers:
            for rnd, o in sorted(outcomes[test].get(s, {}).items(), key=lambda kv: int(kv[0])):
                fds = o["server_fds_max_sampled"]
                text = (f"  r{rnd} {s:8} held {o['still_open_at_end']:,}/{o['requested']:,} at the end; "
                        f"established {o['established_at_some_point']:,}, closed by server "
                        f"{o['closed_by_server']:,}, refused {o['connect_refused']:,}; "
                        f"round trips {o['round_trips']:,}")
                if fds is not None:
                    text += f"; server fds at most {fds:,} (sampled)"
                if o["server"] == "died":
                    text += f"; SERVER DIED: exit {o['server_exit']}: {o['server_last_stderr']}"
                else:
                    text += "; server alive"
                lines.append(text)
        lines.append("")
    lines.append("syscalls per echoed message, median over rounds (sc: strace -c; pf: perf stat at full speed;")
    lines.append("wait = epoll_wait/select/poll; 'other' = every other syscall the server made):")
    for t in ("sc50", "sc1", "pf50", "pf1"):
        for s in servers:
            b = bd_median.get(s, {}).get(t)
            if b:
                lines.append(f"  {t:5} {s:8} read {b['read']:.3f}  write {b['write']:.3f}  "
                             f"wait {b['wait']:.3f}  epoll_ctl {b['epoll_ctl']:.4f}  "
                             f"(other {b['other']:.3f})")
    lines.append("")
    lines.append("per round:")
    for s in servers:
        for r in sorted(per[s]):
            d = per[s][r]
            lines.append(f"  r{r} {s:8} load={d.get('loadavg', '-')}  " + "  ".join(
                f"{m}={fmt(d[m], u)}" for m, u, *_ in METRICS if m in d))
    lines.append("")
    if problems:
        lines.append("PROBLEMS:")
        lines.extend("  " + p for p in problems)
    else:
        lines.append("no problems: every run verified its echoes, every server exited 0 on SIGTERM "
                     "or died only where select() must (past FD_SETSIZE), no warnings in server logs")
    text = "\n".join(lines)
    print(text)

    result = {
        "meta": meta,
        "baseline": BASELINE,
        "metrics": {m: {"unit": u, "better": b, "label": l} for m, u, b, l in METRICS},
        "median": medians,
        "ratio_to_c": ratios,
        "best": best,
        "outcomes": outcomes,
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
