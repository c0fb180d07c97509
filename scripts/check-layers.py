#!/usr/bin/env python3
"""The layer rule of the README's architecture section, checked on the sources.

Each top-level module of the core library sits on a layer; a file may use what is on
its own layer or below, never above. The module folders never use each other (only the
`Module` trait of their parent). The front-ends (src/bin) use `disklessset::ops` only.
Exits 1 naming every violation. Reads the code as text: `crate::X`, `use crate::{X, ..}`
and `super::` paths that climb out of a top-level module."""
import re
import sys
from pathlib import Path

# Bottom first. Keep in step with README.md, "Architecture".
LAYERS = [
    ["error", "yaml", "names"],
    ["config", "fsutil"],
    ["sys", "logging"],
    ["ctx"],
    ["store", "cluster"],
    ["build", "pack", "kernel", "power"],
    ["boot"],
    ["modules"],
    ["params"],
    ["ops"],
]
LAYER = {m: i for i, ms in enumerate(LAYERS) for m in ms}

root = Path(__file__).resolve().parent.parent
src = root / "src"
problems = []


def strip_comments(text):
    out = []
    for line in text.splitlines():
        s = line.lstrip()
        if s.startswith("//"):
            out.append("")
            continue
        out.append(re.sub(r"\s//.*$", "", line))
    return "\n".join(out)


def top_of(rel):
    parts = rel.parts
    name = parts[0]
    return name[:-3] if name.endswith(".rs") else name


def used_tops(text):
    tops = set(re.findall(r"\bcrate::([a-z_]+)", text))
    for group in re.findall(r"\buse\s+crate::\{([^}]*)\}", text, re.S):
        tops.update(re.findall(r"(?:^|,)\s*([a-z_]+)", group))
    return tops


edges = {}
for f in sorted(src.rglob("*.rs")):
    rel = f.relative_to(src)
    text = strip_comments(f.read_text())
    if rel.parts[0] == "bin":
        for m in re.findall(r"\bdisklessset::([a-zA-Z_]+)", text):
            if m != "ops":
                problems.append(f"src/{rel}: a front-end uses disklessset::{m} (front-ends use ops only)")
        continue
    if rel.name in ("lib.rs",):
        continue
    me = top_of(rel)
    if me not in LAYER:
        problems.append(f"src/{rel}: module {me} has no layer in scripts/check-layers.py")
        continue
    for t in used_tops(text):
        if t not in LAYER:
            continue
        if t != me:
            edges.setdefault(me, set()).add(t)
        if LAYER[t] > LAYER[me]:
            problems.append(f"src/{rel}: {me} (layer {LAYER[me]}) uses {t} (layer {LAYER[t]}), a higher layer")
    if me == "modules" and len(rel.parts) > 1 and rel.parts[1] != "mod.rs":
        mine = rel.parts[1].removesuffix(".rs")
        for other in re.findall(r"\bcrate::modules::([a-z_]+)", text):
            if other not in (mine, "Module"):
                problems.append(f"src/{rel}: module {mine} uses sibling module {other}")
        for other in re.findall(r"\bcrate::modules::\{([^}]*)\}", text):
            problems.append(f"src/{rel}: module {mine} imports modules::{{{other}}}")
        # `super::X` from a module's own mod.rs climbs to modules/mod.rs.
        if len(rel.parts) == 3 and rel.parts[2] == "mod.rs" or len(rel.parts) == 2:
            for other in re.findall(r"\bsuper::([a-z_]+)", text):
                if other not in ("Module",) and other != mine:
                    problems.append(f"src/{rel}: module {mine} reaches sibling {other} through super::")

# No circle between top-level modules, on one layer either.
def cycle_from(start):
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for n in sorted(edges.get(node, ())):
            if n == start:
                return path + [n]
            if n not in seen:
                seen.add(n)
                stack.append((n, path + [n]))
    return None


reported = set()
for m in sorted(edges):
    c = cycle_from(m)
    if c and frozenset(c) not in reported:
        reported.add(frozenset(c))
        problems.append("circle between modules: " + " -> ".join(c))

if problems:
    print("layer rule broken:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"layer rule holds ({len(LAYERS)} layers, front-ends through ops only)")
