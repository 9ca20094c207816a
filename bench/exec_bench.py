"""Driver for bench/exec.sh: round trips of a trivial command, and RSS under idle load.

  python3 exec_bench.py rtt PORT CLIENTS ROUNDS [COMMAND]
      -> "<round trips per second>" (COMMAND defaults to `true`)
  python3 exec_bench.py hold PORT IDLE BUSY SECS    -> holds IDLE idle connections and
      BUSY connections each running `sleep SECS`, prints "ready", waits for stdin to close

Each round trip sends the command and `\\n` (the newline ends the message at once on netloop; the
seed-style server takes one recv as one command either way) and reads the framed reply.
Everything is bounded: connections and rounds are counted, sockets have timeouts.
"""
import resource
import socket
import struct
import sys
import threading
import time


def recv_exactly(sock, n):
    data = bytearray()
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise SystemExit('server closed the connection')
        data += part
    return bytes(data)


def one_reply(sock):
    (n,) = struct.unpack('i', recv_exactly(sock, 4))
    header = recv_exactly(sock, n)
    size = int(header.split(b'"file_size":')[1].split(b',')[0].split(b'}')[0])
    recv_exactly(sock, size)


def rtt(port, clients, rounds, command):
    line = command.encode() + b'\n'

    def worker():
        s = socket.create_connection(('127.0.0.1', port), timeout=30)
        for _ in range(rounds):
            s.sendall(line)
            one_reply(s)
        s.close()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    print(f'{clients * rounds / took:.0f}')


def hold(port, idle, busy, secs):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, idle + busy + 64)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    socks = [socket.create_connection(('127.0.0.1', port), timeout=30) for _ in range(idle)]
    for _ in range(busy):
        s = socket.create_connection(('127.0.0.1', port), timeout=30)
        s.sendall(f'sleep {secs}\n'.encode())
        socks.append(s)
    print('ready', flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


mode = sys.argv[1]
if mode == 'rtt':
    rtt(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
        sys.argv[5] if len(sys.argv) > 5 else 'true')
else:
    hold(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
