# pytest tests/test_gradcheck.py
"""neuronlab.gradcheck: correct ops pass without false alarms; manual vs autograd gradients of
whole models agree within the rounding bound, and disagree when the manual path breaks. The
planted bugs (tests/planted.py) are in test_planted_bugs.py and test_planted_in_models.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from planted import PLANTS

from neuronlab import MLP, Neuron
from neuronlab.functional import OPS
from neuronlab.gradcheck import (
    check_function,
    compare_gradients,
    default_tolerance,
    grade,
    relative_error,
)
from neuronlab.gradcheck.grading import worst_grade
from neuronlab.gradcheck.rounding import (
    error_ratios,
    max_differences,
    rounding_bounds,
    unit_roundoff,
)

F64 = torch.float64




def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=_gen(seed), dtype=F64).requires_grad_()


# ---- correct ops: no false alarms ---------------------------------------------------------


@pytest.mark.parametrize("shape", [(3,), (4, 5), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(OPS))
def test_correct_ops_pass(name, shape, dtype):
    if name == "cross_entropy" and len(shape) == 3:
        pytest.skip("cross_entropy takes (N, C) or (C,)")
    spec = OPS[name]
    inputs = spec.sample(shape, dtype, "cpu", _gen())
    report = check_function(spec.manual, *inputs, reference=spec.reference)
    assert report.ok, str(report)
    assert report.grade == "good", str(report)
    assert not report.warnings, str(report)
    assert report.worst_relative < 1e-7
    assert all(r.reference_rel_error < 1e-12 for r in report.inputs)


def test_plain_functions_tuple_outputs_and_passthrough_inputs():
    def fn(x, w, k, scale):  # k: integer indices, scale: a float, both pass through unchecked
        return (x @ w).sin() * scale, x.gather(-1, k).exp()

    k = torch.tensor([[0], [2], [1], [0]])
    report = check_function(fn, _x(4, 3), _x(3, 3, seed=1), k, 0.5)
    assert report.ok, str(report)
    assert [r.name for r in report.inputs] == ["x", "w"]
    assert report.worst_relative < 1e-7


def test_float32_inputs_are_upcast_and_originals_untouched():
    x = torch.randn(4, 5, generator=_gen()).requires_grad_()
    report = check_function(OPS["tanh"].manual, x, reference=torch.tanh)
    assert report.grade == "good"
    assert x.grad is None and x.dtype == torch.float32


def test_kinks_are_warned_about_not_failed():
    x = torch.tensor([0.0, 3e-7, -4e-7, 0.5, -1.5], dtype=F64, requires_grad=True)
    report = check_function(OPS["relu"].manual, x, reference=torch.relu)
    assert report.ok, str(report)
    assert report.inputs[0].kinks == 3
    assert any("3 entries within eps of a kink" in w for w in report.warnings)


def test_relative_error_and_grades():
    z = torch.zeros(3, dtype=F64)
    assert relative_error(z, z) == 0.0
    assert relative_error(z, torch.ones(3, dtype=F64)) == 1.0
    assert relative_error(torch.tensor([1.0, 1e-30]), torch.tensor([1.0, 2e-30])) < 1e-20
    assert [grade(1e-9), grade(1e-5), grade(1e-2), grade(float("nan"))] == [
        "good", "acceptable", "wrong", "wrong"]
    assert worst_grade(["good", "acceptable"]) == "acceptable"
    assert worst_grade(["wrong", "error", "good"]) == "error"


def test_argument_errors():
    with pytest.raises(TypeError, match="fn"):
        check_function(3, _x(2))
    with pytest.raises(ValueError, match="eps"):
        check_function(torch.sin, _x(2), eps=0)
    report = check_function(torch.sin, torch.randn(2))  # nothing requires grad
    assert not report.ok and "requires grad" in report.errors[0]


# ---- compare_gradients ----------------------------------------------------------------------


def _digits_like(n=32, n_in=6, n_classes=3, seed=0):
    g = _gen(seed)
    return torch.randn(n, n_in, generator=g), torch.randint(0, n_classes, (n,), generator=g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind, loss", [("neuron", "bce"), ("neuron", "mse"),
                                        ("mlp", "cross_entropy"), ("mlp", "mse"),
                                        ("mlp", "bce")])
def test_compare_gradients_passes(kind, loss, dtype):
    torch.manual_seed(0)
    n_out = 1 if kind == "neuron" or loss == "bce" else 3
    x, y = _digits_like(n_classes=2 if n_out == 1 else 3)
    model = Neuron(6) if kind == "neuron" else MLP([6, 8, 8, n_out], activation="tanh")
    model = model.to(dtype)
    model.backprop = "autograd"
    report = compare_gradients(model, x, y, loss=loss)
    assert report.ok, str(report)
    assert report.tolerance == 1.0  # a multiple of each tensor's rounding bound
    assert 0 <= report.worst < 0.5 and all(r.bound > 0 for r in report.rows)
    assert all(r.cosine > 1 - 1e-6 for r in report.rows)
    assert model.backprop == "autograd"  # mode restored
    assert all(p.grad is None for p in model.parameters())  # no state leaked
    d = report.to_dict()
    assert json.loads(json.dumps(d))["ok"] is True and len(d["rows"]) == len(report.rows)
    assert "× bound" in str(report) and "rounding bound" in str(report)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_compare_gradients_low_precision_passes_with_its_roundoff(dtype):
    torch.manual_seed(0)
    x, y = _digits_like(n=128)
    model = MLP([6, 16, 16, 3], activation="tanh").to(dtype)
    for loss in ("cross_entropy", "mse"):
        report = compare_gradients(model, x, y, loss=loss)
        assert report.ok, str(report)
        assert report.worst_relative > 0  # the two paths do round differently


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compare_gradients_on_a_cancelling_batch_passes(dtype):
    """Each input twice, once per label, and outputs near 0.5: every bias gradient is a sum
    of ±0.5 terms that cancels to ~1e-5 of its terms. Relative to the gradient the rounding is
    ~u/1e-5 (float32: ~1e-3, which a fixed relative tolerance of 1e-5 failed); relative to
    the terms it is ~u, as always."""
    torch.manual_seed(0)
    model = MLP([6, 16, 2], activation="tanh").to(dtype)
    with torch.no_grad():
        model.layers[-1].weight.mul_(1e-4)
    x = torch.randn(32, 6).repeat(2, 1)  # (64, 6)
    y = torch.cat([torch.zeros(32), torch.ones(32)]).long()
    report = compare_gradients(model, x, y, loss="cross_entropy")
    assert report.ok, str(report)
    bias = next(r for r in report.rows if r.name == "layers.1.bias")
    assert bias.bound > 0 and bias.error < 0.5


def test_compare_gradients_fails_on_the_right_parameters(monkeypatch):
    torch.manual_seed(0)
    model = MLP([6, 8, 8, 3], activation="tanh").double()
    x, y = _digits_like()
    PLANTS["tanh derivative 1 - a"].install(monkeypatch)  # 1 − a for 1 − a²
    report = compare_gradients(model, x, y, loss="cross_entropy")
    assert not report.ok
    failed = {r.name for r in report.rows if not r.passed}
    assert failed == {"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"}
    assert all(r.error > 1e6 for r in report.rows if not r.passed)  # far beyond rounding
    assert "FAIL" in str(report) and "layers.2.weight" in str(report)
    assert model.backprop == "manual"


def test_compare_gradients_argument_errors():
    model = MLP([2, 3])
    x, y = torch.randn(4, 2), torch.randint(0, 3, (4,))
    with pytest.raises(ValueError, match="loss='cross_entropi'"):
        compare_gradients(model, x, y, loss="cross_entropi")
    with pytest.raises(TypeError, match="model"):
        compare_gradients(torch.nn.Linear(2, 3), x, y)
    with pytest.raises(ValueError, match="tolerance"):
        compare_gradients(model, x, y, tolerance=0.0)


def test_default_tolerance():
    assert default_tolerance(torch.float64, "cpu") == 1e-10
    assert default_tolerance(torch.float32, "cpu") == 1e-5
    assert default_tolerance(torch.bfloat16, "cpu") > default_tolerance(torch.float16, "cpu")
    with pytest.raises(TypeError, match="dtype"):
        default_tolerance(torch.int64, "cpu")


def test_unit_roundoff_and_the_rounding_rule():
    assert unit_roundoff(torch.float64) == 2.0**-53 and unit_roundoff(torch.float32) == 2.0**-24
    assert unit_roundoff(torch.float16) == 2.0**-11 and unit_roundoff(torch.bfloat16) == 2.0**-8
    with pytest.raises(TypeError, match="dtype"):
        unit_roundoff(torch.int64)
    g = [torch.tensor([1.0, float("nan"), float("inf")]), torch.tensor([1.0, 2.0])]
    r = [torch.tensor([1.0 + 2**-20, float("nan"), float("inf")]), torch.tensor([1.0, 3.0])]
    diffs = max_differences(g, r)
    assert diffs.tolist() == [2**-20, 1.0]  # NaN vs NaN and inf vs inf agree
    assert max_differences([torch.tensor([float("nan")])], [torch.zeros(1)]).item() == math.inf
    bounds = rounding_bounds([torch.tensor([4.0]), torch.tensor([0.0])], 2.0**-24)
    assert bounds.tolist() == pytest.approx([16 * 2**-24 * 4 * (1 + 2**-10),
                                             16 * 2**-24 * 4 * 2**-10])
    assert error_ratios(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0])).tolist() == [
        0.0, math.inf]


def test_reference_mismatch_in_forward_is_reported():
    def gelu_tanh(z):
        return F.gelu(z, approximate="tanh")

    report = check_function(OPS["gelu"].manual, _x(5), reference=gelu_tanh)
    assert not report.ok and report.forward_rel_error > 1e-6
