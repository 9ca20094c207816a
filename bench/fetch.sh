#!/usr/bin/env bash
# bench/fetch.sh: `netloop fetch` against `curl --parallel --parallel-max 50` and a Python
# selectors fetcher in seed 001's style (bench/fetch_selectors.py), on a local nginx.
#
#   bench/fetch.sh               # 7 rounds, about a minute on 2 cores
#   ROUNDS=3 bench/fetch.sh      # fewer rounds
#
# nginx (Debian's package, our own config, one worker, access log off, keep-alive up to
# 100,000 requests per connection) listens on 127.0.0.1:$PORT and serves, from
# bench/out/fetch/www:
#   small     2,000 distinct 1 KiB pages              (p/0000.html ... p/1999.html)
#   page100k  one 100 KiB page, 200 times             (page100k.html?i=N)
#   big       one 10 MiB file, 20 times               (big10m.bin?i=N)
# Every tool gets the same URL list per workload, keeps 50 transfers in flight and drops
# the bodies (netloop: several URLs without -o; curl: output /dev/null; Python: counted).
# netloop runs twice: with its default --per-host 6 (6 keep-alive connections) and with
# --per-host 50 ("netloop-50": as many connections as curl opens).
# nginx runs on core $SERVER_CPU, the fetchers on core $CLIENT_CPU. bench/fetch_bench.py
# runs the rounds (tools in an order rotated per round), checks every run (all 200, all
# bytes), and prints medians: pages/s, MB/s and peak RSS (GNU time's %M). Raw figures:
# bench/out/fetch/results.json; the table: bench/out/fetch/table.md.
#
# Environment: ROUNDS (7), PORT (18090), SERVER_CPU (0), CLIENT_CPU (1).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out/fetch"
ROUNDS=${ROUNDS:-7}
PORT=${PORT:-18090}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

say() { printf '%s\n' "$*" >&2; }
die() { say "fetch.sh: $*"; exit 1; }

# ---- tools -----------------------------------------------------------------------------
need_apt=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx-light)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
command -v taskset >/dev/null || need_apt+=(util-linux)
[[ -x /usr/bin/time ]] || need_apt+=(time)
if ((${#need_apt[@]})); then
    say "installing ${need_apt[*]}"
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
(($(nproc) >= 2)) || die "needs 2 cores (nginx and the fetchers are pinned apart)"

say "building netloop (release)"
(cd "$root" && cargo build --release --quiet)
netloop="$root/target/release/netloop"

# ---- content and nginx -----------------------------------------------------------------
mkdir -p "$out/www/p" "$out/tmp"
python3 - "$out/www" <<'EOF'
import os, random, sys
www = sys.argv[1]
rng = random.Random(4)  # the same bytes on every run
for i in range(2000):
    path = os.path.join(www, "p", f"{i:04d}.html")
    if not os.path.exists(path):
        line = f"<p>page {i}</p>\n".encode()
        open(path, "wb").write((line * (1024 // len(line) + 1))[:1024])
for name, size in (("page100k.html", 100 * 1024), ("big10m.bin", 10 * 1024 * 1024)):
    path = os.path.join(www, name)
    if not os.path.exists(path) or os.path.getsize(path) != size:
        open(path, "wb").write(rng.randbytes(size))
EOF

cat >"$out/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $out/tmp/nginx.pid;
error_log $out/tmp/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 60;
    keepalive_requests 100000;
    open_file_cache max=4096;
    client_body_temp_path $out/tmp; proxy_temp_path $out/tmp; fastcgi_temp_path $out/tmp;
    uwsgi_temp_path $out/tmp; scgi_temp_path $out/tmp;
    server {
        listen 127.0.0.1:$PORT;
        root $out/www;
    }
}
EOF
taskset -c "$SERVER_CPU" nginx -p "$out" -c "$out/nginx.conf" &
nginx_pid=$!
trap 'kill $nginx_pid 2>/dev/null; wait $nginx_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 $nginx_pid 2>/dev/null || die "nginx did not start: $(cat "$out/tmp/error.log" 2>/dev/null)"
    sleep 0.05
done

# ---- URL lists (the same for every tool) ----------------------------------------------
base="http://127.0.0.1:$PORT"
for i in $(seq 0 1999); do printf '%s/p/%04d.html\n' "$base" "$i"; done >"$out/small.txt"
for i in $(seq 1 200); do printf '%s/page100k.html?i=%d\n' "$base" "$i"; done >"$out/page100k.txt"
for i in $(seq 1 20); do printf '%s/big10m.bin?i=%d\n' "$base" "$i"; done >"$out/big.txt"
for w in small page100k big; do
    awk '{ printf "url = \"%s\"\noutput = \"/dev/null\"\n", $0 }' "$out/$w.txt" >"$out/$w.curl"
done

say "curl: $(curl --version | head -1 | cut -d' ' -f1-2); nginx: $(nginx -v 2>&1 | cut -d/ -f2)"
say "running $ROUNDS rounds"
python3 "$here/fetch_bench.py" --out "$out" --rounds "$ROUNDS" --cpu "$CLIENT_CPU" \
    --netloop "$netloop" --python-fetcher "$here/fetch_selectors.py" \
    --workloads "small:2000:$((2000 * 1024)),page100k:200:$((200 * 100 * 1024)),big:20:$((20 * 10 * 1024 * 1024))" \
    | tee "$out/table.md"
