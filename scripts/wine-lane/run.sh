#!/usr/bin/env bash
# The Wine lane: the real Windows backend (driver/kernel/windows.rs on wdk-sys), the accept engine
# and wskctl's DeviceIoControl transport, run on Wine's NT kernel: winedevice.exe loads a test
# build of the driver (feature `wine-test`: a WDM entry, because Wine has no KMDF) against Wine's
# netio.sys, which accepts real Linux TCP clients through WskAccept IRPs.
#
#   scripts/wine-lane/run.sh            # the lane (what .ci/run runs)
#   scripts/wine-lane/run.sh --install  # first install its Debian packages and Rust targets
#
# It builds on the Windows lane's substitute WDK and overlay (scripts/windows-lane/setup.sh).
# What it proves and what it does not, and every Wine limit: README, "Verification status".
# Everything lives under target/windows-lane/wine/ (the Wine prefix too, about 700 MB).
set -euo pipefail

lane_name="the Wine lane"
install=no
[ "${1:-}" = "--install" ] && install=yes
extra_packages=(wine64 wine gcc-mingw-w64-x86-64)
wine_lane=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../windows-lane/setup.sh
. "$wine_lane/../windows-lane/setup.sh"

gnu=x86_64-pc-windows-gnu
if [ "$install" = yes ]; then
  rustup target add "$gnu" >/dev/null 2>&1 || skip "rustup could not install the $gnu standard library"
fi
for tool in wine wineserver x86_64-w64-mingw32-gcc python3; do
  command -v "$tool" >/dev/null || skip "$tool is missing (run with --install)"
done
rustup target list --installed 2>/dev/null | grep -qx "$gnu" ||
  skip "the $gnu standard library is missing (run with --install)"
wine_dlls=/usr/lib/x86_64-linux-gnu/wine/x86_64-windows
[ -f "$wine_dlls/ntoskrnl.exe" ] && [ -f "$wine_dlls/netio.sys" ] ||
  skip "Wine's 64-bit ntoskrnl.exe/netio.sys are missing (run with --install)"

out=$lane/wine
mkdir -p "$out"
sys=$out/wskaccept_test.sys

echo "== Wine lane: the test driver (feature wine-test) as a staticlib, linked by lld-link"
cargo rustc -p wskaccept --lib --crate-type staticlib --features cross-wdk,wine-test \
  --target "$target"
for def in ntoskrnl netio cng; do
  llvm-dlltool -m i386:x86-64 -d "$here/exports/$def.def" -l "$out/$def.lib"
done
# The WDM entry never calls KMDF, but wdk-sys's objects name the KMDF stub's globals: the
# Windows lane's link-only stub satisfies them (nothing of it runs).
lld-link /NOLOGO /MACHINE:X64 /DRIVER /SUBSYSTEM:NATIVE /ENTRY:DriverEntry /NODEFAULTLIB \
  /OPT:REF "/OUT:$sys" "$CARGO_TARGET_DIR/$target/debug/wskaccept.lib" "$out/ntoskrnl.lib" \
  "$out/netio.lib" "$out/cng.lib" "$wdk/Lib/wdf/kmdf/x64/1.33/WdfDriverEntry.lib"

echo "== Wine lane: every import of the test driver is exported by Wine's modules"
for module in ntoskrnl.exe netio.sys cng.sys; do
  llvm-readobj --coff-exports "$wine_dlls/$module" | sed -n 's/^ *Name: //p' >"$out/$module.exports"
done
llvm-readobj --coff-imports "$sys" | awk '
  /^ *Name: / { module = tolower($2) }
  /^ *Symbol: / { print module, $2 }' >"$out/imports.txt"
missing=0
while read -r module symbol; do
  if ! grep -qx "$symbol" "$out/$module.exports" 2>/dev/null; then
    echo "MISSING in Wine: $module!$symbol"
    missing=1
  fi
done <"$out/imports.txt"
[ "$missing" = 0 ] || { echo "FAILED: the test driver imports what Wine does not export"; exit 1; }
echo "  $(wc -l <"$out/imports.txt") imports, all exported by Wine's ntoskrnl.exe, netio.sys and cng.sys"

echo "== Wine lane: wskctl.exe for $gnu (its DeviceIoControl transport)"
(cd "$root" && CARGO_TARGET_DIR=$root/target \
  CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
  cargo build --locked -p wskctl --target "$gnu")
# Wine 8.0 has no bcryptprimitives.dll, whose ProcessPrng Rust's std imports: a test-only
# stand-in beside wskctl.exe forwards to Wine's BCryptGenRandom (bcryptprimitives-shim.c).
mkdir -p "$out/bin"
cp "$root/target/$gnu/debug/wskctl.exe" "$out/bin/wskctl.exe"
x86_64-w64-mingw32-gcc -shared -O2 -o "$out/bin/bcryptprimitives.dll" \
  "$wine_lane/bcryptprimitives-shim.c" -lbcrypt
