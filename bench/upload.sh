#!/usr/bin/env bash
# bench/upload.sh: upload throughput of `netloop serve upload` against two baselines
# measured in the same run, on the same disk.
#
#   bench/upload.sh                 # 1 GiB file and 100 x 1 MiB at once, 3 rounds
#   ROUNDS=1 BIG_MIB=256 bench/upload.sh   # quicker
#   BASE=/tmp/netloop-old bench/upload.sh  # also an older netloop binary, same rounds
#   RECEIVERS="cat netloop" bench/upload.sh   # only some receivers
#
# Receivers of the same bytes, each ending with the data fsync'ed on disk:
#   cat     `cat SRC > DST` then `sync DST` (no network: the disk's and page cache's pace)
#   socat   `socat -u TCP-LISTEN:P OPEN:DST` fed by `socat -u FILE:SRC TCP:...`, then
#           `sync DST` (a plain TCP receiver: no framing, no hashing, no checks)
#   netloop `netloop serve upload --dir D` fed by `netloop upload SRC --to ...`: framing,
#           name checks, SHA-256 on both sides, temp file + fsync + link, reply checked.
#   base    the same with the binary BASE (both ends), when BASE is set: a before/after
#           comparison under the same conditions, rounds interleaved.
# Cases:
#   big     one file of BIG_MIB MiB (default 1024)
#   many    100 files of 1 MiB, 100 senders started at once (cat: 100 cats at once; socat:
#           a forking receiver, one `cat` per connection; netloop: 100 `netloop upload`
#           processes against one server); timed until every sender finished and, for
#           socat, every byte is on disk.
# Each case runs ROUNDS times per receiver (interleaved); the table shows the median
# MB/s (10^6 bytes per second) and its ratio to cat's median. For the big file it also
# shows the CPU time both ends spent (user + system, sender and receiver together) and
# the fastest that CPU time allows on this machine's cores (MB/s if every core did
# nothing else): a receiver that must hash every byte twice cannot beat that bound,
# however well its threads overlap. Needs socat (apt-get install socat). Work files go under
# WORK (default: a fresh directory in /tmp, removed at the end).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ROUNDS=${ROUNDS:-3}
BIG_MIB=${BIG_MIB:-1024}
MANY=${MANY:-100}
PORT=${PORT:-18700}
WORK=${WORK:-$(mktemp -d /tmp/netloop-upload-bench.XXXXXX)}
bin="$root/target/release/netloop"
BASE=${BASE:-}
RECEIVERS=${RECEIVERS:-cat socat netloop${BASE:+ base}}

[[ " $RECEIVERS " != *" socat "* ]] || command -v socat >/dev/null || { echo "socat is missing: apt-get install socat" >&2; exit 1; }
(cd "$root" && cargo build --release --quiet)
mkdir -p "$WORK/src" "$WORK/dst"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
mbps() { python3 -c "import sys; print(f'{$1 / ($3 - $2) / 1e6:.0f}')"; }
median() { python3 -c "import sys, statistics; print(f'{statistics.median(map(float, sys.argv[1:])):.0f}')" "$@"; }

echo "== making test files in $WORK/src"
head -c $((BIG_MIB << 20)) /dev/urandom > "$WORK/src/big.bin"
for i in $(seq 1 "$MANY"); do head -c $((1 << 20)) /dev/urandom > "$WORK/src/m$i.bin"; done
big_bytes=$((BIG_MIB << 20))
many_bytes=$((MANY << 20))

fresh_dst() { rm -rf "$WORK/dst"; mkdir -p "$WORK/dst"; sync; }
next_port() { PORT=$((PORT + 1)); }

# Wait until DIR holds N bytes in files not starting with '.' (socat receivers).
wait_bytes() {
    local dir=$1 want=$2
    for _ in $(seq 1 6000); do
        local have
        have=$(find "$dir" -type f ! -name '.*' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
        [[ $have -ge $want ]] && return 0
        sleep 0.01
    done
    echo "timed out waiting for $want bytes in $dir" >&2
    return 1
}

start_netloop() {
    local nl=$1
    next_port
    # A fresh file: the last server's "listening on" line must not pass for this one's.
    rm -f "$WORK/serve.out"
    "$nl" serve upload --dir "$WORK/dst" --listen "127.0.0.1:$PORT" > "$WORK/serve.out" 2> "$WORK/serve.log" &
    pids+=($!)
    server_pid=$!
    for _ in $(seq 1 500); do grep -qs "listening on" "$WORK/serve.out" && return 0; sleep 0.01; done
    echo "netloop serve did not start" >&2; cat "$WORK/serve.log" >&2; return 1
}
stop_netloop() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; }
# CPU seconds (user + system) a live process has used, from /proc/PID/stat.
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
# CPU seconds of a command (user + system), appended to $WORK/cpu.
timed() { /usr/bin/time -a -o "$WORK/cpu" -f "%U %S" "$@"; }
cpu_sum() { awk '{s += $1 + $2} END {print s + 0}' "$WORK/cpu"; }

