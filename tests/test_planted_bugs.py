# pytest tests/test_planted_bugs.py
"""The checker itself: it never passes a wrong backward and never fails a right one.

- A table of planted bugs: hand-written Functions whose forward is plain torch and whose
  backward holds one realistic mistake. ``check_function`` must fail each, with a reference and
  on finite differences alone; the same Functions without the mistake must pass.
- The gradient audit, mid-training: a derivative helper in ``functional.activations`` swapped
  for a wrong one ends the run as ``failed`` naming the parameter; the right one runs ``ok``.
- A randomized run over every op in ``OPS`` (seeds, shapes, dtypes, devices): no false alarm.
- Gaps the suite found (a forgotten gradient, a dtype hidden by float64 copies, a near-miss
  constant) are tested at the end: the checker now catches them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import neuronlab.functional.activations as A
from neuronlab.config import compose
from neuronlab.functional import OPS
from neuronlab.functional.linear import LinearFunction
from neuronlab.gradcheck import ACCEPTABLE, check_function
from neuronlab.training import GradientAudit
from neuronlab.training.run import train

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=_gen(seed), dtype=F64).requires_grad_()


def _away_from_kink(*shape: int, seed: int = 0) -> torch.Tensor:
    """Values in ±[0.1, 2): no finite difference straddles the kink at 0."""
    g = _gen(seed)
    mag = torch.rand(shape, generator=g, dtype=F64) * 1.9 + 0.1
    sign = torch.randint(0, 2, shape, generator=g).to(F64) * 2 - 1
    return (mag * sign).requires_grad_()


# ---- correct Functions: plain-torch forward, the right backward ----------------------------


class Sigmoid(torch.autograd.Function):
    """a = σ(z).  Backward: ∂L/∂z = g · a(1 − a)."""

    @staticmethod
    def forward(z):
        return torch.sigmoid(z)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * a * (1 - a)


class Tanh(Sigmoid):
    """a = tanh(z).  Backward: ∂L/∂z = g · (1 − a²)."""

    @staticmethod
    def forward(z):
        return torch.tanh(z)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * (1 - a * a)


class ReLU(Sigmoid):
    """a = max(z, 0).  Backward: ∂L/∂z = g · 1[a > 0]."""

    @staticmethod
    def forward(z):
        return torch.relu(z)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * (a > 0).to(g.dtype)


class Softmax(Sigmoid):
    """a = softmax(z) over the last dim.  Backward: ∂L/∂z = a ⊙ (g − Σ_j g_j a_j)."""

    @staticmethod
    def forward(z):
        return torch.softmax(z, dim=-1)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return a * (g - (g * a).sum(-1, keepdim=True))


class _SavesInput(torch.autograd.Function):
    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)


class LeakyReLU(_SavesInput):
    """a = z if z > 0 else 0.1 z.  Backward: ∂L/∂z = g · (1 if z > 0 else 0.1)."""

    @staticmethod
    def forward(z):
        return F.leaky_relu(z, 0.1)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return torch.where(z > 0, g, 0.1 * g)


class Softplus(_SavesInput):
    """a = log(1 + e^z).  Backward: ∂L/∂z = g · σ(z)."""

    @staticmethod
    def forward(z):
        return F.softplus(z)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * torch.sigmoid(z)


class GELU(_SavesInput):
    """a = z Φ(z).  Backward: ∂L/∂z = g · (Φ(z) + z φ(z))."""

    @staticmethod
    def forward(z):
        return F.gelu(z)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * (0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * _pdf(z))


def _pdf(z):
    return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


class MSE(_SavesInput):
    """L = mean((x − y)²).  Backward: ∂L/∂x = g · 2(x − y)/N, ∂L/∂y = −∂L/∂x."""

    @staticmethod
    def forward(x, y):
        return F.mse_loss(x, y)

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        grad = g * 2 * (x - y) / x.numel()
        return grad, -grad


class BCEWithLogits(_SavesInput):
    """L = mean(BCE(σ(z), y)).  Backward: ∂L/∂z = g · (σ(z) − y)/N, ∂L/∂y = g · (−z)/N."""

    @staticmethod
    def forward(z, y):
        return F.binary_cross_entropy_with_logits(z, y)

    @staticmethod
    def backward(ctx, g):
        z, y = ctx.saved_tensors
        return g * (torch.sigmoid(z) - y) / z.numel(), g * -z / z.numel()


class CrossEntropy(_SavesInput):
    """L = mean(logsumexp(z) − z_y), z (N, C).  Backward: ∂L/∂z = g · (softmax(z) − onehot)/N."""

    @staticmethod
    def forward(z, y):
        return F.cross_entropy(z, y)

    @staticmethod
    def backward(ctx, g):
        z, y = ctx.saved_tensors
        one_hot = torch.zeros_like(z).scatter(-1, y.unsqueeze(-1), 1.0)
        return g * (torch.softmax(z, -1) - one_hot) / z.shape[0], None


class Linear(_SavesInput):
    """z = x Wᵀ + b, x (B, n_in).  Backward: ∂L/∂x = g W, ∂L/∂W = gᵀ x, ∂L/∂b = Σ_B g."""

    @staticmethod
    def forward(x, w, b):
        return F.linear(x, w, b)

    @staticmethod
    def backward(ctx, g):
        x, w, _ = ctx.saved_tensors
        return g @ w, g.t() @ x, g.sum(0)


# ---- the planted bugs: one mistake each in backward ---------------------------------------


class SigmoidWrongSign(Sigmoid):
    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return -g * a * (1 - a)


class SigmoidUpstreamIgnored(Sigmoid):
    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return a * (1 - a)  # the local derivative alone


class SigmoidFloat32Grad(Sigmoid):
    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * a * (1 - a)).float()  # torch casts it back: only the raw output shows it


class SigmoidMulInPlace(Sigmoid):
    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g.mul_(a * (1 - a))  # right values, the caller's grad_output overwritten


class TanhMissingSquare(Tanh):
    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * (1 - a)


class ReLUPassesNegative(ReLU):
    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * (a >= 0).to(g.dtype)  # a = relu(z) ≥ 0 always: every entry passes


class ReLUWithoutClone(ReLU):
    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        grad = g  # the tutorial's grad_output.clone(), forgotten
        grad[a <= 0] = 0
        return grad


class LeakyReLUSlopesSwapped(LeakyReLU):
    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return torch.where(z > 0, 0.1 * g, g)


class SoftplusMirrored(Softplus):
    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * torch.sigmoid(-z)


class GELUMissingTerm(GELU):
    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * 0.5 * (1 + torch.erf(z / math.sqrt(2)))  # Φ(z) without z φ(z)


class SoftmaxDiagonalOnly(Softmax):
    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * a * (1 - a)  # the diagonal of the Jacobian: cross terms −a_i a_j dropped


class SoftmaxWrongAxis(Softmax):
    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return a * (g - (g * a).sum(0, keepdim=True))  # over the batch, not the classes


class MSEMissingTwo(MSE):
    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        grad = g * (x - y) / x.numel()
        return grad, -grad


class MSEGradsSwapped(MSE):
    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        grad = g * 2 * (x - y) / x.numel()
        return -grad, grad  # ∂L/∂y in x's slot and ∂L/∂x in y's


class BCEWrongSign(BCEWithLogits):
    @staticmethod
    def backward(ctx, g):
        z, y = ctx.saved_tensors
        return g * (y - torch.sigmoid(z)) / z.numel(), g * -z / z.numel()


class CrossEntropySumNotMean(CrossEntropy):
    @staticmethod
    def backward(ctx, g):
        z, y = ctx.saved_tensors
        one_hot = torch.zeros_like(z).scatter(-1, y.unsqueeze(-1), 1.0)
        return g * (torch.softmax(z, -1) - one_hot), None  # right only for N = 1


class CrossEntropyUnnormalized(CrossEntropy):
    @staticmethod
    def backward(ctx, g):
        z, y = ctx.saved_tensors
        one_hot = torch.zeros_like(z).scatter(-1, y.unsqueeze(-1), 1.0)
        return g * (z.exp() - one_hot) / z.shape[0], None  # e^z, not e^z / Σ e^z


class LinearBiasNotReduced(Linear):
    @staticmethod
    def backward(ctx, g):
        x, w, _ = ctx.saved_tensors
        return g @ w, g.t() @ x, g  # (B, n_out) for a (n_out,) bias; torch sums it quietly


class LinearSwappedTranspose(Linear):
    @staticmethod
    def backward(ctx, g):
        x, w, _ = ctx.saved_tensors
        return g @ w, x.t() @ g, g.sum(0)  # xᵀg, not gᵀx: the same shape when square


class LinearGradsSwapped(Linear):
    @staticmethod
    def backward(ctx, g):
        x, w, _ = ctx.saved_tensors
        return g.t() @ x, g @ w, g.sum(0)  # ∂L/∂W in x's slot, ∂L/∂x in W's


class LinearBiasFirstRow(Linear):
    @staticmethod
    def backward(ctx, g):
        x, w, _ = ctx.saved_tensors
        return g @ w, g.t() @ x, g[0]  # right shape, right only for B = 1


# ---- the table -----------------------------------------------------------------------------


def _square_linear():
    return _randn(3, 3), _randn(3, 3, seed=1), _randn(3, seed=2)


def _linear():
    return _randn(4, 3), _randn(2, 3, seed=1), _randn(2, seed=2)


def _bce():
    y = torch.rand(4, 3, generator=_gen(1), dtype=F64).requires_grad_()
    return _randn(4, 3), y


def _cross_entropy():
    return _randn(5, 4), torch.randint(0, 4, (5,), generator=_gen(1))


@dataclass(frozen=True)
class Plant:
    kind: str
    function: type[torch.autograd.Function]
    inputs: Callable[[], tuple]
    reference: Callable[..., torch.Tensor]
    finding: str | None = None  # a bug the values cannot show: what the report must say
    blamed: int | None = None  # the row that finding is pinned on (None: report.errors)


PLANTS: dict[str, Plant] = {
    "sigmoid wrong sign": Plant("sign", SigmoidWrongSign, lambda: (_randn(4, 5),), torch.sigmoid),
    "bce (y - sigma)": Plant("sign", BCEWrongSign, _bce, F.binary_cross_entropy_with_logits),
    "tanh 1 - a": Plant("factor", TanhMissingSquare, lambda: (_randn(4, 5),), torch.tanh),
    "mse missing 2": Plant("factor", MSEMissingTwo, lambda: (_randn(4, 3), _randn(4, 3, seed=1)),
                           F.mse_loss),
    "cross_entropy missing 1/N": Plant("batch size 1 only", CrossEntropySumNotMean,
                                       _cross_entropy, F.cross_entropy),
    "linear bias g[0]": Plant("batch size 1 only", LinearBiasFirstRow, _linear, F.linear),
    "relu passes z < 0": Plant("region", ReLUPassesNegative, lambda: (_away_from_kink(4, 5),),
                               torch.relu),
    "leaky_relu slopes swapped": Plant("region", LeakyReLUSlopesSwapped,
                                       lambda: (_away_from_kink(4, 5),),
                                       lambda z: F.leaky_relu(z, 0.1)),
    "softplus sigmoid(-z)": Plant("region", SoftplusMirrored, lambda: (_randn(4, 5),),
                                  F.softplus),
    "gelu without z phi(z)": Plant("missing term", GELUMissingTerm, lambda: (_randn(4, 5),),
                                   F.gelu),
    "softmax diagonal only": Plant("missing term", SoftmaxDiagonalOnly, lambda: (_randn(4, 5),),
                                   lambda z: torch.softmax(z, -1)),
    "cross_entropy exp unnormalized": Plant("normalization", CrossEntropyUnnormalized,
                                            _cross_entropy, F.cross_entropy),
    "softmax sum over batch": Plant("reduction axis", SoftmaxWrongAxis, lambda: (_randn(4, 4),),
                                    lambda z: torch.softmax(z, -1)),
    "linear bias not reduced": Plant("broadcast", LinearBiasNotReduced, _linear, F.linear,
                                     "shape (4, 2), expected (2,)", blamed=2),
    "linear x^T g": Plant("transpose", LinearSwappedTranspose, _square_linear, F.linear),
    "linear grads swapped": Plant("wrong input", LinearGradsSwapped, _square_linear, F.linear),
    "mse grads swapped": Plant("wrong input", MSEGradsSwapped,
                               lambda: (_randn(4, 3), _randn(4, 3, seed=1)), F.mse_loss),
    "sigmoid upstream ignored": Plant("upstream ignored", SigmoidUpstreamIgnored,
                                      lambda: (_randn(4, 5),), torch.sigmoid),
    "sigmoid float32 grad": Plant("dtype", SigmoidFloat32Grad, lambda: (_randn(4, 5),),
                                  torch.sigmoid, "dtype torch.float32, expected torch.float64",
                                  blamed=0),
    "sigmoid g.mul_": Plant("in place", SigmoidMulInPlace, lambda: (_randn(4, 5),),
                            torch.sigmoid, "grad_output 0 in place"),
    "relu without clone": Plant("in place", ReLUWithoutClone, lambda: (_away_from_kink(4, 5),),
                                torch.relu, "grad_output 0 in place"),
}


def _check(plant: Plant, function: type | None = None, with_reference: bool = True):
    fn = (function or plant.function).apply
    return check_function(fn, *plant.inputs(),
                          reference=plant.reference if with_reference else None)


def _assert_caught(plant: Plant, report, error: str) -> None:
    assert not report.ok and "FAILED" in str(report), str(report)
    if plant.finding is None:  # a value-level bug: the numbers themselves are off
        assert any(getattr(r, error) > ACCEPTABLE and r.grade == "wrong"
                   for r in report.inputs), str(report)
    elif plant.blamed is None:
        assert any(plant.finding in e for e in report.errors), str(report)
    else:
        row = report.inputs[plant.blamed]
        assert row.grade == "error" and any(plant.finding in p for p in row.problems), str(report)


def test_the_table_covers_every_kind_asked_for():
    kinds = {p.kind for p in PLANTS.values()}
    assert len(PLANTS) >= 15
    assert {"sign", "factor", "region", "broadcast", "transpose", "wrong input", "dtype",
            "in place"} <= kinds


@pytest.mark.parametrize("base", sorted({p.function.__base__ for p in PLANTS.values()},
                                        key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_the_unplanted_functions_pass(base):
    """Each bug's parent, with the right backward, on the same inputs: the plant is the only
    difference, so a failure below is the bug's and not the forward's or the inputs'."""
    plant = next(p for p in PLANTS.values() if p.function.__base__ is base)
    report = _check(plant, base)
    assert report.ok and report.grade == "good", str(report)
    assert report.worst_relative < 1e-7 and not report.warnings, str(report)


