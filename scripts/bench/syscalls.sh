#!/usr/bin/env bash
# Counts the system calls per accepted connection, by thread, with strace (issue 15: the host
# kernel's share of the work is system calls and thread switches). System call counts do not
# depend on the machine's load; which thread makes them can (the interleaving).
#
#   scripts/bench/syscalls.sh [CONNECTIONS]            (default 4000)
#   THREADS="1 8" TARGETS="std wskaccept-irp8" scripts/bench/syscalls.sh
#   BIN=path/to/another/wskbench scripts/bench/syscalls.sh   (e.g. a build of an earlier commit)
#
# For each target and client-thread count it runs `wskbench rate` (one run, service `close`)
# under `strace -f -c`-like counting and prints, per thread kind, the calls per connection:
# "loop" is the host kernel's event loop (hostkernel-wsk), "worker" the driver's work queue
# thread (wskaccept-worker), "clients" the load generator's threads, "server" the std or tokio
# loop's thread.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-4000}
THREADS=${THREADS:-1 8}
TARGETS=${TARGETS:-std wskaccept-irp1 wskaccept-irp8 wskaccept-event wskaccept-both}
command -v strace >/dev/null || { echo "strace is not installed (apt-get install strace)"; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --quiet --release -p wskbench
  BIN=target/release/wskbench
fi
for threads in $THREADS; do
  for target in $TARGETS; do
    log="target/strace.$target.$threads.log"
    strace -f -qq -o "$log" -e trace=%network,%desc,futex "$BIN" rate --connections "$N" \
      --targets "$target" --threads "$threads" --runs 1 >/dev/null 2>&1
    python3 - "$log" "$N" "$target" "$threads" <<'PY'
import collections, os, re, sys
log, n, target, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
calls = collections.defaultdict(collections.Counter)
for line in open(log):
    m = re.match(r"(\d+)\s+(\w+)\(", line)
    if m:
        calls[m.group(1)][m.group(2)] += 1
# A thread is a client if it connects; the rest are named by what they do.
def kind(c):
    if c["connect"]:
        return "clients"
    if c["epoll_wait"] and c["accept4"]:
        return "loop"
    if c["shutdown"] or c["write"] and not c["accept4"]:
        return "worker"
    if c["accept4"]:
        return "server"
    return "other"
by_kind = collections.defaultdict(collections.Counter)
for pid, c in calls.items():
    by_kind[kind(c)].update(c)
total = 0
parts = []
for k in ("loop", "worker", "server", "clients"):
    c = by_kind.get(k)
    if not c:
        continue
    s = sum(c.values())
    total += s if k != "clients" else 0
    top = ", ".join(f"{name} {v / n:.2f}" for name, v in c.most_common(8) if v / n >= 0.01)
    parts.append(f"  {k}: {s / n:.2f} ({top})")
print(f"{target}, {threads} client threads: {total / n:.2f} server-side system calls per connection")
print("\n".join(parts))
PY
  done
done
