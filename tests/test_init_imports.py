# pytest tests/test_init_imports.py
"""The init sweep's modules import one way: driver → pictures → results, with no import back
(not even one under ``TYPE_CHECKING``, which test_layers.py leaves aside)."""

from __future__ import annotations

import ast
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1] / "src" / "neuronlab" / "experiments"


def _imported(name: str) -> set[str]:
    tree = ast.parse((EXPERIMENTS / f"{name}.py").read_text())
    return {node.module.lstrip(".").rpartition(".")[2] for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module}


def test_the_init_sweep_arrow_is_one_way():
    assert "init_plots" in _imported("init_sweep") and "init_results" in _imported("init_sweep")
    assert "init_sweep" not in _imported("init_plots")
    assert _imported("init_results").isdisjoint({"init_sweep", "init_plots"})
