#!/usr/bin/env python3
"""Keeps the layout the manual's architecture page (docs/internals/architecture.md) describes:
no source file over 500 code lines, no function over 80 lines, and no two modules of a crate importing each other.

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
CRATES = ["domain", "report", "proto", "coordinator", "worker", "bench", "tests"]


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


def imports(path, lines):
    """Sibling modules this file names with `crate::` or `super::` paths."""
    used = set()
    for _, line in lines:
        line = line.split("//")[0]
        for m in re.finditer(r"\bcrate::(\w+)", line):
            used.add(m.group(1))
    return used


def module_of(path):
    """The top-level module of a file within its crate: `coordinator/src/state/load.rs` → state."""
    parts = path.split(os.sep)
    rel = parts[2:]
    name = rel[0]
    return name[:-3] if name.endswith(".rs") else name


def main():
    problems = []
    graph = {}
    for path in sorted(rust_files()):
        if os.path.basename(path) in ("tests.rs", "fixtures.rs"):
            continue
        with open(path, encoding="utf-8") as f:
            lines = strip_tests(f.read().split("\n"))
        code = sum(1 for _, l in lines if is_code(l))
        if code > MAX_FILE:
            problems.append(f"{path}: {code} code lines (max {MAX_FILE})")
        problems += long_functions(path, lines)
        crate, module = path.split(os.sep)[0], module_of(path)
        if module in ("lib", "main"):
            continue
        deps = graph.setdefault((crate, module), set())
        deps |= {d for d in imports(path, lines) if d != module}
    for (crate, a), deps in graph.items():
        for b in deps:
            if a < b and a in graph.get((crate, b), set()):
                problems.append(f"{crate}: modules `{a}` and `{b}` import each other")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"layout: ok ({len(graph)} modules; files ≤ {MAX_FILE} code lines, functions ≤ {MAX_FN} lines, no import cycles between two modules)")


if __name__ == "__main__":
    main()
