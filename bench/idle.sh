#!/usr/bin/env bash
# bench/idle.sh: does latency stay flat while many clients sit idle?
#
# For `netloop serve` (one process) and `netloop serve --workers 4`, measures the p99 of
# 10 active echo probes with no idle connections (baseline) and with IDLE idle ones,
# interleaved baseline / loaded / baseline ... for ROUNDS rounds, all with
# `netloop stress --json`. Prints a table and writes bench/out/idle.json.
#
#   bench/idle.sh                       # 19,000 idle (1 process), 60,000 idle (4 workers)
#   ROUNDS=1 HOLD=3 bench/idle.sh       # quicker
#
# Needs: cargo, python3. Client source addresses (127.0.0.x: one address has only
# ~28,000 ephemeral ports towards one server port) are chosen by `netloop stress` itself.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
HOLD=${HOLD:-5}
IDLE_ONE=${IDLE_ONE:-19000}
IDLE_WORKERS=${IDLE_WORKERS:-60000}
PORT=${PORT:-19500}
OUT=bench/out/idle
mkdir -p "$OUT"

cargo build --release --quiet
BIN=target/release/netloop

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

start_server() { # $1 = workers
  "$BIN" serve --listen "127.0.0.1:$PORT" --workers "$1" >"$OUT/serve.out" 2>"$OUT/serve.log" &
  server_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$OUT/serve.out" 2>/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}

run() { # $1 = label, $2 = idle count, $3 = round, $4 = workers
  local file="$OUT/$1-r$3.json"
  # The supervisor's PID stands for its workers too (their RSS is summed).
  "$BIN" stress "127.0.0.1:$PORT" --idle "$2" --active 10 --size 64 --hold "$HOLD" \
    --server-pid "$server_pid" --json >"$file" 2>"$OUT/$1-r$3.err" \
    || echo "warning: $1 round $3 did not hold everything (see $OUT/$1-r$3.err)" >&2
  # Let TIME_WAIT sockets of the last run not crowd the next one's ports.
  sleep 1
}

for workers in 1 4; do
  idle=$IDLE_ONE; [ "$workers" = 4 ] && idle=$IDLE_WORKERS
  start_server "$workers"
  for r in $(seq "$ROUNDS"); do
    run "w$workers-baseline" 0 "$r" "$workers"
    run "w$workers-idle" "$idle" "$r" "$workers"
  done
  stop_server
done

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(label):
    rows = []
    for r in range(1, rounds + 1):
        try:
            rows.append(json.load(open(f"{out}/{label}-r{r}.json")))
        except (OSError, ValueError):
            pass
    return rows
table, result = [], {}
for w in (1, 4):
    base, idle = load(f"w{w}-baseline"), load(f"w{w}-idle")
    if not base or not idle:
        continue
    med = lambda rows, k: statistics.median(x[k] for x in rows if x.get(k) is not None) if any(x.get(k) is not None for x in rows) else None
    b99, i99 = med(base, "p99_us"), med(idle, "p99_us")
    entry = {
        "workers": w,
        "idle_requested": idle[0]["conns_requested"] - 10,
        "idle_held_min": min(x["still_open_at_end"] for x in idle) - 10,
        "baseline_p99_us": b99, "idle_p99_us": i99,
        "p99_ratio": round(i99 / b99, 2) if b99 else None,
        "baseline_rps": med(base, "rps"), "idle_rps": med(idle, "rps"),
        "mismatches": sum(x["mismatches"] for x in base + idle),
        "client_rss_bytes_per_conn": med(idle, "client_rss_bytes_per_conn"),
        "server_rss_bytes_per_conn": med(idle, "server_rss_bytes_per_conn"),
        "connect_secs": med(idle, "connect_secs"),
    }
    result[f"workers_{w}"] = entry
    table.append(entry)
print(f"{'server':<22}{'idle held':>12}{'p99 base':>10}{'p99 idle':>10}{'ratio':>7}{'rps base':>10}{'rps idle':>10}{'srv B/conn':>11}{'cli B/conn':>11}")
for e in table:
    name = "serve" if e["workers"] == 1 else f"serve --workers {e['workers']}"
    print(f"{name:<22}{e['idle_held_min']:>6}/{e['idle_requested']:<5}{e['baseline_p99_us']:>10.0f}{e['idle_p99_us']:>10.0f}{e['p99_ratio']:>7}"
          f"{e['baseline_rps']:>10.0f}{e['idle_rps']:>10.0f}{(e['server_rss_bytes_per_conn'] or 0):>11.0f}{(e['client_rss_bytes_per_conn'] or 0):>11.0f}")
json.dump(result, open(f"{out}.json", "w"), indent=2)
print(f"(medians of {rounds} rounds; JSON in {out}.json)")
EOF