wskctl_exe=$out/bin/wskctl.exe

echo "== Wine lane: prefix, service, driver start"
export WINEPREFIX=$out/prefix
export WINEDLLOVERRIDES="mscoree,mshtml,winemenubuilder.exe="
export WINEDEBUG=-all
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  wineboot -i >/dev/null 2>&1
  wineserver -w
fi
wineserver -k 2>/dev/null || true
log=$out/wine.log
: >"$log"
keeper_fifo=$out/keep.fifo
clients_in=$out/clients.fifo
cleanup() {
  exec 7>&- 2>/dev/null || true
  exec 8>&- 2>/dev/null || true
  wineserver -k 2>/dev/null || true
}
trap cleanup EXIT
# DbgPrint reaches the log through +debugstr; services inherit wineserver's environment.
export WINEDEBUG=+debugstr,err-all,fixme-all
wineserver -f >>"$log" 2>&1 &
rm -f "$keeper_fifo" "$clients_in"
mkfifo "$keeper_fifo" "$clients_in"
# A Wine process alive for the whole run: otherwise wineserver ends services.exe and winedevice
# as soon as the last client process exits.
wine cmd.exe <"$keeper_fifo" >>"$log" 2>&1 &
exec 7>"$keeper_fifo"
cp "$sys" "$WINEPREFIX/drive_c/windows/system32/drivers/wskaccept_test.sys"
wine sc create wskaccepttest type= kernel start= demand \
  binPath= 'C:\windows\system32\drivers\wskaccept_test.sys' >>"$log" 2>&1 || true
timeout 60 wine net start wskaccepttest >>"$log" 2>&1 ||
  { tail -n 40 "$log"; echo "FAILED: the test driver did not start"; exit 1; }
grep -q 'wskaccept-test: loaded' "$log" ||
  { tail -n 40 "$log"; echo "FAILED: no load message from the driver"; exit 1; }

wskctl() {
  timeout 60 wine "$wskctl_exe" --control '\\.\WskAcceptTest' "$@" 2>>"$log"
}
json() {
  python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"
}

# Below Linux's ephemeral range (32768 up by default), so that no client's port, ours or another
# process's, can hold either listener's port (port and port + 1).
port=$((20000 + RANDOM % 12000))
clients=200
capacity=150
echo "== Wine lane: wskctl start --mode irp on 127.0.0.1:$port, capacity $capacity"
started=$(wskctl start --listen "127.0.0.1:$port" --mode irp --capacity "$capacity" --json |
  tr -d '\r') || { tail -n 20 "$log"; echo "FAILED: wskctl start"; exit 1; }
echo "  $started"
listener=$(echo "$started" | json 'd["listener"]')

echo "== Wine lane: $clients real Linux clients"
python3 "$wine_lane/clients.py" 127.0.0.1 "$port" "$clients" 5 <"$clients_in" >"$out/clients.out" &
clients_pid=$!
exec 8>"$clients_in"
# Sends a command to clients.py and prints its one-line JSON answer.
ask_clients() {
  : >"$out/clients.out"
  echo "$1" >&8
  for _ in $(seq 1 100); do
    [ -s "$out/clients.out" ] && break
    sleep 0.2
  done
  head -n 1 "$out/clients.out"
}
tally=$(ask_clients count)
echo "  clients see: $tally"
stats=$(wskctl stats --json | tr -d '\r')
echo "  driver says: $stats" | cut -c1-400
listed=$(wskctl list --json | tr -d '\r' | json 'len(d["connections"]) if isinstance(d, dict) else len(d)')

PYTHONPATH="$wine_lane" python3 - "$tally" "$stats" "$listed" "$clients" "$capacity" <<'PY'
import json, sys
tally, stats = json.loads(sys.argv[1]), json.loads(sys.argv[2])
listed, clients, capacity = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
from counters import find
accepted, full, active = find(stats, "accepted_irp"), find(stats, "rejected_full"), find(stats, "active")
problems = []
if tally["open"] != capacity or tally["closed"] != clients - capacity:
    problems.append(f"clients saw {tally}, expected {capacity} open and {clients - capacity} refused")
if accepted != tally["open"]:
    problems.append(f"accepted_irp {accepted} != {tally['open']} connections the clients hold")
if full != tally["closed"]:
    problems.append(f"rejected_full {full} != {tally['closed']} connections the clients saw refused")
if active != tally["open"] or listed != tally["open"]:
    problems.append(f"active {active} / listed {listed} != {tally['open']}")
if problems:
    print("FAILED: " + "; ".join(problems))
    sys.exit(1)
