"""A client that sends a lot and reads nothing at first: the echo server's backpressure.

    python3 docs/timeline/late_reader.py HOST:PORT [MIB] [DELAY]

Sends MIB mebibytes (default 64) to an echo server as fast as the socket takes them,
and starts reading the echo only DELAY seconds (default 1.0) after connecting. Until
then the echoed bytes fill this socket's receive buffer, then the server's send buffer,
then the server's outbound queue for this connection, which passes the high watermark
(--max-queue): the server stops reading from us (paused), so our sends stall too. When
we start reading, the queue drains, reading resumes, and the rest flows. NOTES.md
("Watching the loop") draws a recording of exactly this.
"""
import socket
import sys
import threading
import time

host, port = sys.argv[1].rsplit(":", 1)
total = int(sys.argv[2]) << 20 if len(sys.argv) > 2 else 64 << 20
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
sock = socket.create_connection((host, int(port)))
received = 0


def read_later():
    global received
    time.sleep(delay)
    while received < total:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        received += len(chunk)


reader = threading.Thread(target=read_later)
reader.start()
block = b"x" * (1 << 20)
for _ in range(total >> 20):
    sock.sendall(block)
reader.join()
sock.close()
print(f"sent {total} bytes, received {received} back")
