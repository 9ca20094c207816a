#!/usr/bin/env bash
# bench/echo.sh: netloop's echo server against two baselines measured in the same run.
#
#   bench/echo.sh                  # full run: 5 rounds, ~6-8 minutes on 2 cores
#   QUICK=1 bench/echo.sh          # smoke run: 1 round, short and small (~1 minute)
#   ROUNDS=3 bench/echo.sh         # fewer rounds (the brief's minimum; ~4-5 minutes)
#
# Servers: netloop (`netloop serve echo`), bench/c_echo.c (plain epoll) and
# bench/tokio-echo (tokio's echo example). Each round runs every server once, in an
# order rotated per round (A/B interleaving, so slow drift on the machine hits all of
# them alike). The server runs on core 0, the load generator (bench/loadgen.c) on core 1.
#
# Per server and round:
#   pingpong   50 connections x 64 B back-to-back round trips: round trips/s, p50, p99
#   bulk       512 MiB through one connection, echo read concurrently: MB/s
#   syscalls   strace -c -f -p PID during a fixed ping-pong run (50 x 64 B, and 1 x 64 B):
#              (reads + writes + epoll_wait + epoll_ctl) / round trips; epoll_ctl apart.
#              strace stops the server at every call, so it runs far slower than usual
#              and batches more events per epoll_wait; where `perf` can count the kernel's
#              syscall tracepoints (PERF=1, the default; tracefs is mounted if needed),
#              the same counts are also taken at full speed (perf stat -p PID).
#   idle       a fresh server: VmRSS before, then 10,000 idle connections (each echoed one
#              byte, so each is accepted and served), VmRSS again; (delta / 10,000) is the
#              RSS per idle connection; then 10 active ping-pong clients run while the
#              idle ones are held: p99
# With -p the load generator also reads the server's CPU time (schedstat) over each
# measured run: CPU per round trip barely moves when other work competes for the cores,
# unlike round trips/s and tail latency, so it is the steadiest comparison here.
# Output: a table (medians over rounds, and each figure's ratio to the C server) and
# bench/out/echo.json (medians, ratios, every round's raw figures; the table also goes to
# bench/out/echo.txt). Raw loadgen output, strace/perf counts and server logs are kept
# under bench/out/echo/ (the only part of bench/out a run clears).
#
# Environment: ROUNDS, QUICK=1, PP_SECS, BULK_MIB, IDLE_CONNS, IDLE_SECS, SC_TRIPS, PERF=0|1,
# SERVERS (default "netloop c tokio"), SERVER_CPU (0), LOAD_CPU (1), PORT_BASE,
# NICE (default 0; e.g. NICE=-10 runs servers and load generator at a higher priority
# than other work on the machine, which steadies the figures but slows that work).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out"
bin="$here/target/c"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-1} PP_SECS=${PP_SECS:-2} BULK_MIB=${BULK_MIB:-64}
    IDLE_CONNS=${IDLE_CONNS:-2000} IDLE_SECS=${IDLE_SECS:-2} SC_TRIPS=${SC_TRIPS:-40}
    PF_TRIPS=${PF_TRIPS:-200}
else
    ROUNDS=${ROUNDS:-5} PP_SECS=${PP_SECS:-6} BULK_MIB=${BULK_MIB:-512}
    IDLE_CONNS=${IDLE_CONNS:-10000} IDLE_SECS=${IDLE_SECS:-4} SC_TRIPS=${SC_TRIPS:-400}
    PF_TRIPS=${PF_TRIPS:-2000}
fi
PERF=${PERF:-1}
SERVERS=${SERVERS:-"netloop c tokio"}
NICE=${NICE:-0}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PP_CONNS=50 PP_SIZE=64 IDLE_ACTIVE=10 WARMUP=0.5
# Ports below the ephemeral range (32768+), a fresh one for every server start, so no
# test meets the TIME_WAIT sockets of an earlier one.
next_port=${PORT_BASE:-$((20000 + (RANDOM % 100) * 100))}

say() { printf '%s\n' "$*" >&2; }
die() { say "echo.sh: $*"; exit 1; }

