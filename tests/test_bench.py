# pytest tests/test_bench.py
"""scripts/bench.py --quick end to end: it runs, and its JSON has the promised structure.

No timing thresholds here (a shared CI machine is too noisy): only that every headline number
exists and is a positive finite number.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"

PER_SIZE = ("manual_over_autograd", "fraction_of_matmul")
SCALARS = (
    "manual_over_autograd_memory",
    "compiled_over_eager",
    "lightning_over_raw",
    "sklearn_time_ratio",
    "sklearn_accuracy",
    "neuronlab_accuracy",
)


def _positive_finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def out_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench") / "b.json"


@pytest.fixture(scope="module")
def result(out_path: Path) -> dict:
    out = out_path
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_quick_run_writes_every_section(result):
    for section in ("machine", "notes", "ceiling", "step", "loop", "peer", "scaling", "mnist1d",
                    "targets", "summary"):
        assert section in result, section
    assert list(result)[-1] == "summary"  # the JSON ends with the summary
    machine = result["machine"]
    assert machine["cpu_model"] and machine["torch"] and machine["torch_threads"] >= 1
    assert "memory" in result["notes"]


@pytest.mark.slow
def test_summary_values_are_positive_finite(result):
    summary = result["summary"]
    for key in PER_SIZE:
        assert set(summary[key]) >= {"small", "mid"}, key
        for size, value in summary[key].items():
            assert _positive_finite(value), (key, size, value)
    for key in SCALARS:
        assert _positive_finite(summary[key]), (key, summary.get(key))
    assert 0 < summary["sklearn_accuracy"] <= 1 and 0 < summary["neuronlab_accuracy"] <= 1


@pytest.mark.slow
def test_step_section_has_times_flops_and_memory(result):
    for size, r in result["step"].items():
        for variant in ("manual/eager", "autograd/eager"):
            v = r["variants"][variant]
            for key in ("time_s", "flops_per_s", "fraction_of_matmul"):
                assert _positive_finite(v[key]), (size, variant, key)
        for mode in ("manual", "autograd"):
            assert r["memory"][mode]["saved_bytes"] > 0
        assert _positive_finite(r["ceiling_flops_per_s"])
        assert all(v["syncs_per_step"] is None for v in r["variants"].values())  # CPU: n/a
    # the whole-step compiled TrainStep ran (aot_eager in --quick), not a fallback
    assert {"manual/compiled", "fused/compiled", "autograd/compiled"} <= set(
        result["step"]["mid"]["variants"])
    # every granularity: manual (the default, granularity=network), fused (layer) and op
    assert {"fused/eager", "op/eager"} <= set(result["step"]["small"]["variants"])
    for m in ("fused", "op"):
        assert _positive_finite(result["summary"][f"{m}_over_autograd"]["small"])
        assert _positive_finite(result["summary"][f"{m}_over_autograd_compiled"]["mid"])
    assert not result["step"]["mid"]["fallbacks"]
    # a slope, not a ratio: at the quick sizes overhead dominates and it may sit near 0
    assert math.isfinite(result["scaling"]["exponent"])


@pytest.mark.slow
def test_markdown_table_is_written_next_to_the_json(result, out_path):
    text = out_path.with_suffix(".md").read_text()
    assert text.startswith("# neuronlab benchmark") and "| metric | value |" in text


@pytest.mark.slow
def test_mnist1d_throughput_is_reported(result):
    r = result["mnist1d"]
    # graph: CUDA only; manual = the default granularity (network), fused = one Function per
    # layer, op = one per op
    assert set(r["samples_per_s"]) == {"manual/eager", "fused/eager", "op/eager",
                                       "autograd/eager"}
    assert all(_positive_finite(v) for v in r["samples_per_s"].values())
    assert r["data"]
    for m in ("manual", "fused", "op"):
        assert _positive_finite(result["summary"][f"mnist1d_{m}_over_autograd_throughput"])


def test_cuda_targets_are_issue_12s_goals():
    """The targets a GPU run is checked against (no run needed: a made-up summary)."""
    sys.path.insert(0, str(SCRIPT.parent))
    from bench import TARGETS, check_targets

    summary = {
        "fraction_of_matmul_default_mode": {"mid": 0.7},
        "manual_over_autograd": {"small": 1.1, "mid": 1.2, "wide": 1.04},
        "manual_over_autograd_graph": {"mid": 1.01},
        "lightning_over_raw": 1.1, "syncs_per_step_default_mode": 0.0,
        "mnist1d_manual_over_autograd_throughput": 1.02,
    }
    met = {k: v["met"] for k, v in check_targets(summary, "cuda").items()}
    assert met == {
        "fraction_of_matmul_default_mode.mid": True, "manual_over_autograd.small": True,
        "manual_over_autograd.mid": False, "manual_over_autograd.wide": True,
        "manual_over_autograd_graph.mid": False, "lightning_over_raw": True,
        "syncs_per_step_default_mode": True, "mnist1d_manual_over_autograd_throughput": True,
    }
    assert set(check_targets(summary, "cpu")) <= set(TARGETS)  # the CPU's own, unchanged
