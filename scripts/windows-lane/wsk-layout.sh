#!/usr/bin/env bash
# Checks crates/wsk's hand-written WSK ABI against an independent C header: Wine's wsk.h and the
# headers it includes (Debian: libwine-dev), compiled by clang for x86_64-pc-windows-msvc. The
# numbers come from crates/wsk/src/layout.rs (sizes, alignments, member offsets; member sizes from
# the Rust types; header constants) and crates/wsk/src/status.rs (NTSTATUS values), through
# `cargo run -p wsk --example c_layout_check`, which writes one C _Static_assert per number.
# Wine's headers are LGPL: they are only read here, as test input; nothing of them is copied.
#
# Exit status: 0 when every number agrees; 0 with a "SKIPPED: ..." line when clang or Wine's
# headers are not installed; non-zero when clang rejects an assertion (a mismatch, named in the
# error) or the generator fails.
#
# Environment: WINE_INCLUDE (default /usr/include/wine/wine), CLANG (default clang).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
wine=${WINE_INCLUDE:-/usr/include/wine/wine}
clang=${CLANG:-clang}

skip() {
    echo "SKIPPED: wsk.h layout check: $1"
    exit 0
}
command -v "$clang" >/dev/null 2>&1 || skip "$clang not found (install clang)"
for header in windows/ddk/wsk.h windows/ws2ipdef.h windows/ntstatus.h msvcrt/stddef.h; do
    [[ -f $wine/$header ]] ||
        skip "$wine/$header not found (install libwine-dev, or set WINE_INCLUDE)"
done

out=$root/target/windows-lane
c=$out/wsk_layout_check.c
mkdir -p "$out"
(cd "$root" && cargo run -q -p wsk --example c_layout_check) >"$c.tmp"
mv "$c.tmp" "$c"

# -nostdlibinc: no host C library headers, only Wine's msvcrt and windows headers and clang's
# own resource headers. Wine's headers switch the pragma pack in nested includes on purpose.
cflags=(-std=c11 --target=x86_64-pc-windows-msvc -nostdlibinc -Wno-pragma-pack
    -I"$wine/msvcrt" -I"$wine/windows")
err=$out/wsk_layout_check.err
if ! "$clang" -fsyntax-only -ferror-limit=0 "${cflags[@]}" "$c" 2>"$err"; then
    cat "$err" >&2
    # clang 14 does not print the value a failed assertion saw: evaluate the left-hand side of
    # each failed assertion in a probe file (same headers) and show it next to crates/wsk's value.
    failed='s|^.*wsk_layout_check\.c:\([0-9]*\):[0-9]*: error: static_assert failed.*|\1|p'
    lines=$(sed -n "$failed" "$err")
    if [[ -n $lines ]]; then
        probe=$out/wsk_layout_probe.c
        sed -n '1,/^_Static_assert/{/^_Static_assert/!p}' "$c" >"$probe"
        for line in $lines; do
            lhs="s|^_Static_assert(\(.*\) == -*[0-9]*\(LL\)*, .*|(long long)(\1)|p"
            echo "const long long probe_$line = $(sed -n "$line$lhs" "$c");" >>"$probe"
        done
        if "$clang" -S -emit-llvm -o "$probe.ll" "${cflags[@]}" "$probe" 2>/dev/null; then
            for line in $lines; do
                message=$(sed -n "${line}s|.*, \"\(.*\)\");\$|\1|p" "$c")
                value=$(sed -n "s|^@probe_$line = .* i64 \(-*[0-9]*\).*|\1|p" "$probe.ll")
                [[ -n $value ]] && value="$value ($(printf '0x%X' $((value & 0xFFFFFFFF))))"
                echo "MISMATCH: $message; Wine's headers say ${value:-?}" >&2
            done
        fi
    fi
    echo "FAILED: wsk.h layout check: crates/wsk disagrees with Wine's headers" \
        "(generated C: ${c#"$root"/})" >&2
    exit 1
fi

summary=$(sed -n 's|^// summary: ||p' "$c")
unchecked=$(sed -n 's|^// unchecked: ||p' "$c")
echo "wsk.h layout check: $summary agree with Wine's wsk.h and the headers it includes"
echo "  not in Wine's headers, so unchecked: $unchecked"