@pytest.mark.parametrize("name", list(PLANTS))
def test_planted_bug_is_caught_against_the_reference(name):
    plant = PLANTS[name]
    _assert_caught(plant, _check(plant), "reference_rel_error")


@pytest.mark.parametrize("name", list(PLANTS))
def test_planted_bug_is_caught_by_finite_differences_alone(name):
    plant = PLANTS[name]
    report = _check(plant, with_reference=False)
    assert all(r.reference_rel_error is None for r in report.inputs)
    _assert_caught(plant, report, "fd_rel_error")


def test_batch_size_one_bugs_hide_at_batch_size_one():
    """Why the sampled batches have B > 1: at B = 1 these two are right, and pass."""
    z, y = _randn(1, 4), torch.tensor([2])
    assert check_function(CrossEntropySumNotMean.apply, z, y, reference=F.cross_entropy).ok
    x, w, b = _randn(1, 3), _randn(2, 3, seed=1), _randn(2, seed=2)
    assert check_function(LinearBiasFirstRow.apply, x, w, b, reference=F.linear).ok


@pytest.mark.cuda
def test_gradient_on_the_wrong_device_is_caught():
    class SigmoidOnCPU(Sigmoid):
        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return (g * a * (1 - a)).cpu()

    z = _randn(4, 5).detach().cuda().requires_grad_()
    assert check_function(Sigmoid.apply, z, reference=torch.sigmoid).ok
    report = check_function(SigmoidOnCPU.apply, z, reference=torch.sigmoid)
    assert not report.ok and "device" in str(report), str(report)


