#!/usr/bin/env bash
# bench/echo.sh: netloop's echo server against three baselines measured in the same run.
#
#   bench/echo.sh                  # full run: 3 rounds, ~10 minutes on 2 cores
#   QUICK=1 bench/echo.sh          # smoke run: 1 round, short and small (~2 minutes)
#   ROUNDS=5 bench/echo.sh         # more rounds
#
# Servers (SERVERS, default "netloop c tokio py"):
#   netloop  `netloop serve echo`
#   base     `$BASE serve echo`: an older netloop binary (BASE=path), for before/after
#            figures from one run (e.g. SERVERS="netloop base c" BASE=/tmp/old/netloop)
#   c        bench/c_echo.c: plain C, one epoll set, edge-triggered
#   tokio    bench/tokio-echo: tokio's echo example (bench-only code and dependency)
#   py       bench/py_select_echo.py: a Python select() server shaped like seed 001's
#            (select.select(inputs, outputs, inputs), a queue.Queue per connection)
# Each round runs every server, in an order rotated per round (A/B interleaving, so slow
# drift on the machine hits all of them alike). Servers run on core SERVER_CPU (0), the
# load tools on core LOAD_CPU (1).
#
# Which tool measures what:
#   `netloop stress` (the project's own load tool, --json) measures the ping-pong and
#   idle-connection figures; the server's CPU time over each stress run is read by this
#   script from /proc/PID/task/*/schedstat (CPU per round trip barely moves when other
#   work competes for the cores, unlike round trips/s and tail latency):
#     pp1, pp50   1 and 50 active connections x 64 B back-to-back round trips for
#                 PP_SECS: round trips/s, p50, p99, server CPU per round trip
#     idle0       a fresh server: 10 active connections, no idle ones: p99, round trips/s
#     idle10k     then, on the same server, IDLE_CONNS (10,000) idle connections (they
#                 send nothing) + 10 active: p99, round trips/s, connections held, and
#                 server RSS growth per connection (--server-pid, taken half way through
#                 the hold); p99 idle10k / p99 idle0 is computed per round
#     lim1k       a fresh server: LIMIT_LOW (1,000) idle + 10 active: under select()'s
#                 FD_SETSIZE of 1,024, so every server can hold it; p99, RSS per connection
#     lim2k       then LIMIT_HIGH (2,000) idle + 10 active: past FD_SETSIZE. What happens
#                 is recorded: connections held at the end, closed by the server, refused,
#                 round trips, the server's open descriptors at most (sampled from
#                 /proc/PID/fd) and, if the server died, its exit status and last stderr
#                 line (Python's select.select raises ValueError for a descriptor >= 1024);
#                 the descriptor sampler runs on LOAD_CPU during lim1k and lim2k only
#     (lim1k/lim2k run for LIMIT_SERVERS, default: every server)
#   bench/loadgen.c measures the rest:
#     bulk        512 MiB through one connection, echo read concurrently: MB/s, and server
#                 CPU per GB
#     syscalls    strace -c -f -p PID during a fixed ping-pong run (50 x 64 B, and 1 x 64 B):
#                 (reads + writes + epoll_wait/select/poll + epoll_ctl) / round trips.
#                 strace stops the server at every call, so it runs far slower than usual
#                 and batches more events per wait; where `perf` can count the kernel's
#                 syscall tracepoints (PERF=1, the default; tracefs is mounted if needed),
#                 the same counts are also taken at full speed (perf stat -p PID).
#     (loadgen's own pingpong and idle modes are no longer used here)
# A server that dies during a test is recorded (exit status, last stderr line) and
# started afresh for the next test group; the tests left on the dead instance are skipped.
# Output: a table (medians over rounds, and each figure's ratio to the C server), the
# select() limit outcomes per round, bench/out/echo.json (medians, ratios, every round's
# raw figures and outcomes) and bench/out/echo.txt (the table). Raw tool output,
# strace/perf counts and server logs are kept under bench/out/echo/ (the only part of
# bench/out a run clears).
#
# Environment: ROUNDS, QUICK=1, PP_SECS, BULK_MIB, IDLE_CONNS, IDLE_SECS, LIMIT_LOW,
# LIMIT_HIGH, LIMIT_SECS, LIMIT_SERVERS, SC_TRIPS, PF_TRIPS, PERF=0|1, SERVERS,
# SERVER_CPU (0), LOAD_CPU (1), PORT_BASE, PYTHON (python3),
# NICE (default 0; e.g. NICE=-10 runs servers and load tools at a higher priority
# than other work on the machine, which steadies the figures but slows that work).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out"
bin="$here/target/c"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-1} PP_SECS=${PP_SECS:-2} BULK_MIB=${BULK_MIB:-64}
    IDLE_CONNS=${IDLE_CONNS:-10000} IDLE_SECS=${IDLE_SECS:-2} LIMIT_SECS=${LIMIT_SECS:-2}
    SC_TRIPS=${SC_TRIPS:-40} PF_TRIPS=${PF_TRIPS:-200}
