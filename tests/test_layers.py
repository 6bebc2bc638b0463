# pytest tests/test_layers.py
"""The house rules of docs/architecture.md, checked on the source: each module imports only
from its own layer or below, no import circle, no file over 300 lines, and the page names
every module and package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "neuronlab"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# the first part of a module's name under neuronlab → its layer (docs/architecture.md)
LAYERS = {
    "__init__": 0, "errors": 0, "schema": 0, "paths": 0,
    "functional": 1, "optim": 1, "init": 1, "data": 1,
    "modules": 2, "gradcheck": 2, "testing": 2,
    "training": 3,
    "experiments": 4, "explain": 4,
    "config": 5, "cli": 5,
}
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(("neuronlab", *parts)).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """The neuronlab modules ``name`` imports, at the top or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING"
                   for n in ast.walk(block)}  # annotations only: no arrow at run time
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("neuronlab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("neuronlab"):
                out.add(target)
                out |= {f"{target}.{a.name}" for a in node.names}  # from pkg import module
    modules = _modules()
    return {m for m in out if m in modules and m != name}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS["__init__"] if len(parts) == 1 else LAYERS[parts[1]]


GRAPH = {name: _imports(name, path) for name, path in _modules().items()}


def test_every_module_has_a_layer():
    unknown = sorted(m for m in GRAPH if len(m.split(".")) > 1 and m.split(".")[1] not in LAYERS)
    assert not unknown, f"add these to LAYERS and docs/architecture.md: {unknown}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module):
    if module == "neuronlab":  # the package's lazy re-exports of its public names
        return
    up = sorted(t for t in GRAPH[module] if _layer(t) > _layer(module))
    assert not up, f"{module} (layer {_layer(module)}) imports a higher layer: {up}"


def test_no_import_circle():
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if nxt == "neuronlab" or nxt == node.rpartition(".")[0]:
                continue  # a package's __init__ re-exporting its own modules
            if state.get(nxt) == 1:
                raise AssertionError(" → ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


def test_no_file_over_the_limit():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_the_architecture_page_names_every_module():
    text = DOC.read_text()
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if path.name == "__init__.py":
            if rel.parent != Path(".") and f"{rel.parent}/" not in text:
                missing.append(f"{rel.parent}/")
        elif str(rel) not in text:
            missing.append(str(rel))
    assert not missing, f"docs/architecture.md does not name: {missing}"
