"""The house rules of docs/architecture.md, measured: which package may import which, and no
import cycles between modules.

The table below is the one in docs/architecture.md ("Packages and the arrows between them");
change both together. Every import counts, also one inside a function: a lazy import hides a
dependency from start-up time, not from the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> the project packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "hotspot": set(),  # the shared core: configuration, models, domain services
    "gateway": {"hotspot"},
    "portal": {"hotspot"},
    "sync": {"hotspot"},
    "collector": {"hotspot"},
    "provisioning": {"hotspot", "gateway", "portal"},  # renders their rules and URLs
    "testsupport": {"hotspot"},
    "demo": {"hotspot", "gateway", "portal", "sync", "collector", "provisioning", "testsupport"},
    "bench": {"hotspot", "gateway", "portal", "sync", "collector", "provisioning", "testsupport"},
    "hotspot_cli": {"hotspot", "gateway", "portal", "sync", "collector", "provisioning", "demo"},
}
PACKAGES = set(ALLOWED)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (``from a import b`` counts as a.b when a.b is a
    module, else as a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a.b.func -> a.b
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] in PACKAGES:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) - {name} for name, path in modules.items()}


def test_every_top_level_package_is_in_the_table():
    on_disk = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name != "tests"
    }
    assert on_disk == PACKAGES


def test_no_package_imports_above_itself():
    upward = sorted(
        f"{src} imports {dst}"
        for src, dsts in graph().items()
        for dst in dsts
        if (a := src.split(".")[0]) != (b := dst.split(".")[0]) and b not in ALLOWED[a]
    )
    assert upward == []


def test_no_import_cycles():
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    # A package's __init__ that re-exports its own modules is not a cycle of design.
    real = [c for c in cycles if not _only_reexports(c, g)]
    assert real == []


def _only_reexports(comp: list[str], g: dict[str, set[str]]) -> bool:
    parents = {m for m in comp if any(o.startswith(m + ".") for o in comp)}
    rest = [m for m in comp if m not in parents]
    return bool(parents) and all(not (g[m] & set(rest)) or m in parents for m in rest)


@pytest.mark.parametrize(
    "src,dst", [("hotspot.config", "gateway.engine"), ("portal.app", "collector.api")]
)
def test_the_check_would_see_an_upward_import(src, dst):
    a, b = src.split(".")[0], dst.split(".")[0]
    assert b not in ALLOWED[a]
