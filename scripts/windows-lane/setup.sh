# Sourced by scripts/windows-lane/run.sh and scripts/wine-lane/run.sh: checks the inputs, makes the
# substitute WDK and the overlay workspace under target/windows-lane/, and exports the compiler
# and linker environment for x86_64-pc-windows-msvc. Leaves the shell in the overlay. With
# --install (the caller's first argument), first installs the Debian packages and Rust target.
# Every missing input ends the caller with a loud SKIPPED line and exit status 0.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/scripts/windows-lane
lane=$root/target/windows-lane
target=x86_64-pc-windows-msvc
sdk=10.0.22621.0

skip() {
  echo "########################################################################"
  echo "SKIPPED: ${lane_name:-the Windows lane} did not run: $*"
  echo "########################################################################"
  exit 0
}

packages=(clang libclang-dev lld llvm mingw-w64-x86-64-dev libwine-dev ${extra_packages[@]+"${extra_packages[@]}"})
if [ "${install:-}" = yes ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null; } ||
      skip "apt-get could not install ${missing[*]}"
  fi
  rustup target add "$target" >/dev/null 2>&1 ||
    skip "rustup could not install the $target standard library"
fi

# --- inputs -----------------------------------------------------------------------------------
mingw=/usr/x86_64-w64-mingw32/include
kmdf=${WSKACCEPT_KMDF_INCLUDE:-$root/../shared/third_party/kmdf-1.33/include}
for tool in clang lld-link llvm-lib llvm-dlltool llvm-readobj; do
  command -v "$tool" >/dev/null || skip "$tool is missing (run with --install)"
done
[ -f "$mingw/ddk/ntddk.h" ] || skip "mingw-w64 kernel headers ($mingw/ddk) are missing (run with --install)"
[ -f "$kmdf/wdf.h" ] || skip "the KMDF 1.33 headers are missing: set WSKACCEPT_KMDF_INCLUDE (looked in $kmdf)"
rustup target list --installed 2>/dev/null | grep -qx "$target" ||
  skip "the $target standard library is missing (run with --install)"
libclang=$(ls -d /usr/lib/llvm-*/lib 2>/dev/null | sort -V | tail -n1)
[ -n "$libclang" ] || skip "libclang is missing (run with --install)"
resource=$(clang -print-resource-dir)/include

mkdir -p "$lane"

# --- the substitute WDK -------------------------------------------------------------------------
wdk=$lane/wdk
rm -rf "$wdk"
mkdir -p "$wdk/Include/$sdk/km/crt" "$wdk/Include/$sdk/km/ufx/1.1" \
  "$wdk/Lib/$sdk/km/x64" "$wdk/Lib/wdf/kmdf/x64/1.33"
