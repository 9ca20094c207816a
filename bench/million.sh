#!/usr/bin/env bash
# bench/million.sh: one million idle connections on one machine, and what they cost.
#
# Starts `netloop serve --workers auto`, measures 10 active echo probes with no idle
# connections (the baseline, same server set-up), then opens IDLE idle connections plus
# the 10 active ones with `netloop stress` — no tuning: the tool picks its source
# addresses (127.0.0.x), its worker processes and its pace — holds them for HOLD seconds
# and reports: the connect phase (seconds, connections per second, errors), user-space
# memory per idle connection on both sides (RSS growth, and anonymous RSS growth: the
# processes' own memory without the program code every process counts again; --server-pid
# on the supervisor sums its workers), the kernel's memory per connection (/proc/meminfo Slab and
# MemAvailable, /proc/net/sockstat, sampled every 2 s while the connections are open),
# and the active p99 against the baseline's.
#
#   bench/million.sh                       # 1,000,000 idle, 30 s hold
#   IDLE=200000 HOLD=10 bench/million.sh   # smaller
#
# Needs: cargo, python3, ~12 GB of free memory for a million (see NOTES.md). Output:
# bench/out/million/ (JSON reports, logs, samples, latency.svg: both runs' latency by
# percentile) and bench/out/million.json.
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE=${IDLE:-1000000}
ACTIVE=${ACTIVE:-10}
HOLD=${HOLD:-30}
BASE_HOLD=${BASE_HOLD:-10}
PORT=${PORT:-19600}
OUT=bench/out/million
mkdir -p "$OUT"
rm -f "$OUT"/*

cargo build --release --quiet
BIN=target/release/netloop

server_pid=""
sampler_pid=""
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

snapshot() { # $1 = label: one JSON line of the kernel's figures
  python3 - "$1" <<'PY'
import json, sys, time
mem = {}
for line in open("/proc/meminfo"):
    k, v = line.split(":", 1)
    mem[k] = int(v.split()[0])
tcp = {}
for line in open("/proc/net/sockstat"):
    if line.startswith("TCP:"):
        w = line.split()[1:]
        tcp = {w[i]: int(w[i + 1]) for i in range(0, len(w), 2)}
files = int(open("/proc/sys/fs/file-nr").read().split()[0])
print(json.dumps({"label": sys.argv[1], "t": time.time(), "slab_kb": mem["Slab"],
                  "sunreclaim_kb": mem["SUnreclaim"], "memfree_kb": mem["MemFree"],
                  "memavailable_kb": mem["MemAvailable"], "tcp_inuse": tcp.get("inuse", 0),
                  "tcp_mem_pages": tcp.get("mem", 0), "tcp_tw": tcp.get("tw", 0),
                  "files_open": files}))
PY
}

"$BIN" serve --listen "127.0.0.1:$PORT" --workers auto >"$OUT/serve.out" 2>"$OUT/serve.log" &
server_pid=$!
for _ in $(seq 600); do grep -q "listening on" "$OUT/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$OUT/serve.out" || { echo "server did not start" >&2; cat "$OUT/serve.log" >&2; exit 1; }
grep -- "--workers auto" "$OUT/serve.log" || true

echo "baseline: $ACTIVE active, no idle, ${BASE_HOLD}s" >&2
"$BIN" stress "127.0.0.1:$PORT" --active "$ACTIVE" --hold "$BASE_HOLD" --json \
  --hdr-log "$OUT/baseline.hlog" >"$OUT/baseline.json" 2>"$OUT/baseline.err"

snapshot before >"$OUT/samples.jsonl"
echo "$IDLE idle + $ACTIVE active, ${HOLD}s hold" >&2
started=$(date +%s.%N)
"$BIN" stress "127.0.0.1:$PORT" --idle "$IDLE" --active "$ACTIVE" --hold "$HOLD" \
  --server-pid "$server_pid" --hdr-log "$OUT/million.hlog" --json \
  >"$OUT/million.json" 2>"$OUT/million.err" &
stress_pid=$!
( while kill -0 "$stress_pid" 2>/dev/null; do snapshot during >>"$OUT/samples.jsonl"; sleep 2; done ) &
sampler_pid=$!
status=0
wait "$stress_pid" || status=$?
ended=$(date +%s.%N)
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
snapshot after >>"$OUT/samples.jsonl"
echo "stress exit status $status after $(python3 -c "print(round($ended - $started, 1))") s" >&2
# The two runs' latency by percentile on one chart.
"$BIN" stress merge "$OUT/baseline.hlog" "$OUT/million.hlog" --label "0 idle" \
  --label "$IDLE idle" --plot "$OUT/latency.svg" >"$OUT/merge.out" 2>&1 ||
  echo "merge --plot: see $OUT/merge.out" >&2

python3 - "$OUT" "$IDLE" "$ACTIVE" "$status" <<'PY'
import json, sys
out, idle, active, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
base = json.load(open(f"{out}/baseline.json"))
run = json.load(open(f"{out}/million.json"))
samples = [json.loads(l) for l in open(f"{out}/samples.jsonl")]
before = samples[0]
peak = max(samples, key=lambda s: s["tcp_inuse"])
conns = run["conns_open"]
k = lambda key: (peak[key] - before[key])
res = {
    "idle_asked": idle, "active": active, "stress_exit_status": status,
    "conns_open": conns, "still_open_at_end": run["still_open_at_end"],
    "connect_errors": run["connect_errors"], "connect_secs": run["connect_secs"],
    "connects_per_sec": round(conns / run["connect_secs"], 1) if run["connect_secs"] else None,
    "pacing": run.get("pacing"), "source_ips": run.get("source_ips"),
    "client_rss_bytes_per_conn": run["client_rss_bytes_per_conn"],
    "client_anon_bytes_per_conn": run.get("client_anon_bytes_per_conn"),
    "server_rss_bytes_per_conn": run["server_rss_bytes_per_conn"],
    "server_anon_bytes_per_conn": run.get("server_anon_bytes_per_conn"),
    "kernel": {
        "tcp_sockets_at_peak": peak["tcp_inuse"],
        "slab_bytes_per_conn": round(k("slab_kb") * 1024 / conns, 1) if conns else None,
        "sunreclaim_bytes_per_conn": round(k("sunreclaim_kb") * 1024 / conns, 1) if conns else None,
        "memavailable_drop_bytes_per_conn": round(-k("memavailable_kb") * 1024 / conns, 1) if conns else None,
        "memfree_drop_bytes_per_conn": round(-k("memfree_kb") * 1024 / conns, 1) if conns else None,
        "files_open_at_peak": peak["files_open"],
    },
    "p99_us_baseline": base["p99_us"], "p99_us_with_idle": run["p99_us"],
    "p99_ratio": round(run["p99_us"] / base["p99_us"], 2) if base["p99_us"] else None,
    "p50_us_baseline": base["p50_us"], "p50_us_with_idle": run["p50_us"],
    "rps_baseline": base["rps"], "rps_with_idle": run["rps"],
    "mismatches": base["mismatches"] + run["mismatches"],
}
json.dump(res, open(f"{out}.json", "w"), indent=2)
print(json.dumps(res, indent=2))
PY
