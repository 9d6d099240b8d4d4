#!/usr/bin/env python3
"""Module import cycles between the rooms of a crate.

A room is a top-level module of the crate (a file `src/x.rs` or a folder `src/x/`). Every
`crate::x` path in a room's files (in `use` lines and inline, tests included) is an edge from
that room to room `x`. Prints the edges and every strongly connected component of more than one
room; exits 1 if there is any (a cycle). Usage: scripts/module-cycles.py driver [crates/wsk/src ...]
"""
import os
import re
import sys


def rooms_of(root):
    rooms = set()
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path):
            rooms.add(name)
        elif name.endswith(".rs") and name not in ("lib.rs", "main.rs"):
            rooms.add(name[:-3])
    return rooms


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def edges_of(root, rooms):
    edges = {r: set() for r in rooms}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            first = rel.split(os.sep)[0]
            room = first[:-3] if first.endswith(".rs") else first
            if room not in rooms:
                continue
            text = strip_comments(open(os.path.join(dirpath, name), encoding="utf-8").read())
            targets = set(re.findall(r"\bcrate::(\w+)", text))
            for group in re.findall(r"\bcrate::\{([^}]*)\}", text, flags=re.S):
                targets |= set(re.findall(r"(?:^|,)\s*(\w+)", group))
            for t in targets:
                if t in rooms and t != room:
                    edges[room].add(t)
    return edges


def sccs(edges):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    failed = False
    for root in sys.argv[1:] or ["driver"]:
        rooms = rooms_of(root)
        edges = edges_of(root, rooms)
        print(f"{root}:")
        for room in sorted(edges):
            print(f"  {room} -> {', '.join(sorted(edges[room])) or '(nothing)'}")
        cycles = [c for c in sccs(edges) if len(c) > 1]
        for c in cycles:
            print(f"  CYCLE: {' <-> '.join(c)}")
        if not cycles:
            print("  no cycles")
        failed |= bool(cycles)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
