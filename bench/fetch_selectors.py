#!/usr/bin/env python3
"""Seed 001's `selectors` Fetcher, grown just enough to fetch a list of URLs: the
benchmark's Python baseline (bench-only code, written for netloop; not the seed itself).

Kept in the seed's style: one non-blocking socket per URL, `connect` then register
EVENT_WRITE with `send_request` as the callback, which sends the request with
`Connection: close` and re-registers for EVENT_READ with `read_data`; the loop calls
`key.data(key)` for every ready key. What it fixes, so the comparison is fair:
- `read_data` keeps what it read (the seed's `data = b""` inside the callback keeps only
  the last chunk); here body bytes are counted, not stored, like the other tools that
  write to /dev/null;
- up to --parallel fetchers run at once (the seed fetches one page);
- a failed connect (SO_ERROR) or reset is counted, not raised.

Usage: fetch_selectors.py URL_FILE [--parallel 50]
Prints one line: `pages=N failed=F body_bytes=B seconds=S`.
"""

import argparse
import socket
import sys
import time
import urllib.parse
from selectors import DefaultSelector, EVENT_READ, EVENT_WRITE

selector = DefaultSelector()


class Fetcher:
    def __init__(self, url, done):
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        self.done = done
        self.head = b""  # until the end of the header section
        self.body_bytes = 0
        self.ok = False
        self.client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.client.setblocking(False)

    def get_url(self):
        try:
            self.client.connect((self.host, self.port))
        except BlockingIOError:
            pass
        selector.register(self.client.fileno(), EVENT_WRITE, self.send_request)

    def send_request(self, key):
        selector.unregister(key.fd)
        err = self.client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return self.finish()
        request = "GET {} HTTP/1.1\r\nHost:{}\r\nConnection:close\r\n\r\n".format(
            self.path, self.host
        ).encode()
        self.client.send(request)  # a few dozen bytes: always fits a fresh socket
        selector.register(self.client.fileno(), EVENT_READ, self.read_data)

    def read_data(self, key):
        try:
            chunk = self.client.recv(65536)
        except ConnectionError:
            return self.finish()
        if not chunk:
            self.ok = self.head.startswith(b"HTTP/1.1 200") or self.head.startswith(b"HTTP/1.0 200")
            return self.finish()
        if self.body_bytes == 0 and b"\r\n\r\n" not in self.head:
            self.head += chunk
            end = self.head.find(b"\r\n\r\n")
            if end >= 0:
                self.body_bytes = len(self.head) - end - 4
                self.head = self.head[: end + 4]
        else:
            self.body_bytes += len(chunk)

    def finish(self):
        try:
            selector.unregister(self.client.fileno())
        except (KeyError, ValueError):
            pass
        self.client.close()
        self.done(self)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("urls")
    ap.add_argument("--parallel", type=int, default=50)
    args = ap.parse_args()
    with open(args.urls) as f:
        urls = [line.strip() for line in f if line.strip()]
    stats = {"pages": 0, "failed": 0, "bytes": 0, "next": 0, "active": 0}

    def start_next():
        while stats["active"] < args.parallel and stats["next"] < len(urls):
            url = urls[stats["next"]]
            stats["next"] += 1
            stats["active"] += 1
            Fetcher(url, done).get_url()

    def done(fetcher):
        stats["active"] -= 1
        stats["pages"] += 1
        stats["bytes"] += fetcher.body_bytes
        if not fetcher.ok:
            stats["failed"] += 1
        start_next()

    started = time.monotonic()
    start_next()
    while stats["active"]:
        for key, mask in selector.select():
            key.data(key)
    seconds = time.monotonic() - started
    print(
        "pages={} failed={} body_bytes={} seconds={:.4f}".format(
            stats["pages"], stats["failed"], stats["bytes"], seconds
        )
    )
    return 1 if stats["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
