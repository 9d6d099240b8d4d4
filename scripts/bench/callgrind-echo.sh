#!/usr/bin/env bash
# Counts the instructions the driver's own code spends per echoed KiB, with callgrind (the method
# of scripts/bench/callgrind.sh, for service `echo`).
#
#   scripts/bench/callgrind-echo.sh [KIB1] [KIB2] [TARGETS...]   (defaults 2048 6144, every mode)
#
# For each target it runs `wskbench echo --profile` (one listener with service `echo`, one client
# connection streaming 16 KiB writes and reading them back, no ping-pong) under callgrind twice,
# with KIB1 and KIB2 KiB, and divides the difference by KIB2 - KIB1: fixed costs (driver load, the
# listener's preallocated slots and buffers, the connection's accept and close) cancel out.
# "driver" is the self cost of every function whose source is in driver/; "process" is everything
# (host kernel, OS sockets, the client's threads and its byte-by-byte verification).
set -euo pipefail
cd "$(dirname "$0")/../.."
K1=${1:-2048}
K2=${2:-6144}
shift $(($# < 2 ? $# : 2))
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(wskaccept-irp8 wskaccept-irp1 wskaccept-event wskaccept-both wskaccept-conditional)
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
cargo build --quiet --profile profiling -p wskbench
BIN=target/profiling/wskbench

measure() { # target kib -> "driver_ir total_ir"
  local out="target/callgrind-echo.$1.$2.out"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" echo --profile --targets "$1" \
    --connections 1 --kib "$2" --round-trips 0 >/dev/null 2>&1
  callgrind_annotate --inclusive=no --auto=no "$out" 2>/dev/null | grep -v "=>" | awk '
    /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
    /[ \/]driver\/[a-z_\/]+\.rs:/ { gsub(",", "", $1); driver += $1 }
    END { printf "%d %d\n", driver, total }'
}

for target in "${TARGETS[@]}"; do
  read -r d1 t1 < <(measure "$target" "$K1")
  read -r d2 t2 < <(measure "$target" "$K2")
  n=$((K2 - K1))
  echo "$target: driver code $(((d2 - d1) / n)) instructions per echoed KiB; whole process $(((t2 - t1) / n)) per KiB"
done
