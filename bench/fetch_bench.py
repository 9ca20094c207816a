#!/usr/bin/env python3
"""Runs the fetch benchmark's measurements for bench/fetch.sh (which sets up nginx and the
URL lists first): netloop fetch, curl --parallel --parallel-max 50 and the seed-style
Python fetcher (bench/fetch_selectors.py), on the same URL lists, in the same run.

Each round runs every workload with every tool, the tools in an order rotated per round
(A/B interleaving: drift on the machine hits all of them alike). Every run is one
process, timed from start to exit (start-up included, the same for all), its peak RSS
taken by GNU time (see run_measured). A run counts only if every URL came back 200 with
the expected number of body bytes (decoded bytes, for the compressed workloads: in
netloop's summary line, or in the files saved). Output: a Markdown table of medians (and
the ratio of netloop to curl doing the same) on stdout, every round's figures in
OUT/results.json.
"""

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import time

# netloop-50 is netloop with --per-host 50: as many connections as curl opens (the
# default, --per-host 6, shares 6 keep-alive connections among the 50 transfers).
TOOLS = ["netloop", "netloop-50", "curl", "python"]
# The compressed workloads (a name ending in "-gz"): both fetchers ask for gzip and
# decode it, dropping the bodies or saving them (netloop -o DIR; curl one output file
# per URL in DIR). The Python fetcher does not decode, so it sits these out.
TOOLS_GZ = ["netloop", "netloop-save", "curl", "curl-save"]


def tools_for(workload):
    return TOOLS_GZ if workload.endswith("-gz") else TOOLS


def save_dir(args, tool):
    return os.path.join(args.out, "save", tool)


