#!/usr/bin/env bash
# bench/timers.sh: does a turn of the loop cost more with 10,000 pending timers than
# with none?
#
#   bench/timers.sh                        # 5 rounds of 3 s per setup (~1 minute)
#   ROUNDS=3 SECS=2 bench/timers.sh        # quicker
#
# Runs examples/timer_cost.rs, which echoes 64-byte round trips on one connection of
# an in-process loop in three setups, each on a fresh loop, interleaved (order rotated per round):
#   none    no timer at all (the baseline, measured in the same run)
#   timers  one loop timer pending, due in an hour; and (a setup of its own) TIMERS
#           (10,000) of them, due in an hour and later
#   idle    IDLE (10,000) idle connections (held by a child process) with a one-hour
#           idle timeout, i.e. 10,000 idle entries filed in the loop's timer set
# and prints, per setup, the median round trips/s and the loop thread's CPU time per
# round trip (CLOCK_THREAD_CPUTIME_ID over the measured stretch: steadier than round
# trips/s when other work shares the cores), with their ratios to `none` and to one
# timer. With any timer pending the loop sleeps in epoll_wait with a timeout, which
# costs the kernel a little per wait whatever the number of timers: so the number's
# cost is N timers (or N idle connections) against one timer, where a CPU ratio near
# 1.00 means the count costs the turn nothing. Output also goes to
# bench/out/timers.txt. Needs RLIMIT_NOFILE above IDLE + a few (ulimit -n).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-3}
TIMERS=${TIMERS:-10000}
IDLE=${IDLE:-10000}
mkdir -p bench/out

cargo build --release --quiet --example timer_cost
echo "bench/timers.sh at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" \
  | tee bench/out/timers.txt
target/release/examples/timer_cost --timers "$TIMERS" --idle "$IDLE" --secs "$SECS" --rounds "$ROUNDS" \
  | tee -a bench/out/timers.txt
