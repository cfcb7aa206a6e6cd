"""The package layering: no import cycle between packages, the command line on top, light model loading.

The import graph is read statically from ``src/binsharp`` (every ``import`` statement, also those inside
functions), so a cycle hidden behind a lazy import is found too. A *package* is a direct child of
``binsharp``: a subpackage (``binsharp.models``) or a top-level module (``binsharp.sensors``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import binsharp

SRC = Path(binsharp.__file__).resolve().parent
#: Packages that may import the command-line machinery.
CLI = "cli"
#: The floors of the README's Layout table: a package imports from its own floor and the floors below.
FLOORS: dict[str, int] = {
    "errors": 1,
    "fileio": 1,
    "names": 1,
    "native": 1,
    "progress": 1,
    "sensors": 1,
    "protocol": 2,
    "metrics": 2,
    "classic": 2,
    "data": 2,
    "nn": 2,
    "configs": 2,
    "weights": 3,
    "zoo": 3,
    "models": 4,
    "deploy": 5,
    "train": 5,
    "inference": 6,
    "evaluation": 7,
    "report": 8,
    "cli": 9,
}


def _module_name(path: Path, root: Path) -> list[str]:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _is_module(root: Path, parts: list[str]) -> bool:
    base = root.joinpath(*parts[1:])
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports(root: Path) -> list[tuple[str, str, int]]:
    """``(importing module, imported module, line)`` for every import statement under ``root``."""
    out: list[tuple[str, str, int]] = []
    for path in sorted(root.rglob("*.py")):
        parts = _module_name(path, root)
        module = ".".join(parts)
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                out += [(module, a.name, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    is_sub = target.startswith(root.name) and _is_module(root, sub.split("."))
                    out.append((module, sub if is_sub else target, node.lineno))
    return out


def package_of(module: str, root_name: str) -> str | None:
    """The direct child of the root package that ``module`` belongs to (``None`` for the root itself or
    a module outside it)."""
    parts = module.split(".")
    if parts[0] != root_name or len(parts) < 2:
        return None
    return parts[1]


def package_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    """``{package: {imported package: ["module:line", ...]}}`` between the packages under ``root``."""
    graph: dict[str, dict[str, list[str]]] = {}
    for src, dst, line in imports(root):
        a, b = package_of(src, root.name), package_of(dst, root.name)
        if a and b and a != b:
            graph.setdefault(a, {}).setdefault(b, []).append(f"{src}:{line}")
    return graph


def package_cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components of more than one package (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
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
                found.append(sorted(comp))

    nodes = set(graph) | {b for edges in graph.values() for b in edges}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def _describe(graph: dict[str, dict[str, list[str]]], cycle: list[str]) -> str:
    lines = [" <-> ".join(cycle)]
    for a in cycle:
        for b, sites in graph.get(a, {}).items():
            if b in cycle:
                lines.append(f"  {a} -> {b}: {', '.join(sites)}")
    return "\n".join(lines)


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph(SRC)
    cycles = package_cycles(graph)
    assert not cycles, "import cycles between packages:\n" + "\n".join(_describe(graph, c) for c in cycles)


def test_imports_go_down_the_floors() -> None:
    graph = package_graph(SRC)
    packages = sorted(set(graph) | {b for edges in graph.values() for b in edges})
    assert not [p for p in packages if p not in FLOORS], "packages without a floor in FLOORS"
    up = [
        f"{a} (floor {FLOORS[a]}) -> {b} (floor {FLOORS[b]}): {', '.join(sites)}"
        for a, edges in graph.items()
        for b, sites in edges.items()
        if FLOORS[b] > FLOORS[a]
    ]
    assert not up, "imports going up a floor:\n" + "\n".join(up)


def test_library_does_not_import_the_command_line() -> None:
    bad = [
        f"{src}:{line} imports {dst}"
        for src, dst, line in imports(SRC)
        if package_of(src, SRC.name) != CLI
        and (dst == "argparse" or dst.startswith("argparse.") or package_of(dst, SRC.name) == CLI)
    ]
    assert not bad, "library modules importing the command line:\n" + "\n".join(bad)


def test_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """The checks above report a cycle through a lazy import and a library module importing argparse."""
    root = tmp_path / "pkg"
    (root / "low").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "low" / "__init__.py").write_text("from pkg.low import part\n")
    (root / "low" / "part.py").write_text("def f():\n    from pkg import high\n")
    (root / "high.py").write_text("import argparse\nfrom .low import part\n")
    graph = package_graph(root)
    assert package_cycles(graph) == [["high", "low"]]
    assert ("pkg.high", "argparse", 1) in imports(root)
    assert ("pkg.high", "pkg.low.part", 2) in imports(root)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


FORBIDDEN_FOR_MODELS = (
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
    "binsharp.train",
    "binsharp.cli",
)


@pytest.mark.parametrize(
    "code",
    [
        "from binsharp import models\nmodels.create('pnn', bands=4)",
        "from binsharp import models\nmodels.create('pnn', pretrained='wv3-longmont')",
    ],
    ids=["create", "pretrained"],
)
def test_loading_a_model_imports_neither_lightning_nor_train(code: str) -> None:
    loaded = _modules_after(code)
    assert "binsharp.models" in loaded and "binsharp.weights" in loaded
    bad = sorted(
        m for m in loaded if m.split(".")[0] in FORBIDDEN_FOR_MODELS or m.startswith(FORBIDDEN_FOR_MODELS)
    )
    assert not bad, f"loading a model imported {bad}"


def test_subprocess_probe_sees_lightning() -> None:
    """The probe above would notice Lightning: importing the training engine loads it."""
    assert "lightning" in _modules_after("import binsharp.train.engine")