print(f"  agree: {accepted} accepted through WskAccept IRPs, {full} refused (table full), "
      f"{listed} listed")
PY

echo "== Wine lane: wskctl stop; every held connection is closed"
wskctl stop "$listener" >/dev/null
after=$(ask_clients wait-closed)
echo "  clients see: $after"
echo quit >&8
exec 8>&-
wait "$clients_pid" || true
[ "$(echo "$after" | json 'd["open"]')" = 0 ] || { echo "FAILED: connections left open after stop"; exit 1; }

echo "== Wine lane: wskctl start --service echo; Linux clients' bytes come back in order"
eport=$((port + 1))
echoes=8
echo_length=262144
started_echo=$(wskctl start --listen "127.0.0.1:$eport" --mode irp --service echo --buffer 4096 \
  --capacity 16 --json | tr -d '\r') ||
  { tail -n 20 "$log"; echo "FAILED: wskctl start --service echo"; exit 1; }
echo "  $started_echo"
echo_listener=$(echo "$started_echo" | json 'd["listener"]')
echo_in=$out/echo.in
rm -f "$echo_in"
mkfifo "$echo_in"
timeout 120 python3 "$wine_lane/echo_clients.py" 127.0.0.1 "$eport" "$echoes" "$echo_length" \
  <"$echo_in" >"$out/echo.out" &
echo_pid=$!
exec 9>"$echo_in"
for _ in $(seq 1 300); do
  [ -s "$out/echo.out" ] && break
  sleep 0.2
done
echoed=$(head -n 1 "$out/echo.out")
echo "  clients see: $echoed"
echo_stats=$(wskctl stats --json | tr -d '\r')
PYTHONPATH="$wine_lane" python3 - "$echoed" "$echo_stats" "$echoes" "$echo_length" <<'PY'
import json, sys
seen = json.loads(sys.argv[1] or "{}")
stats = json.loads(sys.argv[2])
total = int(sys.argv[3]) * int(sys.argv[4])
from counters import find
problems = []
if seen.get("bytes") != total:
    problems.append(f"the clients saw {seen}")
if find(stats, "bytes_in") != total or find(stats, "bytes_out") != total:
    problems.append(f"the driver counted {find(stats, 'bytes_in')} bytes in and "
                    f"{find(stats, 'bytes_out')} out, expected {total} each")
if problems:
    print("FAILED: " + "; ".join(problems))
    sys.exit(1)
print(f"  agree: {total} bytes echoed byte-exact over {sys.argv[3]} connections through WskReceive "
      f"and WskSend on the slots' preallocated buffers")
PY
wskctl stop "$echo_listener" >/dev/null
exec 9>&-
wait "$echo_pid" || true

echo "== Wine lane: the driver's trace (DbgPrintEx, driver/trace/windows.rs) in Wine's debug log"
for _ in $(seq 1 50); do
  grep -q "wskaccept: listener_stopped listener=$listener " "$log" && break
  sleep 0.2
done
started_lines=$(grep -c "wskaccept: listener_started listener=$listener address=127.0.0.1:$port\$" "$log" || true)
refused_lines=$(grep -cE "wskaccept: refused listener=$listener reason=full remote=127\.0\.0\.1:[0-9]+\$" "$log" || true)
stopped_lines=$(grep -c "wskaccept: listener_stopped listener=$listener connections=$capacity\$" "$log" || true)
echo "  listener_started $started_lines, refused (full, with the peer's address) $refused_lines, listener_stopped $stopped_lines"
[ "$started_lines" = 1 ] && [ "$refused_lines" = $((clients - capacity)) ] && [ "$stopped_lines" = 1 ] ||
  { grep 'wskaccept: ' "$log" | tail -n 5; echo "FAILED: the trace does not match what happened"; exit 1; }

echo "== Wine lane: net stop; the driver's unload report"
timeout 60 wine net stop wskaccepttest >>"$log" 2>&1 || true
for _ in $(seq 1 50); do
  grep -q 'wskaccept-test: unload' "$log" && break
  sleep 0.2
done
report=$(grep -o 'wskaccept-test: unload: outstanding pool -\?[0-9]* irps -\?[0-9]* mdls -\?[0-9]*' "$log" | tail -n 1)
echo "  $report"
[ -n "$report" ] || { tail -n 40 "$log"; echo "FAILED: the driver did not report its unload"; exit 1; }
[ "$report" = "wskaccept-test: unload: outstanding pool 0 irps 0 mdls 0" ] ||
  { tail -n 40 "$log"; echo "FAILED: unload left something outstanding"; exit 1; }
echo "Wine lane passed: the real Windows backend accepted and refused real Linux clients through WskAccept IRPs, and echoed their bytes, on Wine's NT kernel"