else
    ROUNDS=${ROUNDS:-3} PP_SECS=${PP_SECS:-5} BULK_MIB=${BULK_MIB:-512}
    IDLE_CONNS=${IDLE_CONNS:-10000} IDLE_SECS=${IDLE_SECS:-5} LIMIT_SECS=${LIMIT_SECS:-4}
    SC_TRIPS=${SC_TRIPS:-400} PF_TRIPS=${PF_TRIPS:-2000}
fi
LIMIT_LOW=${LIMIT_LOW:-1000} LIMIT_HIGH=${LIMIT_HIGH:-2000}
PERF=${PERF:-1}
SERVERS=${SERVERS:-"netloop c tokio py"}
LIMIT_SERVERS=${LIMIT_SERVERS:-$SERVERS}
PYTHON=${PYTHON:-python3}
NICE=${NICE:-0}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PP_SIZE=64 PP_CONNS=50 IDLE_ACTIVE=10
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
# 10,000 idle connections + the tool's own descriptors must fit the open-file limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) > IDLE_CONNS + 100)) || die "open-file limit $(ulimit -n) is below IDLE_CONNS=$IDLE_CONNS"

# perf: count syscall tracepoints (needs tracefs; optional).
perf_events=$(for c in read recvfrom readv recvmsg write sendto writev sendmsg epoll_wait \
    epoll_pwait epoll_pwait2 select pselect6 poll ppoll epoll_ctl; do
    printf 'syscalls:sys_enter_%s,' "$c"
done)raw_syscalls:sys_enter
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
"$bin/netloop" stress --help | grep -q -- '--server-pid' || die "netloop stress lacks --server-pid"
cargo build --release --quiet --manifest-path "$here/tokio-echo/Cargo.toml" \
    --target-dir "$here/target" || die "cargo build of bench/tokio-echo failed"
cc -O2 -Wall -Wextra -o "$bin/c_echo" "$here/c_echo.c" || die "c_echo.c does not compile"
cc -O2 -Wall -Wextra -o "$bin/loadgen" "$here/loadgen.c" -lm || die "loadgen.c does not compile"
cp "$here/py_select_echo.py" "$bin/py_select_echo.py"
"$PYTHON" -c 'import select; select.select' || die "$PYTHON has no select.select"

# bench/out is shared with other benches: clear only this one's files.
work="$out/echo"
rm -rf "$work" "$out/echo.json" "$out/echo.txt"
mkdir -p "$work/raw" "$work/logs"
exec 3>"$work/raw/index.tsv" # round server test value: read by echo_report.py
PID=
# An interrupted run must not leave its server behind.
trap '[[ -n $PID ]] && kill -KILL "$PID" 2>/dev/null; true' EXIT
row() { printf '%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" >&3; } # server test value

server_cmd() { # server port
    case $1 in
    netloop) echo "$bin/netloop serve echo --listen 127.0.0.1:$2" ;;
    base) echo "${BASE:?BASE=path of an older netloop binary} serve echo --listen 127.0.0.1:$2" ;;
    c) echo "$bin/c_echo $2" ;;
    tokio) echo "$here/target/release/tokio-echo $2" ;;
    py) echo "$PYTHON -u $bin/py_select_echo.py $2" ;;
    *) die "unknown server $1" ;;
    esac
}

# Start a server on core SERVER_CPU; sets PID, PORT, LOG and DEAD (empty while it runs).
# Retries on another port if the port is taken.
start_server() { # server tag
    local try i
    DEAD=
    for try in 1 2 3 4 5; do
        PORT=$next_port
        next_port=$((next_port + 1))
        LOG="$work/logs/$2-$1"
        # shellcheck disable=SC2046
        nice -n "$NICE" taskset -c "$SERVER_CPU" $(server_cmd "$1" "$PORT") >"$LOG.out" 2>"$LOG.err" &
        PID=$!
        for i in $(seq 100); do
            grep -q '^listening on tcp' "$LOG.out" 2>/dev/null && return 0
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        say "  $1 did not start on port $PORT (try $try): $(tail -n 2 "$LOG.err")"
    done
    die "$1 would not start"
}

