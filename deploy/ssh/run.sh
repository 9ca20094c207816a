#!/usr/bin/env bash
# One `netloop stress` split over several hosts by SSH (deploy/README.md).
#
#   deploy/ssh/run.sh [--lead SECS] [--out DIR] [--plot] [--json] HOST[=SOURCE_IPS]... -- STRESS_ARGS...
#
# With N hosts, host K (in the order given, from 0) runs
#   netloop stress STRESS_ARGS --segment K/N --start-at START --hdr-log /tmp/netloop-START-seg-K.hlog
# (plus --source-ips SOURCE_IPS when given with the host), where START is now + --lead
# seconds (default 60: time for every host to open its connections), the same for all,
# so all measure the same window. Then each host's log is copied back into DIR (default
# ./netloop-START) and `netloop stress merge` prints the report of the whole test (with
# --plot, also DIR/latency.svg; with --json, as one JSON object on stdout). Each host's
# own report is in DIR/seg-K.out; its log stays on it, in /tmp.
#
# STRESS_ARGS are the options of one `netloop stress` for the whole test: the target and
# the total --idle, --active, --rate, --rate-limit (each host does its exact share).
# Exit status: 0 only if every host held what it was asked and the merge succeeded.
#
# Environment (all optional): NETLOOP_SSH (default `ssh`; called as `$NETLOOP_SSH HOST
# COMMAND`), NETLOOP_SCP (default `scp`; called as `$NETLOOP_SCP HOST:PATH LOCAL`),
# NETLOOP_REMOTE (netloop's path on the hosts, default `netloop`), NETLOOP (the local
# one, for the merge, default `netloop`). tests/deploy.rs sets the first two to local
# stand-ins, to run this script against N "hosts" on one machine.
set -euo pipefail

usage() {
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

lead=60
out=
plot=0
json=0
hosts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --lead) lead=${2:?--lead needs SECS}; shift 2 ;;
    --out) out=${2:?--out needs DIR}; shift 2 ;;
    --plot) plot=1; shift ;;
    --json) json=1; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) echo "run.sh: unknown option $1" >&2; usage ;;
    *) hosts+=("$1"); shift ;;
  esac
done
[ ${#hosts[@]} -gt 0 ] || { echo "run.sh: give at least one HOST" >&2; usage; }
[ $# -gt 0 ] || { echo "run.sh: give the stress options after --" >&2; usage; }
stress_args=("$@")

ssh_cmd=${NETLOOP_SSH:-ssh}
scp_cmd=${NETLOOP_SCP:-scp}
remote=${NETLOOP_REMOTE:-netloop}
local_netloop=${NETLOOP:-netloop}

n=${#hosts[@]}
start=$(( $(date +%s) + lead ))
out=${out:-./netloop-$start}
mkdir -p "$out"
echo "run.sh: $n hosts, measured hold from $(date -u -d "@$start" +%H:%M:%SZ) (--start-at $start); logs in $out" >&2

# Start segment K on host K, all at once.
pids=()
for k in "${!hosts[@]}"; do
  host=${hosts[$k]%%=*}
  cmd=("$remote" stress "${stress_args[@]}" --segment "$k/$n" --start-at "$start"
       --hdr-log "/tmp/netloop-$start-seg-$k.hlog")
  if [ "${hosts[$k]}" != "$host" ]; then
    cmd+=(--source-ips "${hosts[$k]#*=}")
  fi
  # One string for the remote shell, each word quoted for it.
  line=$(printf '%q ' "${cmd[@]}")
  $ssh_cmd "$host" "$line" >"$out/seg-$k.out" 2>&1 &
  pids+=($!)
done

failed=0
for k in "${!pids[@]}"; do
  if ! wait "${pids[$k]}"; then
    echo "run.sh: segment $k/$n on ${hosts[$k]%%=*} failed (see $out/seg-$k.out)" >&2
    failed=1
  fi
done

# Bring the logs back (a failed segment may still have written one).
logs=()
for k in "${!hosts[@]}"; do
  host=${hosts[$k]%%=*}
  if $scp_cmd "$host:/tmp/netloop-$start-seg-$k.hlog" "$out/seg-$k.hlog" >/dev/null 2>&1; then
    logs+=("$out/seg-$k.hlog")
  else
    echo "run.sh: no log from segment $k/$n on $host" >&2
    failed=1
  fi
done
[ ${#logs[@]} -gt 0 ] || { echo "run.sh: no logs to merge" >&2; exit 1; }

merge=("$local_netloop" stress merge "${logs[@]}")
if [ "$plot" = 1 ]; then
  merge+=(--plot "$out/latency.svg")
fi
if [ "$json" = 1 ]; then
  merge+=(--json)
fi
"${merge[@]}" || failed=1
exit $failed