# ---- tools and builds --------------------------------------------------------------
need_apt=()
command -v strace >/dev/null || need_apt+=(strace)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3)
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
if ((${#need_apt[@]})); then
    say "installing ${need_apt[*]}"
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
(($(nproc) >= 2)) || die "needs 2 cores (server and load generator are pinned apart)"

# perf: count syscall tracepoints (needs tracefs; optional).
perf_events=$(for c in read recvfrom readv recvmsg write sendto writev sendmsg epoll_wait \
    epoll_pwait epoll_pwait2 epoll_ctl; do printf 'syscalls:sys_enter_%s,' "$c"; done)raw_syscalls:sys_enter
if [[ $PERF == 1 ]]; then
    command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; } || true
    if [[ ! -d /sys/kernel/tracing/events/syscalls ]]; then
        mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
    fi
    if ! perf stat -e "$perf_events" -- true >/dev/null 2>&1; then
        say "perf cannot count syscall tracepoints here: full-speed syscall counts skipped"
        PERF=0
    fi
fi

say "building (release)"
# Other people may be editing and building the same tree: retry a failed build a few
# times, then bench a private copy of the binary so a rebuild mid-run changes nothing.
for try in 1 2 3 4; do
    (cd "$root" && cargo build --release --quiet) && break
    ((try < 4)) || die "cargo build of netloop failed"
    say "cargo build of netloop failed (try $try); retrying in 20 s"
    sleep 20
done
mkdir -p "$bin"
cp "$root/target/release/netloop" "$bin/netloop"
cargo build --release --quiet --manifest-path "$here/tokio-echo/Cargo.toml" \
    --target-dir "$here/target" || die "cargo build of bench/tokio-echo failed"
cc -O2 -Wall -Wextra -o "$bin/c_echo" "$here/c_echo.c" || die "c_echo.c does not compile"
cc -O2 -Wall -Wextra -o "$bin/loadgen" "$here/loadgen.c" -lm || die "loadgen.c does not compile"

# bench/out is shared with other benches: clear only this one's files.
work="$out/echo"
rm -rf "$work" "$out/echo.json" "$out/echo.txt"
mkdir -p "$work/raw" "$work/logs"
exec 3>"$work/raw/index.tsv" # round server test file: read by echo_report.py

server_cmd() { # server port
    case $1 in
    netloop) echo "$bin/netloop serve echo --listen 127.0.0.1:$2" ;;
    c) echo "$bin/c_echo $2" ;;
    tokio) echo "$here/target/release/tokio-echo $2" ;;
    *) die "unknown server $1" ;;
    esac
}

# Start a server on core SERVER_CPU; sets PID and PORT. Retries on another port if the
# port is taken.
start_server() { # server tag
    local try log
    for try in 1 2 3 4 5; do
        PORT=$next_port
        next_port=$((next_port + 1))
        log="$work/logs/$2-$1"
        # shellcheck disable=SC2046
        nice -n "$NICE" taskset -c "$SERVER_CPU" $(server_cmd "$1" "$PORT") >"$log.out" 2>"$log.err" &
        PID=$!
        local i
        for i in $(seq 100); do
            grep -q '^listening on tcp' "$log.out" 2>/dev/null && return 0
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        say "  $1 did not start on port $PORT (try $try): $(tail -n 2 "$log.err")"
    done
    die "$1 would not start"
}

# SIGTERM the server; record how it exited (a clean exit is status 0 within 10 s).
stop_server() { # server tag
    local i status=killed
    kill -TERM "$PID" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        status="no exit 10 s after SIGTERM (killed)"
    else
        set +e
        wait "$PID"
        status=$?
        set -e
    fi
    printf '%s\t%s\texit\t%s\n' "$ROUND" "$1" "$status" >&3
    [[ $status == 0 ]] || say "  $1: exit after SIGTERM: $status"
}

# Run the load generator on core LOAD_CPU; its JSON line goes to raw/ROUND-SERVER-TEST.json.
load() { # server test args...
    local server=$1 test=$2 f
    shift 2
    f="$work/raw/$ROUND-$server-$test.json"
    set +e
    nice -n "$NICE" taskset -c "$LOAD_CPU" "$bin/loadgen" "$@" >"$f" 2>"$f.err"
    local rc=$?
    set -e
    printf '%s\t%s\t%s\t%s\n' "$ROUND" "$server" "$test" "$f" >&3
    ((rc == 0)) || say "  $server $test: loadgen exit $rc: $(head -c 600 "$f.err")"
    say "  $server $test: $(head -c 400 "$f")"
}