# After a test: if the server has died, record how (exit status, last stderr line).
check_alive() { # server test
    [[ -z $DEAD ]] || return 0
    kill -0 "$PID" 2>/dev/null && return 0
    local status
    set +e
    wait "$PID"
    status=$?
    set -e
    DEAD=$2 PID=
    row "$1" "$2-died" "$status|$(grep -v '^\s*$' "$LOG.err" | tail -n 1 | tr '\t' ' ' | cut -c1-300)"
    say "  $1 DIED during $2: exit $status: $(tail -n 1 "$LOG.err")"
}

# SIGTERM the server; record how it exited (a clean exit is status 0 within 10 s).
stop_server() { # server
    local i status=killed
    if [[ -n $DEAD ]]; then
        row "$1" exit "died during $DEAD"
        return 0
    fi
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
    row "$1" exit "$status"
    PID=
    [[ $status == 0 ]] || say "  $1: exit after SIGTERM: $status"
}

# The server's CPU time so far, ns (summed over its threads).
server_cpu_ns() { # (nothing when the server is gone)
    { cat /proc/"$PID"/task/*/schedstat 2>/dev/null || true; } |
        awk '{ s += $1 } END { if (NR) printf "%.0f\n", s }'
}

# Sample the server's open descriptors every 0.1 s; the highest count goes to FILE.
fd_sampler() { # file
    local max=0 n
    while kill -0 "$PID" 2>/dev/null; do
        n=$(find /proc/"$PID"/fd -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) || n=0
        ((n > max)) && max=$n && echo "$max" >"$1"
        sleep 0.1
    done
}

# Run `netloop stress --json` on core LOAD_CPU against the server; its JSON goes to
# raw/ROUND-SERVER-TEST.json, plus rows for its exit status, its last stderr line, the
# server's CPU time over the run and (with SAMPLE_FDS=1) the server's descriptors at most.
stress() { # server test stress-args...
    local server=$1 test=$2 f cpu0 cpu1 rc sampler=
    shift 2
    if [[ -n $DEAD ]]; then
        row "$server" "$test-skipped" "server died during $DEAD"
        return 0
    fi
    f="$work/raw/$ROUND-$server-$test.json"
    if [[ ${SAMPLE_FDS:-0} == 1 ]]; then
        taskset -c "$LOAD_CPU" bash -c "$(declare -f fd_sampler); PID=$PID; fd_sampler '$f.fds'" &
        sampler=$!
    fi
    cpu0=$(server_cpu_ns)
    set +e
    nice -n "$NICE" taskset -c "$LOAD_CPU" "$bin/netloop" stress "127.0.0.1:$PORT" --json "$@" \
        >"$f" 2>"$f.err"
    rc=$?
    set -e
    cpu1=$(server_cpu_ns)
    if [[ -n $sampler ]]; then
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        row "$server" "$test-fds" "$(cat "$f.fds" 2>/dev/null || echo 0)"
    fi
    row "$server" "$test" "$f"
    row "$server" "$test-rc" "$rc"
    row "$server" "$test-msg" "$(grep -v '^\s*$' "$f.err" | tail -n 1 | tr '\t' ' ' | cut -c1-300)"
    [[ -n $cpu0 && -n $cpu1 ]] && row "$server" "$test-cpu_ns" $((cpu1 - cpu0))
    check_alive "$server" "$test"
    ((rc == 0)) || say "  $server $test: stress exit $rc: $(tail -n 1 "$f.err")"
    say "  $server $test: $(head -c 330 "$f")"
}

# Run the load generator on core LOAD_CPU; its JSON line goes to raw/ROUND-SERVER-TEST.json.
load() { # server test args...
    local server=$1 test=$2 f
    shift 2
    if [[ -n $DEAD ]]; then
        row "$server" "$test-skipped" "server died during $DEAD"
        return 0
    fi
    f="$work/raw/$ROUND-$server-$test.json"
    set +e
    nice -n "$NICE" taskset -c "$LOAD_CPU" "$bin/loadgen" "$@" >"$f" 2>"$f.err"
    local rc=$?
    set -e
    row "$server" "$test" "$f"
    check_alive "$server" "$test"
    ((rc == 0)) || say "  $server $test: loadgen exit $rc: $(head -c 600 "$f.err")"
    say "  $server $test: $(head -c 300 "$f")"
}

# Count the server's system calls during a fixed ping-pong run.
syscalls() { # server test conns trips_per_conn
    local server=$1 test=$2 st="$work/raw/$ROUND-$1-$2.strace" i
    [[ -z $DEAD ]] || return 0
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
    row "$server" "$test-strace" "$st"
}

# Count the server's system calls at full speed (perf stat on tracepoints, no ptrace).
perfcount() { # server test conns trips_per_conn
    local server=$1 test=$2 pf="$work/raw/$ROUND-$1-$2.perf"
    [[ -z $DEAD ]] || return 0
    perf stat -x, -o "$pf" -e "$perf_events" -p "$PID" 2>"$pf.err" &
    local ppid=$!
    sleep 0.3
    load "$server" "$test" pingpong "$PORT" -c "$3" -s "$PP_SIZE" -n "$4"
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
    row "$server" "$test-perf" "$pf"
}

bench_server() { # server
    local s=$1
    start_server "$s" "r$ROUND-main"
    row "$s" loadavg "$(cut -d' ' -f1 /proc/loadavg)"
    stress "$s" pp1 --active 1 --size "$PP_SIZE" --hold "$PP_SECS"
    stress "$s" pp50 --active "$PP_CONNS" --size "$PP_SIZE" --hold "$PP_SECS"
    load "$s" bulk bulk "$PORT" -m "$BULK_MIB" -p "$PID"
    syscalls "$s" sc50 "$PP_CONNS" "$SC_TRIPS"
    syscalls "$s" sc1 1 $((SC_TRIPS * 10))
    if [[ $PERF == 1 ]]; then
        perfcount "$s" pf50 "$PP_CONNS" "$PF_TRIPS"
        perfcount "$s" pf1 1 $((PF_TRIPS * 10))
    fi
    stop_server "$s"

    # Active p99 with 0 and then IDLE_CONNS idle connections, on one fresh server.
    start_server "$s" "r$ROUND-idle"
    sleep 0.3 # let it settle before the "before" RSS
    stress "$s" idle0 --active "$IDLE_ACTIVE" --size "$PP_SIZE" --hold "$IDLE_SECS"
    sleep 0.3 # the idle0 connections' closes are served
    stress "$s" idle10k --idle "$IDLE_CONNS" --active "$IDLE_ACTIVE" \
        --size "$PP_SIZE" --hold "$IDLE_SECS" --server-pid "$PID"
    stop_server "$s"

    # select()'s FD_SETSIZE: LIMIT_LOW idle (under it), then LIMIT_HIGH (past it).
    if [[ " $LIMIT_SERVERS " == *" $s "* ]]; then
        start_server "$s" "r$ROUND-limit"
        sleep 0.3
        SAMPLE_FDS=1 stress "$s" lim1k --idle "$LIMIT_LOW" --active "$IDLE_ACTIVE" \
            --size "$PP_SIZE" --hold "$LIMIT_SECS" --server-pid "$PID"
        sleep 0.3
        SAMPLE_FDS=1 stress "$s" lim2k --idle "$LIMIT_HIGH" --active "$IDLE_ACTIVE" \
            --size "$PP_SIZE" --hold "$LIMIT_SECS" --server-pid "$PID"
        stop_server "$s"
    fi
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
"$PYTHON" "$here/echo_report.py" "$work" "$out" \
    --meta rounds="$ROUNDS" quick="$QUICK" servers="$SERVERS" limit_servers="$LIMIT_SERVERS" \
    pp_size="$PP_SIZE" pp_conns="$PP_CONNS" pp_secs="$PP_SECS" bulk_mib="$BULK_MIB" \
    idle_conns="$IDLE_CONNS" idle_active="$IDLE_ACTIVE" idle_secs="$IDLE_SECS" \
    limit_low="$LIMIT_LOW" limit_high="$LIMIT_HIGH" limit_secs="$LIMIT_SECS" \
    sc_trips_per_conn="$SC_TRIPS" perf="$PERF" pf_trips_per_conn="$PF_TRIPS" \
    server_cpu="$SERVER_CPU" load_cpu="$LOAD_CPU" nice="$NICE" seconds="$elapsed" \
    loadavg_start="$loadavg_start" nofile="$(ulimit -n)" \
    python="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')" \
    date="$(date -u +%Y-%m-%dT%H:%MZ)" \
    commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    uncommitted="$(git -C "$root" status --porcelain -- src Cargo.toml 2>/dev/null | awk '{print $2}' | tr '\n' ' ')" \
    netloop_sha256="$(sha256sum "$bin/netloop" | cut -c1-16)" \
    kernel="$(uname -r)" loadavg_end="$(cut -d' ' -f1-3 /proc/loadavg)"