def empty_dir(path):
    """Make path an empty directory (saving runs start with nothing in it)."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        os.remove(os.path.join(path, name))


def saved_bytes(path):
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path))


def run_measured(cmd, cpu, rss_file):
    """Run cmd pinned to cpu: (seconds, peak RSS KiB, exit code, stdout, stderr).

    The peak RSS comes from GNU time (wait4's ru_maxrss), not from our own wait4: Linux
    keeps ru_maxrss across exec, so a child forked from this Python process would report
    Python's RSS as its own. GNU time's fork is a small C process.
    """
    full = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd
    if cpu is not None:
        full = ["taskset", "-c", str(cpu)] + full
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_r)
        os.close(err_r)
        try:
            os.execvp(full[0], full)
        finally:
            os._exit(127)
    os.close(out_w)
    os.close(err_w)
    chunks = {out_r: [], err_r: []}
    open_fds = [out_r, err_r]
    sel = selectors.DefaultSelector()
    for fd in open_fds:
        sel.register(fd, selectors.EVENT_READ)
    while open_fds:
        for key, _ in sel.select():
            data = os.read(key.fd, 65536)
            if data:
                chunks[key.fd].append(data)
            else:
                sel.unregister(key.fd)
                os.close(key.fd)
                open_fds.remove(key.fd)
    _, status = os.waitpid(pid, 0)
    seconds = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    out = b"".join(chunks[out_r]).decode(errors="replace")
    err = b"".join(chunks[err_r]).decode(errors="replace")
    with open(rss_file) as f:
        # "Command exited with non-zero status N" may come first; the figure is last.
        rss = int(f.read().split()[-1])
    return seconds, rss, code, out, err


def check(tool, code, out, err, pages, body_bytes):
    """Did every URL come back 200 with the expected bytes? Returns an error or None."""
    if tool.startswith("netloop"):
        # stderr: "N URLs: X ok, F failed, B body bytes in S s"
        line = next((l for l in err.splitlines() if " URLs: " in l), "")
        words = line.replace(",", "").split()
        try:
            ok, failed, got = int(words[2]), int(words[4]), int(words[6])
        except (IndexError, ValueError):
            return "no summary line: " + err[-300:]
        if code != 0 or ok != pages or failed or got != body_bytes:
            return f"exit {code}, {ok} ok, {failed} failed, {got} bytes"
    elif tool.startswith("curl"):
        lines = out.split()
        codes = lines[0::2]
        sizes = [int(s) for s in lines[1::2]]
        bad = sum(1 for c in codes if c != "200")
        # With --compressed, curl's size_download counts the compressed bytes: there
        # the decoded bytes are checked in the saved files (curl-save) instead.
        if body_bytes is None:
            if code != 0 or len(codes) != pages or bad:
                return f"exit {code}, {len(codes)} transfers, {bad} not 200"
        elif code != 0 or len(codes) != pages or bad or sum(sizes) != body_bytes:
            return f"exit {code}, {len(codes)} transfers, {bad} not 200, {sum(sizes)} bytes"
    else:
        fields = dict(kv.split("=") for kv in out.split())
        if code != 0 or int(fields["pages"]) != pages or int(fields["failed"]) or int(
            fields["body_bytes"]
        ) != body_bytes:
            return f"exit {code}: {out.strip()}"
    return None


def command(tool, args, workload):
    urls = os.path.join(args.out, workload + ".txt")
    if workload.endswith("-gz"):
        curl = ["curl", "-s", "--compressed", "--parallel", "--parallel-max", "50",
                "-w", "%{http_code} %{size_download}\\n"]
        if tool == "netloop":
            return [args.netloop, "fetch", "--concurrency", "50", "--compressed", "-i", urls]
        if tool == "netloop-save":
            return [args.netloop, "fetch", "--concurrency", "50", "--compressed",
                    "-o", save_dir(args, tool), "-i", urls]
        if tool == "curl":
            return curl + ["-K", os.path.join(args.out, workload + ".curl")]
        return curl + ["--output-dir", save_dir(args, tool), "-K",
                       os.path.join(args.out, workload + ".save.curl")]
    if tool == "netloop":
        return [args.netloop, "fetch", "--concurrency", "50", "-i", urls]
    if tool == "netloop-50":
        return [args.netloop, "fetch", "--concurrency", "50", "--per-host", "50", "-i", urls]
    if tool == "curl":
        return [
            "curl", "-s", "--parallel", "--parallel-max", "50",
            "-w", "%{http_code} %{size_download}\\n",
            "-K", os.path.join(args.out, workload + ".curl"),
        ]
    return [sys.executable, args.python_fetcher, urls, "--parallel", "50"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--netloop", required=True)
    ap.add_argument("--python-fetcher", required=True)
    ap.add_argument("--workloads", required=True, help="name:pages:body_bytes,...")
    args = ap.parse_args()
    workloads = []
    for spec in args.workloads.split(","):
        name, pages, size = spec.split(":")
        workloads.append((name, int(pages), int(size)))

    raw = {w: {t: [] for t in tools_for(w)} for w, _, _ in workloads}
    for r in range(args.rounds):
        for name, pages, size in workloads:
            tools = tools_for(name)
            k = r % len(tools)
            order = tools[k:] + tools[:k]
            for tool in order:
                rss_file = os.path.join(args.out, "tmp", "rss")
                saving = tool.endswith("-save")
                if saving:
                    empty_dir(save_dir(args, tool))
                secs, rss, code, out, err = run_measured(
                    command(tool, args, name), args.cpu, rss_file
                )
                gz_curl = name.endswith("-gz") and tool.startswith("curl")
                problem = check(tool, code, out, err, pages, None if gz_curl else size)
                if problem is None and saving:
                    got = saved_bytes(save_dir(args, tool))
                    if got != size:
                        problem = f"saved {got} bytes, expected {size}"
                if problem is None and gz_curl and tool == "curl" and r == 0:
                    # What came over the wire, compressed (the same for every tool).
                    wire = sum(int(x) for x in out.split()[1::2])
                    print(f"{name}: {wire} bytes on the wire for {size} decoded "
                          f"({size / wire:.2f}x)", file=sys.stderr)
                raw[name][tool].append(
                    {"seconds": secs, "rss_kib": rss, "ok": problem is None, "problem": problem}
                )
                flag = "" if problem is None else "  INVALID: " + problem
                print(
                    f"round {r + 1} {name:8} {tool:10} {secs:7.3f} s  {rss / 1024:6.1f} MiB{flag}",
                    file=sys.stderr,
                )

    summary = {}
    rows = []
    for name, pages, size in workloads:
        summary[name] = {}
        for tool in tools_for(name):
            good = [x for x in raw[name][tool] if x["ok"]]
            if not good:
                summary[name][tool] = None
                continue
            med = statistics.median(x["seconds"] for x in good)
            summary[name][tool] = {
                "median_seconds": med,
                "pages_per_s": pages / med,
                "mb_per_s": size / 1e6 / med,
                "peak_rss_mib": max(x["rss_kib"] for x in good) / 1024,
                "valid_runs": len(good),
            }
        for tool in tools_for(name):
            s = summary[name][tool]
            if s is None:
                rows.append(f"| {name} | {tool} | invalid | | | | |")
                continue
            # Against curl doing the same (saving against saving, dropping against
            # dropping); the ratio is of pages/s, so above 1 means faster than curl.
            base = "curl-save" if tool.endswith("-save") else "curl"
            curl = summary[name].get(base)
            ratio = ""
            if curl and not tool.startswith("curl"):
                ratio = f"{s['pages_per_s'] / curl['pages_per_s']:.2f}x"
            rows.append(
                f"| {name} | {tool} | {s['median_seconds'] * 1000:.0f} ms | {s['pages_per_s']:,.0f} "
                f"| {s['mb_per_s']:,.0f} | {s['peak_rss_mib']:.1f} | {ratio} |"
            )
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"rounds": args.rounds, "summary": summary, "raw": raw}, f, indent=1)
    print("| workload | tool | median wall | pages/s | MB/s | peak RSS MiB | vs curl |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
