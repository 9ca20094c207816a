#!/usr/bin/env bash
# bench/exec.sh: round trips per second of a trivial allowed command (`/bin/true`) on
# `netloop serve exec`, against a blocking Python server in seed 004's style measured in
# the same run; and the server's RSS with idle connections and children running.
#
#   bench/exec.sh                      # 1 client x 2000 and 8 clients x 500, 3 rounds
#   ROUNDS=1 N=500 bench/exec.sh       # quicker
#
# A third column runs a slow command (`sleep 0.05`, 8 clients x 20 each): what serving
# clients at once, rather than one after another as the seed does, is worth.
#
# Servers (all on 127.0.0.1, each answering `true\n` with the framed reply):
#   seed-shell   Python, blocking, one client at a time, Popen(cmd, shell=True) (the seed)
#   seed-noshell the same without the shell (shlex.split, one process per command)
#   netloop      netloop serve exec --no-auth, allowlist /bin/true and /bin/sleep
# Then: netloop's RSS idle, with IDLE (1000) idle connections, and with BUSY (16) more
# each running `sleep 30`. Table: median round trips/s over ROUNDS runs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ROUNDS=${ROUNDS:-3}
N=${N:-2000}
PAR=${PAR:-8}
IDLE=${IDLE:-1000}
BUSY=${BUSY:-16}
PORT=${PORT:-18800}
WORK=$(mktemp -d /tmp/netloop-exec-bench.XXXXXX)
bin="$root/target/release/netloop"

(cd "$root" && cargo build --release --quiet)
printf '/bin/true\n/bin/sleep\n' > "$WORK/allow"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
median() { python3 -c "import sys, statistics; print(f'{statistics.median(map(float, sys.argv[1:])):.0f}')" "$@"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

start_server() { # name port -> sets server_pid
    local name=$1 port=$2
    case $name in
        seed-shell)   python3 "$here/exec_seed004_server.py" "$port" shell > "$WORK/$name.out" 2>&1 & ;;
        seed-noshell) python3 "$here/exec_seed004_server.py" "$port" noshell > "$WORK/$name.out" 2>&1 & ;;
        netloop)      RUST_LOG=netloop=warn "$bin" serve exec --listen "127.0.0.1:$port" \
                          --allow "$WORK/allow" --no-auth --max-conns 4096 > "$WORK/$name.out" 2>&1 & ;;
    esac
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 1 500); do
        grep -q listening "$WORK/$name.out" 2>/dev/null && return 0
        sleep 0.01
    done
    echo "$name did not start" >&2; cat "$WORK/$name.out" >&2; exit 1
}

declare -A results
for name in seed-shell seed-noshell netloop; do
    PORT=$((PORT + 1))
    start_server "$name" "$PORT"
    one=(); many=(); slow=()
    for _ in $(seq 1 "$ROUNDS"); do
        one+=("$(python3 "$here/exec_bench.py" rtt "$PORT" 1 "$N")")
        many+=("$(python3 "$here/exec_bench.py" rtt "$PORT" "$PAR" $((N / 4)))")
        slow+=("$(python3 "$here/exec_bench.py" rtt "$PORT" "$PAR" 20 "sleep 0.05")")
    done
    results[$name]="$(median "${one[@]}") $(median "${many[@]}") $(median "${slow[@]}")"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
done

echo
echo "round trips/s of /bin/true (median of $ROUNDS)"
printf '%-14s %12s %12s %24s\n' server "1 client" "$PAR clients" "$PAR clients, sleep 0.05"
for name in seed-shell seed-noshell netloop; do
    read -r a b c <<< "${results[$name]}"
    printf '%-14s %12s %12s %24s\n' "$name" "$a" "$b" "$c"
done

PORT=$((PORT + 1))
start_server netloop "$PORT"
idle_rss=$(rss "$server_pid")
fifo="$WORK/hold"; mkfifo "$fifo"
python3 "$here/exec_bench.py" hold "$PORT" "$IDLE" 0 30 < "$fifo" > "$WORK/hold1.out" &
holder=$!; exec 3> "$fifo"
for _ in $(seq 1 1000); do grep -q ready "$WORK/hold1.out" 2>/dev/null && break; sleep 0.01; done
sleep 0.5
idle_conns_rss=$(rss "$server_pid")
exec 3>&-; wait "$holder" || true
python3 "$here/exec_bench.py" hold "$PORT" "$IDLE" "$BUSY" 30 < "$fifo" > "$WORK/hold2.out" &
holder=$!; exec 3> "$fifo"
for _ in $(seq 1 1000); do grep -q ready "$WORK/hold2.out" 2>/dev/null && break; sleep 0.01; done
for _ in $(seq 1 500); do
    n=$(cat "/proc/$server_pid/task/$server_pid/children" 2>/dev/null | wc -w)
    [ "$n" -ge "$BUSY" ] && break; sleep 0.01
done
busy_rss=$(rss "$server_pid")
children=$(cat "/proc/$server_pid/task/$server_pid/children" | wc -w)
exec 3>&-; wait "$holder" || true
echo
echo "netloop serve exec RSS: idle ${idle_rss} KiB; $IDLE idle connections ${idle_conns_rss} KiB;"
echo "  $IDLE idle + $BUSY running 'sleep 30' ($children children) ${busy_rss} KiB"