# Count the server's system calls during a fixed ping-pong run.
syscalls() { # server test conns trips_per_conn
    local server=$1 test=$2 st="$work/raw/$ROUND-$1-$2.strace" i
    taskset -c "$LOAD_CPU" strace -c -f -p "$PID" -o "$st" 2>"$st.err" &
    local spid=$!
    for i in $(seq 100); do
        grep -q 'attached' "$st.err" 2>/dev/null && break
        sleep 0.05
    done
    sleep 0.2
    load "$server" "$test" pingpong "$PORT" -c "$3" -s "$PP_SIZE" -n "$4"
    sleep 0.2
    kill -INT "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    printf '%s\t%s\t%s-strace\t%s\n' "$ROUND" "$server" "$test" "$st" >&3
}

# Count the server's system calls at full speed (perf stat on tracepoints, no ptrace).
perfcount() { # server test conns trips_per_conn
    local server=$1 test=$2 pf="$work/raw/$ROUND-$1-$2.perf"
    perf stat -x, -o "$pf" -e "$perf_events" -p "$PID" 2>"$pf.err" &
    local ppid=$!
    sleep 0.3
    load "$server" "$test" pingpong "$PORT" -c "$3" -s "$PP_SIZE" -n "$4"
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
    printf '%s\t%s\t%s-perf\t%s\n' "$ROUND" "$server" "$test" "$pf" >&3
}

bench_server() { # server
    local s=$1
    start_server "$s" "r$ROUND-main"
    printf '%s\t%s\tloadavg\t%s\n' "$ROUND" "$s" "$(cut -d' ' -f1 /proc/loadavg)" >&3
    load "$s" pingpong pingpong "$PORT" -c "$PP_CONNS" -s "$PP_SIZE" -t "$PP_SECS" -w "$WARMUP" -p "$PID"
    load "$s" bulk bulk "$PORT" -m "$BULK_MIB" -p "$PID"
    syscalls "$s" sc50 "$PP_CONNS" "$SC_TRIPS"
    syscalls "$s" sc1 1 $((SC_TRIPS * 10))
    if [[ $PERF == 1 ]]; then
        perfcount "$s" pf50 "$PP_CONNS" "$PF_TRIPS"
        perfcount "$s" pf1 1 $((PF_TRIPS * 10))
    fi
    stop_server "$s"

    start_server "$s" "r$ROUND-idle"
    sleep 0.3 # let it settle before the "before" RSS
    load "$s" idle idle "$PORT" -k "$IDLE_CONNS" -c "$IDLE_ACTIVE" -s "$PP_SIZE" -t "$IDLE_SECS" \
        -w "$WARMUP" -p "$PID"
    stop_server "$s"
}

read -r -a servers <<<"$SERVERS"
t_start=$(date +%s)
say "echo bench: ROUNDS=$ROUNDS QUICK=$QUICK NICE=$NICE servers: ${servers[*]}; server on core $SERVER_CPU, load on core $LOAD_CPU"
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at start: $loadavg_start"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    n=${#servers[@]}
    order=()
    for ((i = 0; i < n; i++)); do order+=("${servers[(i + ROUND - 1) % n]}"); done
    say "round $ROUND/$ROUNDS: ${order[*]}"
    for s in "${order[@]}"; do bench_server "$s"; done
done
exec 3>&-

elapsed=$(($(date +%s) - t_start))
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); measuring took ${elapsed}s"
python3 "$here/echo_report.py" "$work" "$out" \
    --meta rounds="$ROUNDS" quick="$QUICK" pp_conns="$PP_CONNS" pp_size="$PP_SIZE" \
    pp_secs="$PP_SECS" bulk_mib="$BULK_MIB" idle_conns="$IDLE_CONNS" idle_active="$IDLE_ACTIVE" \
    idle_secs="$IDLE_SECS" sc_trips_per_conn="$SC_TRIPS" perf="$PERF" \
    pf_trips_per_conn="$PF_TRIPS" server_cpu="$SERVER_CPU" \
    load_cpu="$LOAD_CPU" nice="$NICE" seconds="$elapsed" loadavg_start="$loadavg_start" \
    commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    uncommitted="$(git -C "$root" status --porcelain -- src Cargo.toml 2>/dev/null | awk '{print $2}' | tr '\n' ' ')" \
    netloop_sha256="$(sha256sum "$bin/netloop" | cut -c1-16)" \
    kernel="$(uname -r)" loadavg_end="$(cut -d' ' -f1-3 /proc/loadavg)"
