#!/usr/bin/env bash
# bench/fetch.sh: `netloop fetch` against `curl --parallel --parallel-max 50` and a Python
# selectors fetcher in seed 001's style (bench/fetch_selectors.py), on a local nginx.
#
#   bench/fetch.sh               # 7 rounds, a few minutes on 2 cores
#   ROUNDS=3 bench/fetch.sh      # fewer rounds
#
# nginx (Debian's package, our own config, one worker, access log off, keep-alive up to
# 100,000 requests per connection) listens on 127.0.0.1:$PORT and serves, from
# bench/out/fetch/www:
#   small     2,000 distinct 1 KiB pages              (p/0000.html ... p/1999.html)
#   page100k  one 100 KiB page, 200 times             (page100k.html?i=N)
#   big       one 10 MiB file, 20 times               (big10m.bin?i=N)
#   fly-gz    500 distinct 100 KiB pages of text, gzip'd by nginx on the fly (`gzip on`,
#             its default level 1: about 2.7x smaller on the wire)     (t/000.html ...)
#   static-gz the same pages gzip'd ahead (`gzip_static on`, gzip -6: about 3.3x), so
#             nginx only sends files and the fetchers' decoding is what is measured
#                                                                      (s/000.html ...)
# Every tool gets the same URL list per workload, keeps 50 transfers in flight and drops
# the bodies (netloop: several URLs without -o; curl: output /dev/null; Python: counted).
# The two -gz workloads compare `netloop fetch --compressed` with `curl --compressed
# --parallel --parallel-max 50`, each dropping the bodies and saving them (netloop -o DIR;
# curl one file per URL with --output-dir); every run's decoded bytes are checked.
# netloop runs twice: with its default --per-host 6 (6 keep-alive connections) and with
# --per-host 50 ("netloop-50": as many connections as curl opens).
# nginx runs on core $SERVER_CPU, the fetchers on core $CLIENT_CPU. bench/fetch_bench.py
# runs the rounds (tools in an order rotated per round), checks every run (all 200, all
# bytes), and prints medians: pages/s, MB/s and peak RSS (GNU time's %M). Raw figures:
# bench/out/fetch/results.json; the table: bench/out/fetch/table.md.
#
# Environment: ROUNDS (7), PORT (18090), SERVER_CPU (0), CLIENT_CPU (1), WORKLOADS (all:
# small,page100k,big,fly-gz,static-gz; e.g. WORKLOADS=fly-gz,static-gz for the compressed
# ones only).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out/fetch"
ROUNDS=${ROUNDS:-7}
WORKLOADS=${WORKLOADS:-small,page100k,big,fly-gz,static-gz}
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
command -v gzip >/dev/null || need_apt+=(gzip)
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
mkdir -p "$out/www/p" "$out/www/t" "$out/www/s" "$out/tmp"
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

# 500 pages of 100 KiB of text for the compressed workloads: HTML paragraphs of
# sentences drawn from 3,000 made-up words with English-like (Zipf) frequencies, links
# here and there. It compresses like real pages: gzip -1 about 2.7x, gzip -6 about 3.3x.
# t/ is gzip'd by nginx per request; s/ has each page's .gz beside it (gzip_static).
import gzip, itertools
words_rng = random.Random(11)
syl = ["ka", "to", "ri", "en", "an", "the", "ing", "er", "st", "re", "on", "al", "is",
       "or", "es", "de", "ne", "ti", "ar", "lo", "ver", "com", "pro", "con", "ex", "im",
       "un", "ly", "tion", "ment", "ous", "ble", "ter", "per", "ma", "sa", "li", "ve",
       "co", "mi"]
words = sorted({"".join(words_rng.choice(syl) for _ in range(words_rng.choice((1, 2, 2, 3, 3, 4))))
                for _ in range(6000)})[:3000]
words_rng.shuffle(words)
cum = list(itertools.accumulate(1 / (i + 1) for i in range(len(words))))
size = 100 * 1024
for i in range(500):
    t_path = os.path.join(www, "t", f"{i:03d}.html")
    s_path = os.path.join(www, "s", f"{i:03d}.html")
    if os.path.exists(s_path + ".gz") and os.path.getsize(t_path) == size:
        continue
    r = random.Random(1000 + i)
    parts = [f"<!doctype html>\n<html><head><title>Page {i}</title></head>\n<body>\n<h1>Page {i}</h1>\n"]
    n = len(parts[0])
    while n < size:
        sentences = []
        for _ in range(r.randint(3, 8)):
            ws = r.choices(words, cum_weights=cum, k=r.randint(6, 20))
            ws[0] = ws[0].capitalize()
            if r.random() < 0.2:
                k = r.randrange(len(ws))
                ws[k] = f'<a href="/t/{r.randrange(500):03d}.html">{ws[k]}</a>'
            sentences.append(" ".join(ws) + r.choice(".....?!"))
        p = "<p>" + " ".join(sentences) + "</p>\n"
        parts.append(p)
        n += len(p)
    page = ("".join(parts)[: size - 16] + " </body></html>\n").encode()[:size]
    for path in (t_path, s_path):
        open(path, "wb").write(page)
    open(s_path + ".gz", "wb").write(gzip.compress(page, 6, mtime=0))
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
        # The compressed workloads: t/ gzip'd per request (nginx's default level 1),
        # s/ served from the .gz files made ahead.
        location /t/ { gzip on; }
        location /s/ { gzip on; gzip_static on; }
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
for i in $(seq 0 499); do printf '%s/t/%03d.html\n' "$base" "$i"; done >"$out/fly-gz.txt"
for i in $(seq 0 499); do printf '%s/s/%03d.html\n' "$base" "$i"; done >"$out/static-gz.txt"
for w in small page100k big fly-gz static-gz; do
    awk '{ printf "url = \"%s\"\noutput = \"/dev/null\"\n", $0 }' "$out/$w.txt" >"$out/$w.curl"
done
# curl saving: one file per URL, named like netloop names them, in --output-dir.
for w in fly-gz static-gz; do
    awk '{ n = split($0, p, "/"); printf "url = \"%s\"\noutput = \"%s\"\n", $0, p[n] }' \
        "$out/$w.txt" >"$out/$w.save.curl"
done
curl --version | grep -qi libz || die "this curl has no zlib: --compressed cannot decode"

say "curl: $(curl --version | head -1 | cut -d' ' -f1-2); nginx: $(nginx -v 2>&1 | cut -d/ -f2)"
# name:pages:body bytes for each workload in $WORKLOADS.
workload_specs() {
    local specs=() w
    for w in ${WORKLOADS//,/ }; do
        case $w in
        small) specs+=("small:2000:$((2000 * 1024))") ;;
        page100k) specs+=("page100k:200:$((200 * 100 * 1024))") ;;
        big) specs+=("big:20:$((20 * 10 * 1024 * 1024))") ;;
        fly-gz | static-gz) specs+=("$w:500:$((500 * 100 * 1024))") ;;
        *) die "unknown workload $w (small, page100k, big, fly-gz, static-gz)" ;;
        esac
    done
    local IFS=,
    echo "${specs[*]}"
}

say "running $ROUNDS rounds"
python3 "$here/fetch_bench.py" --out "$out" --rounds "$ROUNDS" --cpu "$CLIENT_CPU" \
    --netloop "$netloop" --python-fetcher "$here/fetch_selectors.py" \
    --workloads "$(workload_specs)" \
    | tee "$out/table.md"
