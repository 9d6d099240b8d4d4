#!/usr/bin/env bash
# Counts the instructions the driver's own code spends per accepted connection, with callgrind.
# Instruction counts are repeatable on a noisy machine; seconds are not.
#
#   scripts/bench/callgrind.sh [N1] [N2]      (defaults 1000 and 3000)
#
# For each target it runs `wskbench profile` (one listener, service `close`, one client thread)
# under callgrind twice, with N1 and N2 connections, and divides the difference by N2 - N1: fixed
# costs (driver load, the listener's preallocated table) cancel out. "driver" is the self cost of
# every function whose source is in driver/ (completion routines, callbacks, policy, table, worker
# logic, WSK wrappers); "process" is everything (host kernel, OS sockets, the client thread).
# Figures are per connection, accept and close included.
set -euo pipefail
cd "$(dirname "$0")/../.."
N1=${1:-1000}
N2=${2:-3000}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
cargo build --quiet --profile profiling -p wskbench
BIN=target/profiling/wskbench

measure() { # target connections -> "driver_ir total_ir"
  local out="target/callgrind.$1.$2.out"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" profile --target "$1" --connections "$2" >/dev/null 2>&1
  callgrind_annotate --inclusive=no --auto=no "$out" 2>/dev/null | grep -v "=>" | awk '
    /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
    /[ \/]driver\/[a-z_\/]+\.rs:/ { gsub(",", "", $1); driver += $1 }
    END { printf "%d %d\n", driver, total }'
}

for target in wskaccept-irp1 wskaccept-event wskaccept-both; do
  read -r d1 t1 < <(measure "$target" "$N1")
  read -r d2 t2 < <(measure "$target" "$N2")
  n=$((N2 - N1))
  echo "$target: driver code $(((d2 - d1) / n)) instructions per connection; whole process $(((t2 - t1) / n)) per connection"
done
