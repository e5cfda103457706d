#!/usr/bin/env python3
"""Finds import cycles between the modules of core/ (DESIGN.md, "The house by layer").

Usage: python3 scripts/import-cycles.py [file|top]

  file  (default) cycles between modules (one per file); a module using its own parent's
        re-exports, or a parent using its children, is not counted
  top   cycles between the top-level folders (fs, machine, message, sieve, ...)

Reads every .rs file under core/src, drops its `#[cfg(test)] mod` block and its comment
lines, and takes an edge for every `crate::` path (braced `use` lists included) and every
`super::` path that names a module. Prints the modules and the cycles found; exits 1 when
there is a cycle, so scripts/test-all.sh can require none. The test kit (`testkit`) is
skipped: it is compiled only for tests.
"""
import os
import re
import sys

ROOT = "core/src"


def modules():
    """Module path ("machine::dedup", "" for lib.rs) -> file."""
    found = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts == ["lib"]:
                parts = []
            found["::".join(parts)] = path
    return found


def code_of(path):
    """The file's text without its test module and without comment lines."""
    src = open(path, encoding="utf-8").read()
    test = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\(crate\))? )?mod \w+ \{", src)
    if test:
        src = src[: test.start()]
    return "\n".join(l for l in src.split("\n") if not l.strip().startswith("//"))


def edges_of(mods):
    """Module -> the modules its code names."""
    def resolve(path):
        parts = path.split("::")
        for n in range(len(parts), 0, -1):
            key = "::".join(parts[:n])
            if key in mods:
                return key
        return None

    edges = {}
    for m, path in mods.items():
        if m == "testkit":
            continue
        src = code_of(path)
        deps = set()
        for use in re.finditer(r"crate::((?:\w+::)*)(\{[^;]*\}|\w+)", src):
            prefix, rest = use.group(1), use.group(2)
            items = re.findall(r"(\w+(?:::\w+)*)", rest) if rest.startswith("{") else [rest]
            for item in items:
                target = resolve((prefix + item).rstrip(":"))
                if target is not None:
                    deps.add(target)
        parent = m.split("::")[:-1]
        for use in re.finditer(r"super::(\w+)", src):
            target = resolve("::".join(parent + [use.group(1)]))
            if target is not None:
                deps.add(target)
        deps.discard(m)
        edges[m] = deps
    return edges


def by_level(edges, level):
    if level == "top":
        top = {}
        for a, deps in edges.items():
            for b in deps:
                ta, tb = a.split("::")[0], b.split("::")[0]
                if a and b and ta != tb:
                    top.setdefault(ta, set()).add(tb)
        return top
    # A child using its parent's re-exports, and a parent using its children, are layering,
    # not cycles.
    return {
        a: {
            b
            for b in deps
            if not (a == "" or b == "" or a.startswith(b + "::") or b.startswith(a + "::"))
        }
        for a, deps in edges.items()
    }


def cycles(edges):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            found.append(component)

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return [sorted(c) for c in found if len(c) > 1]


def main():
    level = sys.argv[1] if len(sys.argv) > 1 else "file"
    if level not in ("file", "top"):
        print(__doc__, file=sys.stderr)
        return 64
    edges = by_level(edges_of(modules()), level)
    found = cycles(edges)
    print(f"{level} modules: {len(edges)} cycles: {found}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
