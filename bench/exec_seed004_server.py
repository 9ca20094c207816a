"""Baseline for bench/exec.sh: a blocking command server in seed 004's style.

Usage: python3 exec_seed004_server.py PORT [shell|noshell]

Like the seed's server (粘包问题解决最终版): one client at a time, `conn.recv(1024)` is
one command, `subprocess.Popen(cmd, shell=True, stdout=PIPE, stderr=PIPE)`, read all of
stdout then all of stderr, reply with `struct.pack('i', len(header))`, the JSON header
with `file_size`, and the output. With `noshell` the command is split with `shlex` and
run without a shell (fewer processes per command: the fairer comparison). Written for the
benchmark, in its own words: it is not the seed's code. Loopback only.
"""
import json
import shlex
import socket
import struct
import subprocess
import sys

port = int(sys.argv[1])
use_shell = (sys.argv[2] if len(sys.argv) > 2 else 'shell') == 'shell'
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', port))
server.listen(128)
print('listening', flush=True)
while True:
    conn, _ = server.accept()
    while True:
        try:
            cmd = conn.recv(1024)
        except ConnectionResetError:
            break
        if not cmd:
            break
        text = cmd.decode('utf-8')
        args = text if use_shell else shlex.split(text)
        proc = subprocess.Popen(args, shell=use_shell, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        out = proc.stdout.read() + proc.stderr.read()
        proc.wait()
        head = json.dumps({'file_size': len(out), 'exit_code': proc.returncode}).encode()
        conn.sendall(struct.pack('i', len(head)) + head + out)
    conn.close()