run_big() {
    local who=$1 t0 t1 extra=0
    fresh_dst
    : > "$WORK/cpu"
    case $who in
    cat)
        t0=$(now); timed cat "$WORK/src/big.bin" > "$WORK/dst/big.bin"; timed sync "$WORK/dst/big.bin"; t1=$(now) ;;
    socat)
        next_port
        timed socat -u "TCP-LISTEN:$PORT,reuseaddr" "OPEN:$WORK/dst/big.bin,creat,trunc" &
        local recv=$!
        sleep 0.2
        t0=$(now)
        timed socat -u "FILE:$WORK/src/big.bin" "TCP:127.0.0.1:$PORT"
        wait "$recv"; timed sync "$WORK/dst/big.bin"; t1=$(now) ;;
    netloop|base)
        local nl=$bin
        [[ $who == base ]] && nl=$BASE
        start_netloop "$nl"
        local before
        before=$(proc_cpu "$server_pid")
        t0=$(now); timed "$nl" upload "$WORK/src/big.bin" --to "127.0.0.1:$PORT" > /dev/null 2>&1; t1=$(now)
        extra=$(python3 -c "print($(proc_cpu "$server_pid") - $before)")
        stop_netloop ;;
    esac
    cmp -s "$WORK/src/big.bin" "$WORK/dst/big.bin" || { echo "$who: big.bin differs" >&2; exit 1; }
    echo "$(mbps "$big_bytes" "$t0" "$t1") $(python3 -c "print(f'{$(cpu_sum) + $extra:.2f}')")"
}

run_many() {
    local who=$1 t0 t1 senders=()
    fresh_dst
    case $who in
    cat)
        t0=$(now)
        for i in $(seq 1 "$MANY"); do cat "$WORK/src/m$i.bin" > "$WORK/dst/m$i.bin" & senders+=($!); done
        wait "${senders[@]}"; sync "$WORK"/dst/m*.bin; t1=$(now) ;;
    socat)
        next_port
        socat -u "TCP-LISTEN:$PORT,reuseaddr,fork,backlog=1024" SYSTEM:"cat > $WORK/dst/r.\$\$" &
        local recv=$!
        pids+=("$recv")
        sleep 0.2
        t0=$(now)
        for i in $(seq 1 "$MANY"); do socat -u "FILE:$WORK/src/m$i.bin" "TCP:127.0.0.1:$PORT" & senders+=($!); done
        wait "${senders[@]}"; wait_bytes "$WORK/dst" "$many_bytes"; sync "$WORK"/dst/r.*; t1=$(now)
        kill "$recv" 2>/dev/null || true; wait "$recv" 2>/dev/null || true ;;
    netloop|base)
        local nl=$bin
        [[ $who == base ]] && nl=$BASE
        start_netloop "$nl"
        t0=$(now)
        for i in $(seq 1 "$MANY"); do
            "$nl" upload "$WORK/src/m$i.bin" --to "127.0.0.1:$PORT" > /dev/null 2>> "$WORK/upload.err" & senders+=($!)
        done
        local failed=0
        for p in "${senders[@]}"; do wait "$p" || failed=$((failed + 1)); done
        t1=$(now)
        stop_netloop
        [[ $failed == 0 ]] || { echo "$who: $failed uploads failed" >&2; cat "$WORK/upload.err" >&2; exit 1; } ;;
    esac
    local got
    got=$(find "$WORK/dst" -type f ! -name '.*' | wc -l)
    [[ $got == "$MANY" ]] || { echo "$who: $got files stored, not $MANY" >&2; exit 1; }
    mbps "$many_bytes" "$t0" "$t1"
}

declare -A res
for r in $(seq 1 "$ROUNDS"); do
    for who in $RECEIVERS; do
        read -r b c < <(run_big "$who"); m=$(run_many "$who")
        res[$who.big]+=" $b"; res[$who.cpu]+=" $c"; res[$who.many]+=" $m"
        echo "round $r $who: big $b MB/s ($c s of CPU), many $m MB/s"
    done
done

echo
echo "Upload throughput, MB/s (median of $ROUNDS; $(nproc) cores; $(df -h --output=source,fstype "$WORK" | tail -1 | xargs))"
echo
echo "| receiver | 1 file of $BIG_MIB MiB | x cat | CPU s, both ends | bound on $(nproc) cores | $MANY x 1 MiB at once | x cat |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
ratio() { python3 -c "import sys; print(f'{$1 / $2:.2f}' if $2 else '-')"; }
# shellcheck disable=SC2086
cat_big=$(median ${res[cat.big]:-0}); cat_many=$(median ${res[cat.many]:-0})
for who in $RECEIVERS; do
    # shellcheck disable=SC2086
    b=$(median ${res[$who.big]}); m=$(median ${res[$who.many]})
    c=$(python3 -c "import sys, statistics; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" ${res[$who.cpu]})
    bound=$(python3 -c "print(f'{$big_bytes / ($c / $(nproc)) / 1e6:.0f}' if $c else '-')")
    echo "| $who | $b | $(ratio "$b" "$cat_big") | $c | $bound ($(ratio "$bound" "$cat_big")) | $m | $(ratio "$m" "$cat_many") |"
done
