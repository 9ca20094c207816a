#!/usr/bin/env python3
"""py_select_echo.py: the Python select() baseline for bench/echo.sh.

The shape of seed 001's select() server, written for the bench: one listening socket and
every accepted socket in an `inputs` list; `select.select(inputs, outputs, inputs)` each
turn; what a connection sends goes into that connection's `queue.Queue`, and the
connection joins `outputs` until its queue is empty again; errors close it.

Kept from the seed on purpose: select() itself, so the server scans every descriptor
on every call and cannot watch a descriptor numbered FD_SETSIZE (1,024) or above.
Python's select.select raises ValueError("filedescriptor out of range in select()") then;
nothing catches it here, so the process dies, as the seed's would. bench/echo.sh measures
exactly that.

Changed from the seed, so the comparison measures the loop and not its bugs:
- echoes the bytes unchanged (the seed appends a reply text) and prints nothing per
  message;
- a partial send() keeps the unsent rest (the seed drops it);
- recv(65536) rather than recv(1024), listen(1024) rather than listen(5) (the C
  baseline's backlog), TCP_NODELAY on accepted sockets (as the other servers set it);
- SIGTERM ends it with status 0.

Usage: py_select_echo.py PORT   (listens on 127.0.0.1; prints "listening on tcp ADDR")
"""
import queue
import select
import signal
import socket
import sys

CHUNK = 65536


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    host, bound = listener.getsockname()
    print(f"listening on tcp {host}:{bound}", flush=True)

    def on_term(_sig, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)

    inputs = [listener]
    outputs = []
    pending = {}  # socket -> queue.Queue of byte chunks to echo back
    unsent = {}  # socket -> rest of a chunk that send() took only part of

    def drop(s):
        if s in outputs:
            outputs.remove(s)
        if s in inputs:
            inputs.remove(s)
        pending.pop(s, None)
        unsent.pop(s, None)
        s.close()

    while True:
        readable, writable, broken = select.select(inputs, outputs, inputs)

        for s in readable:
            if s is listener:
                try:
                    conn, _addr = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:  # e.g. EMFILE: say so and keep serving the others
                    print(f"accept: {e}", file=sys.stderr, flush=True)
                    continue
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                inputs.append(conn)
                pending[conn] = queue.Queue()
                continue
            if s not in pending:  # closed earlier in this turn
                continue
            try:
                data = s.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                drop(s)
                continue
            if not data:  # the peer closed
                drop(s)
                continue
            pending[s].put(data)
            if s not in outputs:
                outputs.append(s)

        for s in writable:
            if s not in pending:
                continue
            chunk = unsent.pop(s, None)
            if chunk is None:
                try:
                    chunk = pending[s].get_nowait()
                except queue.Empty:
                    outputs.remove(s)  # nothing left: stop asking for writability
                    continue
            try:
                sent = s.send(chunk)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                drop(s)
                continue
            if sent < len(chunk):
                unsent[s] = chunk[sent:]

        for s in broken:
            if s in pending:
                drop(s)


if __name__ == "__main__":
    main()
