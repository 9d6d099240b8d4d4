#!/usr/bin/env bash
# Counts the instructions the driver's own code spends per accepted connection, with callgrind.
# Instruction counts are repeatable on a noisy machine; seconds are not.
#
#   scripts/bench/callgrind.sh [N1] [N2]      (defaults 1000 and 3000)
#   THREADS="1 4 16" TARGETS="wskaccept-irp1 ..." scripts/bench/callgrind.sh
#   BIN=path/to/another/wskbench scripts/bench/callgrind.sh   (e.g. a build of an earlier commit)
#
# For each target and client-thread count it runs `wskbench profile` (one listener, service
# `close`) under callgrind twice, with N1 and N2 connections, and divides the difference by
# N2 - N1: fixed costs (driver load, the listener's preallocated table) cancel out. "driver" is the
# self cost of every function whose source is in driver/ (completion routines, callbacks, policy,
# table, worker logic, WSK wrappers); "process" is everything (host kernel, OS sockets, the client
# threads). Figures are per connection, accept and close included. Callgrind runs one thread at a
# time, so several client threads interleave differently than on the real machine: the figure
# says how much work batching saves, not how fast.
set -euo pipefail
cd "$(dirname "$0")/../.."
N1=${1:-1000}
N2=${2:-3000}
THREADS=${THREADS:-1 4 16}
TARGETS=${TARGETS:-wskaccept-irp1 wskaccept-irp8 wskaccept-event wskaccept-both}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --quiet --profile profiling -p wskbench
  BIN=target/profiling/wskbench
fi
TAG=$(basename "$BIN")

measure() { # target threads connections -> "driver_ir total_ir"
  local out="target/callgrind.$TAG.$1.$2.$3.out"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" profile --target "$1" \
    --threads "$2" --connections "$3" >/dev/null 2>&1
  callgrind_annotate --inclusive=no --auto=no "$out" 2>/dev/null | grep -v "=>" | awk '
    /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
    /[ \/]driver\/[a-z_\/]+\.rs:/ { gsub(",", "", $1); driver += $1 }
    END { printf "%d %d\n", driver, total }'
}

for threads in $THREADS; do
  for target in $TARGETS; do
    read -r d1 t1 < <(measure "$target" "$threads" "$N1")
    read -r d2 t2 < <(measure "$target" "$threads" "$N2")
    n=$((N2 - N1))
    echo "$target, $threads client threads: driver code $(((d2 - d1) / n)) instructions per connection; whole process $(((t2 - t1) / n)) per connection"
  done
done