# km/ must be a real folder (wdk-build also wants km/crt and km/ufx/1.1 inside it).
for header in "$mingw"/ddk/*; do ln -s "$header" "$wdk/Include/$sdk/km/"; done
ln -s "$mingw" "$wdk/Include/$sdk/shared"
# The KMDF folder is linked header by header: in a copy that lost its symbolic links (a git
# checkout without core.symlinks, an archive), a mixed-case name such as WdfWMI.h is a small file
# holding the lowercase name it stands for; link it to that file instead.
mkdir -p "$wdk/Include/wdf/kmdf/1.33"
for header in "$kmdf"/*.h; do
  name=$(basename "$header")
  if [ ! -L "$header" ] && [ "$(wc -c <"$header")" -lt 64 ] && [ -f "$kmdf/$(cat "$header")" ]; then
    ln -s "$(cd "$kmdf" && pwd)/$(cat "$header")" "$wdk/Include/wdf/kmdf/1.33/$name"
  else
    ln -s "$(cd "$kmdf" && pwd)/$name" "$wdk/Include/wdf/kmdf/1.33/$name"
  fi
done
cp "$here/wdk-shim.h" "$wdk/Include/$sdk/km/wskaccept-wdk-shim.h"

# Import libraries from the project's export lists (scripts/windows-lane/exports/*.def), empty
# stand-ins for the two static libraries wdk-build links that the driver takes nothing from, and
# the link-only KMDF stub (kmdf-link-stub.c: never shipped).
km_lib=$wdk/Lib/$sdk/km/x64
kmdf_lib=$wdk/Lib/wdf/kmdf/x64/1.33
for def in "$here"/exports/*.def; do
  name=$(basename "$def" .def)
  case "$name" in
    wdfldr) lib=WdfLdr ;;
    *) lib=$name ;;
  esac
  llvm-dlltool -m i386:x86-64 -d "$def" -l "$km_lib/$lib.lib"
done
for lib in BufferOverflowFastFailK wmilib; do llvm-ar rc "$km_lib/$lib.lib"; done
clang --target=x86_64-pc-windows-msvc -O1 -c "$here/kmdf-link-stub.c" -o "$lane/kmdf-link-stub.obj"
llvm-lib /nologo "/out:$kmdf_lib/WdfDriverEntry.lib" "$lane/kmdf-link-stub.obj"

# --- the overlay workspace --------------------------------------------------------------------
overlay=$lane/overlay
mkdir -p "$overlay"
for item in build.rs driver crates .cargo; do ln -sfn "$root/$item" "$overlay/$item"; done
cp "$root/Cargo.lock" "$overlay/Cargo.lock"
{
  cat "$root/Cargo.toml"
  echo
  echo '# Windows lane only: wdk-build with scripts/windows-lane/*.patch applied.'
  echo '[patch.crates-io]'
  echo 'wdk-build = { path = "wdk-build" }'
} >"$overlay/Cargo.toml"
registry_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wdk-build-0.6.0 2>/dev/null | head -n1 || true)
if [ -z "$registry_src" ]; then
  (cd "$root" && cargo fetch --locked --target "$target" >/dev/null)
  registry_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wdk-build-0.6.0 | head -n1)
fi
rm -rf "$overlay/wdk-build"
cp -r "$registry_src" "$overlay/wdk-build"
# crates.io ships wdk-build with CRLF line ends; the patch is LF.
find "$overlay/wdk-build" -name '*.rs' -o -name Cargo.toml | xargs sed -i 's/\r$//'
patch -s -d "$overlay/wdk-build" -p1 <"$here/wdk-build-0.6.0-linux-host.patch"

# --- the compiler environment -----------------------------------------------------------------
bin=$lane/bin
mkdir -p "$bin"
cat >"$bin/clang-cl" <<SH
#!/bin/sh
exec clang --driver-mode=cl -D__GNUC__=4 -D__GNUC_MINOR__=9 "\$@"
SH
chmod +x "$bin/clang-cl"
export WDKContentRoot=$wdk
export LIBCLANG_PATH=$libclang
export BINDGEN_EXTRA_CLANG_ARGS_x86_64_pc_windows_msvc="-D__GNUC__=4 -D__GNUC_MINOR__=9 -idirafter $resource -include wskaccept-wdk-shim.h"
export CC_x86_64_pc_windows_msvc=$bin/clang-cl
export AR_x86_64_pc_windows_msvc=llvm-lib
export CFLAGS_x86_64_pc_windows_msvc="/imsvc $resource"
# lld-link stands in for link.exe; the wrapper leaves out the two MSVC-only options wdk-build
# passes that lld-link does not know (/KERNEL: link-time kernel-mode checks; /MAPINFO:EXPORTS:
# map file content).
cat >"$bin/link-wdk" <<'SH'
#!/bin/sh
for a in "$@"; do
  case "$a" in
    /KERNEL | /MAPINFO:EXPORTS) ;;
    *) set -- "$@" "$a" ;;
  esac
  shift
done
exec lld-link "$@"
SH
chmod +x "$bin/link-wdk"
export CARGO_TARGET_X86_64_PC_WINDOWS_MSVC_LINKER=$bin/link-wdk
export CARGO_TARGET_DIR=$overlay/target
cd "$overlay"
