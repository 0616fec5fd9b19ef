#!/usr/bin/env python3
"""Keeps the layout the manual's architecture page (docs/internals/architecture.md) describes:
no source file over 500 code lines, no function over 80 lines, and no import cycle between the
modules of a crate, at any level and of any length (`crate::`, `super::` and `self::` paths,
each file a module; a module using its parent's or children's items is containment, not a
cycle).

Tests are exempt (files named tests.rs or fixtures.rs, and `#[cfg(test)] mod tests { ... }`
blocks), and so are data tables marked with a `// layout: table` comment on the line before
their `fn` or `const`. Code lines are lines that are neither blank nor only a comment.
Run from the repository root; exits 1 listing every violation.
"""
import os
import re
import sys

MAX_FILE = 500
MAX_FN = 80
CRATES = ["common", "report", "proto", "coordinator", "worker", "bench", "tests"]


def rust_files():
    for crate in CRATES:
        for root, _, files in os.walk(os.path.join(crate, "src")):
            for f in files:
                if f.endswith(".rs"):
                    yield os.path.join(root, f)


def strip_tests(lines):
    """The lines outside `#[cfg(test)]` items, with their original numbers."""
    out, skip_depth, pending = [], None, False
    depth = 0
    for n, line in enumerate(lines, 1):
        code = line.split("//")[0]
        if skip_depth is None and line.strip() == "#[cfg(test)]":
            pending = True
            continue
        if pending and skip_depth is None:
            pending = False
            if code.rstrip().endswith(";"):  # `mod tests;` in its own file
                continue
            skip_depth = depth
        opened, closed = code.count("{"), code.count("}")
        depth += opened - closed
        if skip_depth is not None:
            if depth <= skip_depth and closed:
                skip_depth = None
            continue
        out.append((n, line))
    return out


def is_code(line):
    s = line.strip()
    return bool(s) and not s.startswith("//")


def long_functions(path, lines):
    problems = []
    i = 0
    while i < len(lines):
        n, line = lines[i]
        exempt = i > 0 and "layout: table" in lines[i - 1][1]
        if re.match(r"\s*(pub(\([^)]*\))? )?(async )?(unsafe )?fn \w+", line) and not exempt:
            depth, started, j = 0, False, i
            while j < len(lines):
                code = lines[j][1].split("//")[0]
                depth += code.count("{") - code.count("}")
                started = started or "{" in code
                if started and depth <= 0:
                    break
                if not started and code.rstrip().endswith(";"):
                    break  # a declaration without a body
                j += 1
            length = j - i + 1
            if started and length > MAX_FN:
                name = re.search(r"fn (\w+)", line).group(1)
                problems.append(f"{path}:{n}: fn {name} is {length} lines (max {MAX_FN})")
            i = j + 1 if started else i + 1
        else:
            i += 1
    return problems


def module_path(path):
    """A file's module path within its crate: `worker/src/train/engine.rs` → ("train", "engine"),
    `coordinator/src/state/mod.rs` → ("state",), `lib.rs` or `main.rs` → ()."""
    rel = path.split(os.sep)[2:]
    rel[-1] = rel[-1][:-3]
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


PATH = re.compile(r"\b(crate|super|self)::((?:\w+::)*)(\{[^;]*|\w+)")


def referenced(module, line):
    """The module paths a line names through `crate::`, `super::` or `self::` (with `{...}`
    groups opened one level), as candidate paths, longest first."""
    found = []
    for m in PATH.finditer(line):
        base = {"crate": (), "super": module[:-1], "self": module}[m.group(1)]
        middle = tuple(s for s in m.group(2).split("::") if s)
        tail = m.group(3)
        names = re.findall(r"(?:^|[{,])\s*(\w+)", tail) if tail.startswith("{") else [tail]
        for name in names:
            found.append(base + middle + (name,))
    return found


def resolve(candidate, modules):
    """The deepest known module a path starts with, or None."""
    for n in range(len(candidate), 0, -1):
        if candidate[:n] in modules:
            return candidate[:n]
    return None


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def related(a, b):
    """Whether one module contains the other (a parent using its children, or a child its
    parent's items, is how Rust modules are built, not a cycle)."""
    return a[: len(b)] == b or b[: len(a)] == a


def main():
    sys.setrecursionlimit(10_000)
    problems = []
    files = {}
    for path in sorted(rust_files()):
        if os.path.basename(path) in ("tests.rs", "fixtures.rs"):
            continue
        with open(path, encoding="utf-8") as f:
            lines = strip_tests(f.read().split("\n"))
        code = sum(1 for _, l in lines if is_code(l))
        if code > MAX_FILE:
            problems.append(f"{path}: {code} code lines (max {MAX_FILE})")
        problems += long_functions(path, lines)
        files[path] = lines
    # Every module (file) of every crate, and the modules each one names.
    graph = {}
    for path, lines in files.items():
        crate, module = path.split(os.sep)[0], module_path(path)
        graph.setdefault((crate, module), set())
    for path, lines in files.items():
        crate, module = path.split(os.sep)[0], module_path(path)
        modules = {m for (c, m) in graph if c == crate}
        for _, line in lines:
            for cand in referenced(module, line.split("//")[0]):
                target = resolve(cand, modules)
                if target is not None and target != module and not related(module, target):
                    graph[(crate, module)].add((crate, target))
    for comp in cycles(graph):
        names = " → ".join("::".join(m) or "(root)" for _, m in comp)
        problems.append(f"{comp[0][0]}: modules import each other in a cycle: {names}")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(
        f"layout: ok ({len(graph)} modules; files ≤ {MAX_FILE} code lines, functions ≤ {MAX_FN} "
        "lines, no import cycle between modules at any level)"
    )


if __name__ == "__main__":
    main()
