#!/usr/bin/env bash
# Checks that a crate's modules are layered: no module imports, directly or through others, a
# module that imports it back. Each file module (src/a.rs, src/a/mod.rs, src/a/b.rs; the crate
# root src/lib.rs) is a node; an edge A -> B is a path in A that names B or an item of B:
# `use crate::b::...`, `crate::b::f(...)`, `super::...`, `self::...`, and paths through A's own
# child modules (`b::f` where A declares `mod b;`). A path resolves to the longest module prefix,
# so `super::sibling::f` is an edge to the sibling, not to the parent, and a parent that re-exports
# a child (`pub use child::X`) is above it. Inline `#[cfg(test)] mod tests` blocks count as their
# file's module. Comments are ignored.
#
# Usage: scripts/check-module-cycles.sh [--rooms] [DIR...]   (default: crates/hostkernel crates/wsk).
# DIR is a crate directory (DIR/src/lib.rs) or the directory of a crate root (e.g. driver/, whose
# lib.rs is the root). With --rooms, each top-level module and everything below it counts as one
# node (a room): the driver's rooms re-export their children (`kernel` and its backends), which is
# layering inside a room, and the check is that no room imports a room that imports it back.
# Prints each crate's modules (or rooms) in layer order (a node imports only nodes of lower
# layers) and every cycle; exit status 1 when a crate has one.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $# -eq 0 || ( $# -eq 1 && $1 == --rooms ) ]]; then
    set -- "$@" "$root/crates/hostkernel" "$root/crates/wsk"
fi

exec python3 - "$@" <<'PY'
import pathlib
import re
import sys


def module_of(src, path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts in (["lib"], ["main"]):
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def expand_use(tree):
    """`a::{b, c::{d, self}}` -> ['a::b', 'a::c::d', 'a::c']"""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, s):
        depth, start, items = 0, 0, []
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(s[start:i])
                start = i + 1
        items.append(s[start:])
        for item in filter(None, items):
            if "{" in item:
                head, rest = item.split("{", 1)
                walk(prefix + head, rest[: rest.rfind("}")])
            elif item == "self":
                out.append(prefix.rstrip(":"))
            else:
                out.append(prefix + item)

    walk("", tree)
    return out


def check(crate, rooms):
    # A crate directory (CRATE/src/lib.rs) or the directory of a crate root (driver/lib.rs).
    src = crate / "src" if (crate / "src").is_dir() else crate
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f): f for f in files}
    edges = {m: set() for m in modules}

    def resolve(base, path):
        parts = [p for p in path.split("::") if p]
        if not parts:
            return None
        if parts[0] == "crate":
            cur, parts = (), parts[1:]
        elif parts[0] in ("super", "self"):
            cur = base
            while parts and parts[0] in ("super", "self"):
                if parts[0] == "super":
                    cur = cur[:-1]
                parts = parts[1:]
        elif base + (parts[0],) in modules:
            cur = base
        else:
            return None
        for p in parts:
            if cur + (p,) in modules:
                cur = cur + (p,)
            else:
                break
        return cur

    for module, path in modules.items():
        text = strip_comments(path.read_text())
        # An inline test module: `super::` there means this file's module.
        pieces = re.split(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text, 1)
        for i, piece in enumerate(pieces):
            base = module + ("<tests>",) if i else module
            paths = []
            for tree in re.findall(r"\buse\s+([^;]+);", piece):
                paths += expand_use(tree)
            paths += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", piece)
            paths += re.findall(r"(?<![\w:])\w+(?:::\w+)+", piece)
            for p in paths:
                target = resolve(base, p)
                if target is not None and target in modules and target != module:
                    edges[module].add(target)

    if rooms:
        room = lambda m: m[:1]
        collapsed = {}
        for m, targets in edges.items():
            collapsed.setdefault(room(m), set()).update(
                room(t) for t in targets if room(t) != room(m)
            )
        modules = {r: None for r in collapsed}
        edges = collapsed

    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            sccs.append(scc)

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            strong(v)

    name = lambda m: "::".join(m) or "(crate root)"
    cycles = [sorted(s) for s in sccs if len(s) > 1]
    label = crate.name
    if cycles:
        print(f"{label}: {len(cycles)} module cycle(s)")
        for scc in cycles:
            members = set(scc)
            print("  cycle: " + ", ".join(name(m) for m in scc))
            for m in scc:
                inside = sorted(t for t in edges[m] if t in members)
                print(f"    {name(m)} -> {', '.join(name(t) for t in inside)}")
        return False
    layer = {}

    def layer_of(m):
        if m not in layer:
            layer[m] = 1 + max((layer_of(t) for t in edges[m]), default=-1)
        return layer[m]

    for m in modules:
        layer_of(m)
    kind = "rooms" if rooms else "modules"
    print(f"{label}: {len(modules)} {kind}, no cycles; layers (each imports only lower ones):")
    for n in range(max(layer.values()) + 1):
        members = sorted(name(m) for m in modules if layer[m] == n)
        print(f"  {n}: {', '.join(members)}")
    return True


args = sys.argv[1:]
rooms = "--rooms" in args
ok = True
for arg in (a for a in args if a != "--rooms"):
    ok &= check(pathlib.Path(arg).resolve(), rooms)
sys.exit(0 if ok else 1)
PY