# ---- the gradient audit, mid-training ------------------------------------------------------


def _leaky_slopes_swapped(z, negative_slope):
    one = torch.ones((), dtype=z.dtype, device=z.device)
    return torch.where(z > 0, one * negative_slope, one)


AUDIT_BUGS = {  # kind: (model.activation, helper in functional.activations, its wrong version)
    "sign": ("sigmoid", "sigmoid_derivative", lambda a: -a * (1 - a)),
    "factor": ("tanh", "tanh_derivative", lambda a: 1 - a),
    "region": ("relu", "relu_derivative", lambda a: (a >= 0).to(a.dtype)),
    "region (leaky)": ("leaky_relu", "leaky_relu_derivative", _leaky_slopes_swapped),
    "mirrored": ("softplus", "softplus_derivative", lambda z, beta, t: torch.sigmoid(-beta * z)),
    "missing term": ("gelu", "gelu_derivative",
                     lambda z: 0.5 * (1 + torch.erf(z / math.sqrt(2)))),
}
HIDDEN = {f"layers.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}  # model=mlp: [64, 64]


def _train_with_audit(tmp_path, activation: str) -> tuple[dict, GradientAudit]:
    cfg = compose(["data=moons", "model=mlp", f"model.activation={activation}",
                   "trainer.max_epochs=1", "trainer.max_steps=3", "callbacks.progress_bar=null",
                   "callbacks.gradient_audit.every_n_steps=1"], output_dir=tmp_path)
    record = train(cfg)
    audit = next(c for c in record["trainer"].callbacks if isinstance(c, GradientAudit))
    return record, audit


@pytest.mark.parametrize("kind", list(AUDIT_BUGS))
def test_audit_fails_a_planted_bug_naming_the_parameter(tmp_path, monkeypatch, kind):
    activation, helper, wrong = AUDIT_BUGS[kind]
    monkeypatch.setattr(A, helper, wrong)
    record, audit = _train_with_audit(tmp_path, activation)
    assert record["status"] == "failed", record["message"]
    m = re.search(r"gradient audit failed at step 0: .* of '([\w.]+)' differ", record["message"])
    assert m and m.group(1) in HIDDEN, record["message"]
    # only hidden layers are hit (the output layer has no activation); not always both: two
    # sign flips in a row cancel, so the sigmoid plant leaves layers.0's gradient right
    failed = {n for n, ratio in audit.last.items() if ratio > 1}  # × the rounding bound
    assert m.group(1) in failed and failed <= HIDDEN, audit.last
    assert record["steps"] == 0


@pytest.mark.parametrize("activation", sorted({a for a, _, _ in AUDIT_BUGS.values()}))
def test_audit_passes_the_right_backward(tmp_path, activation):
    record, audit = _train_with_audit(tmp_path, activation)
    assert record["status"] == "ok" and record["message"] is None, record["message"]
    assert record["steps"] == 3
    assert set(audit.last) == HIDDEN | {"layers.2.weight", "layers.2.bias"}  # it did compare
    assert max(audit.last.values()) <= 1, audit.last  # differences / their rounding bounds


# ---- randomized: correct ops never raise an alarm ------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(OPS))
def test_randomized_correct_ops_raise_no_alarm(name, dtype, device):
    spec, alarms, runs = OPS[name], [], 0
    for seed in range(5):
        gen = _gen(seed)
        for ndim in (1, 2, 3):
            if name == "cross_entropy" and ndim == 3:
                continue  # (N, C) or (C,) only
            shape = tuple(torch.randint(1, 6, (ndim,), generator=gen).tolist())  # sizes 1..5
            inputs = spec.sample(shape, dtype, device, gen)
            report = check_function(spec.manual, *inputs, reference=spec.reference, seed=seed)
            runs += 1
            if not report.ok or report.warnings:
                alarms.append(f"shape={shape} seed={seed}\n{report}")
    assert runs >= 10
    assert not alarms, f"{len(alarms)}/{runs} false alarms:\n" + "\n\n".join(alarms)


# ---- gaps this suite found, now closed ---------------------------------------------------


def test_audit_catches_a_forgotten_bias_gradient(tmp_path, monkeypatch):
    right = LinearFunction.backward

    def bias_forgotten(ctx, g):
        grad_input, grad_weight, _ = right(ctx, g)
        return grad_input, grad_weight, None

    monkeypatch.setattr(LinearFunction, "backward", staticmethod(bias_forgotten))
    record, _ = _train_with_audit(tmp_path, "tanh")
    assert record["status"] == "failed"


def test_float64_gradient_for_float32_input_is_caught():
    class SigmoidFloat64Grad(Sigmoid):
        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return (g * a * (1 - a)).double()

    z = torch.randn(4, 5, generator=_gen(0)).requires_grad_()
    assert not check_function(SigmoidFloat64Grad.apply, z, reference=torch.sigmoid).ok


def test_a_truncated_constant_is_caught():
    class GELUShortConstant(GELU):
        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            pdf = torch.exp(-0.5 * z * z) * 0.3989  # 1/√(2π) = 0.398942…
            return g * (0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * pdf)

    report = check_function(GELUShortConstant.apply, _randn(4, 5), reference=F.gelu)
    assert report.inputs[0].kinks == 0
    assert not report.ok, str(report)
