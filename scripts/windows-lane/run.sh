#!/usr/bin/env bash
# The Windows lane: type-check, clippy and link the real driver crate for x86_64-pc-windows-msvc
# on a Linux host, against a substitute WDK (Debian's mingw-w64 kernel headers + the KMDF 1.33
# public headers), then check the linked .sys's imports and crates/wsk's layouts against Wine's
# wsk.h. What it proves and what it does not: README, "Verification status".
#
#   scripts/windows-lane/run.sh            # the whole lane (what .ci/run runs)
#   scripts/windows-lane/run.sh --install  # first install its Debian packages and Rust target
#
# Everything it makes lives under target/windows-lane/ (throw-away):
#   wdk/      the substitute WDK (symbolic links to the system headers, the shim, empty Lib dirs)
#   overlay/  a copy of the workspace manifest whose [patch.crates-io] points wdk-build at
#             wdk-build/, the crates.io copy with scripts/windows-lane/*.patch applied; the
#             sources are symbolic links to this checkout
#   link/     import libraries, the link-only KMDF stub and wskaccept.sys
# Environment: WSKACCEPT_KMDF_INCLUDE names the KMDF 1.33 include folder (default:
# ../shared/third_party/kmdf-1.33/include beside this checkout).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
install=no
[ "${1:-}" = "--install" ] && install=yes
# shellcheck source=setup.sh
. "$here/setup.sh"

echo "== Windows lane: cargo check -p wskaccept --features cross-wdk --target $target"
cargo check -p wskaccept --features cross-wdk --target "$target"
# The library is what ships. The package's test targets are host-only: they run the driver in
# the host kernel (a non-Windows dependency), and Windows builds abort on panic
# (.cargo/config.toml), which the test harness cannot be built with.
echo "== Windows lane: cargo clippy -p wskaccept --lib --target $target -- -D warnings"
cargo clippy -p wskaccept --features cross-wdk --lib --target "$target" -- -D warnings
echo "== Windows lane: the same clippy for the Wine lane's test build (feature wine-test)"
cargo clippy -p wskaccept --features cross-wdk,wine-test --lib --target "$target" -- -D warnings

echo "== Windows lane: link wskaccept.sys (lld-link, wdk-build's KMDF link arguments)"
cargo build -p wskaccept --features cross-wdk --target "$target"
mkdir -p "$lane/link"
sys=$lane/link/wskaccept.sys
cp "$CARGO_TARGET_DIR/$target/debug/wskaccept.dll" "$sys"

echo "== Windows lane: import check of $sys"
llvm-readobj --file-headers "$sys" >"$lane/link/headers.txt"
llvm-readobj --coff-imports "$sys" >"$lane/link/imports.txt"
python3 - "$lane/link" "$here/exports" <<'PY'
import pathlib, re, sys
link, exports = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
headers = (link / "headers.txt").read_text()
problems = []
if not re.search(r"Magic: 0x20B", headers):
    problems.append("not a PE32+ image")
if "IMAGE_SUBSYSTEM_NATIVE" not in headers:
    problems.append("subsystem is not NATIVE")
if "IMAGE_FILE_MACHINE_AMD64" not in headers:
    problems.append("machine is not AMD64")
allowed = {}
for d in exports.glob("*.def"):
    module, names = None, set()
    for line in d.read_text().splitlines():
        line = line.split(";")[0].strip()
        if line.startswith("LIBRARY"):
            module = line.split()[1].lower()
        elif line and line != "EXPORTS":
            names.add(line.split()[0])
    allowed[module] = names
imports, module = {}, None
for line in (link / "imports.txt").read_text().splitlines():
    line = line.strip()
    if line.startswith("Name:"):
        module = line.split(":", 1)[1].strip().lower()
        imports.setdefault(module, [])
    elif line.startswith("Symbol:") and module is not None:
        imports[module].append(line.split(":", 1)[1].split("(")[0].strip())
for module, names in sorted(imports.items()):
    if module not in allowed:
        problems.append(f"imports from {module}, which is not an allowed module")
        continue
    for name in names:
        if name not in allowed[module]:
            problems.append(f"{module}!{name} is not in its export list")
if not imports:
    problems.append("no imports at all (the import table was not read)")
for module, names in sorted(imports.items()):
    print(f"  {module}: {len(names)} imports: {' '.join(sorted(names))}")
if problems:
    print("FAILED: " + "; ".join(problems))
    sys.exit(1)
print(f"import check: PE32+ native AMD64 image; {sum(map(len, imports.values()))} imports from "
      f"{len(imports)} modules, each in the project's export lists")
PY

echo "== Windows lane: crates/wsk's layouts and constants against Wine's wsk.h"
"$here/wsk-layout.sh"
