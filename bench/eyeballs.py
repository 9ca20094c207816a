#!/usr/bin/env python3
"""A host whose first address is dead: `netloop fetch` (happy eyeballs, RFC 8305) against
curl, in the same run.

    cargo build --release && python3 bench/eyeballs.py [ROUNDS]

A tiny HTTP server listens on 127.0.0.1:P. A listener on 127.0.0.2:P (same port) has a
backlog of 0, never accepts, and its queue is filled here first: the kernel drops further
SYNs to it, so a connect there hangs as one to an unreachable host does. Both tools get
`--resolve he.invalid:P:127.0.0.2,127.0.0.1 --connect-timeout 10` and fetch
http://he.invalid:P/ once per run; each run is timed from start to exit (start-up
included), tools alternating, and the medians are printed. netloop starts 127.0.0.1's
connect 250 ms after 127.0.0.2's; curl races only across address families, so within
one family it waits on the dead address (part of its connect timeout) first.
"""

import http.server
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETLOOP = os.path.join(ROOT, "target", "release", "netloop")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"x" * 100
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hung = socket.socket()
    hung.bind(("127.0.0.2", port))
    hung.listen(0)
    filled = []
    for _ in range(16):
        s = socket.socket()
        s.settimeout(0.3)
        try:
            s.connect(("127.0.0.2", port))
            filled.append(s)
        except OSError:
            break
    else:
        sys.exit("the listener's queue never filled: connects to it would not hang")
    url = f"http://he.invalid:{port}/"
    resolve = f"he.invalid:{port}:127.0.0.2,127.0.0.1"
    tools = {
        "netloop fetch": [NETLOOP, "fetch", "--connect-timeout", "10", "--resolve", resolve, url],
        "curl": ["curl", "-s", "-o", "/dev/null", "--connect-timeout", "10", "--resolve", resolve, url],
    }
    times = {name: [] for name in tools}
    for r in range(rounds):
        order = list(tools) if r % 2 == 0 else list(tools)[::-1]
        for name in order:
            start = time.monotonic()
            done = subprocess.run(tools[name], capture_output=True)
            times[name].append(time.monotonic() - start)
            if done.returncode != 0:
                sys.exit(f"{name} failed: {done.stderr.decode(errors='replace')}")
    for name, runs in times.items():
        ms = [round(t * 1000) for t in runs]
        print(f"{name}: median {statistics.median(runs) * 1000:.0f} ms (runs {ms})")


if __name__ == "__main__":
    main()
