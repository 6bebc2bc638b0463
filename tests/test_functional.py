# pytest tests/test_functional.py
"""The chain rule, op by op: every manual Function against torch, the oracle.

One table drives the tests: ``neuronlab.functional.OPS`` (name → manual, reference, sampler).
Finite differences run in float64; manual-vs-reference in float32 and float64 (bfloat16 outputs
for the activations, loosely), on every device of the ``device`` parameter (see conftest).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuronlab import functional as NF
from neuronlab.functional import OPS
from neuronlab.functional.activations import (
    GELUFunction,
    LeakyReLUFunction,
    ReLUFunction,
    SigmoidFunction,
    SoftplusFunction,
    TanhFunction,
)
from neuronlab.functional.linear import LinearFunction
from neuronlab.functional.losses import (
    BCEWithLogitsFunction,
    CrossEntropyFunction,
    MSELossFunction,
)

SHAPES = [(5,), (4, 3), (2, 3, 4)]
LOSS_NAMES = ["mse_loss", "binary_cross_entropy_with_logits", "cross_entropy"]
ACTIVATION_NAMES = [name for name, spec in OPS.items() if spec.kind == "activation"]

# Each op's Function and the non-tensor arguments its public function passes after the tensors.
FUNCTIONS: dict[str, tuple[type[torch.autograd.Function], tuple]] = {
    "linear": (LinearFunction, ()),
    "sigmoid": (SigmoidFunction, ()),
    "tanh": (TanhFunction, ()),
    "relu": (ReLUFunction, ()),
    "leaky_relu": (LeakyReLUFunction, (0.01,)),
    "softplus": (SoftplusFunction, (1.0, 20.0)),
    "gelu": (GELUFunction, ()),
    "mse_loss": (MSELossFunction, ("mean",)),
    "binary_cross_entropy_with_logits": (BCEWithLogitsFunction, ("mean",)),
    "cross_entropy": (CrossEntropyFunction, ("mean",)),
}


def _shapes(name: str) -> list[tuple[int, ...]]:
    """The shapes an op allows: cross_entropy takes (C,) or (N, C) only."""
    return [s for s in SHAPES if len(s) <= 2] if name == "cross_entropy" else SHAPES


CASES = [pytest.param(name, shape, id=f"{name}-{shape}") for name in OPS for shape in _shapes(name)]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _differentiable(inputs) -> list[int]:
    """Indices of the inputs that take a gradient (floating and requiring grad)."""
    return [
        i for i, t in enumerate(inputs)
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad
    ]


def _clone(inputs) -> tuple:
    """Fresh leaves with the same values and requires_grad flags."""
    return tuple(
        t.detach().clone().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor) else t
        for t in inputs
    )


def test_table_is_complete():
    assert set(FUNCTIONS) == set(OPS)
    for spec in OPS.values():
        assert spec.kind in ("linear", "activation", "loss")


# ---- finite differences (float64) ---------------------------------------------------------


@pytest.mark.parametrize("name, shape", CASES)
def test_gradcheck(name, shape):
    spec = OPS[name]
    inputs = spec.sample(shape, torch.float64, "cpu", _gen())
    assert torch.autograd.gradcheck(spec.manual, inputs, check_batched_grad=True)


@pytest.mark.parametrize("name, shape", CASES)
def test_gradgradcheck(name, shape):
    spec = OPS[name]
    inputs = spec.sample(shape, torch.float64, "cpu", _gen())
    assert torch.autograd.gradgradcheck(spec.manual, inputs, check_batched_grad=True)


# ---- manual == reference ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name, shape", CASES)
def test_manual_matches_reference(name, shape, dtype, device):
    spec = OPS[name]
    inputs = spec.sample(shape, dtype, device, _gen())
    twin = _clone(inputs)
    out = spec.manual(*inputs)
    ref = spec.reference(*twin)
    assert out.dtype == dtype and out.device.type == device
    torch.testing.assert_close(out, ref)

    upstream = torch.randn(out.shape, generator=_gen(1), dtype=torch.float64).to(dtype=dtype,
                                                                                device=device)
    out.backward(upstream)
    ref.backward(upstream)
    idx = _differentiable(inputs)
    assert idx, "every op has at least one differentiable input"
    for i in idx:
        assert inputs[i].grad is not None, f"{name}: input {i} got no gradient"
        assert inputs[i].grad.shape == inputs[i].shape
        torch.testing.assert_close(inputs[i].grad, twin[i].grad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_half_precision_close(name, shape, dtype, device):
    """Low precision: the output (and the gradient) stay in the dtype and close to torch's."""
    spec = OPS[name]
    (x,) = spec.sample(shape, dtype, device, _gen())
    (twin,) = _clone((x,))
    out = spec.manual(x)
    ref = spec.reference(twin)
    assert out.dtype == dtype
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)
    out.sum().backward()
    ref.sum().backward()
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad, twin.grad, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_at_the_kink(name):
    """At exactly z = 0 (and around it) the manual derivative is the one torch uses."""
    x = torch.tensor([-1.0, -1e-3, 0.0, 0.0, 1e-3, 1.0], dtype=torch.float64, requires_grad=True)
    (twin,) = _clone((x,))
    OPS[name].manual(x).sum().backward()
    OPS[name].reference(twin).sum().backward()
    torch.testing.assert_close(x.grad, twin.grad)


@pytest.mark.parametrize(
    "manual, reference, kwargs",
    [
        (NF.leaky_relu, F.leaky_relu, dict(negative_slope=0.2)),
        (NF.softplus, F.softplus, dict(beta=2.0, threshold=5.0)),
        (NF.softplus, F.softplus, dict(beta=0.5, threshold=1.0)),
    ],
    ids=["leaky_relu-0.2", "softplus-2-5", "softplus-0.5-1"],
)
def test_activation_parameters(manual, reference, kwargs):
    x = torch.linspace(-12, 12, 49, dtype=torch.float64).requires_grad_()
    (twin,) = _clone((x,))
    torch.testing.assert_close(manual(x, **kwargs), reference(twin, **kwargs))
    manual(x, **kwargs).sum().backward()
    reference(twin, **kwargs).sum().backward()
    torch.testing.assert_close(x.grad, twin.grad)
    fn = lambda t: manual(t, **kwargs)  # noqa: E731
    y = torch.randn(7, generator=_gen(), dtype=torch.float64).mul(4).requires_grad_()
    assert torch.autograd.gradcheck(fn, (y,), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, (y,), check_batched_grad=True)


# ---- shapes of gradients, and None where none is needed -----------------------------------


def test_linear_gradients_reduce_broadcast_dims():
    x, w, b = OPS["linear"].sample((2, 3, 4), torch.float64, "cpu", _gen())
    out = NF.linear(x, w, b)
    assert out.shape == (2, 3, 3)
    out.sum().backward()
    assert x.grad.shape == (2, 3, 4)
    assert w.grad.shape == (3, 4)
    assert b.grad.shape == (3,)
    torch.testing.assert_close(b.grad, torch.full((3,), 6.0, dtype=torch.float64))


def test_linear_without_bias():
    x, w, _ = OPS["linear"].sample((4, 3), torch.float64, "cpu", _gen())
    out = NF.linear(x, w)
    torch.testing.assert_close(out, F.linear(x, w))
    assert torch.autograd.gradcheck(NF.linear, (x, w, None), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(NF.linear, (x, w, None), check_batched_grad=True)


@pytest.mark.parametrize("name", list(OPS))
def test_only_the_inputs_that_need_a_gradient_get_one(name):
    """For each differentiable input alone: it gets the reference gradient, the others none."""
    spec = OPS[name]
    base = spec.sample((4, 3), torch.float64, "cpu", _gen())
    for i in _differentiable(base):
        inputs = tuple(
            t.detach().clone().requires_grad_(j == i) if isinstance(t, torch.Tensor) else t
            for j, t in enumerate(base)
        )
        twin = _clone(inputs)
        spec.manual(*inputs).sum().backward()
        spec.reference(*twin).sum().backward()
        for j, t in enumerate(inputs):
            if j == i:
                torch.testing.assert_close(t.grad, twin[j].grad)
            else:
                assert t.grad is None, f"{name}: input {j} got a gradient it did not ask for"


def test_linear_weight_only_and_autograd_grad_allow_unused():
    x, w, b = OPS["linear"].sample((5, 4), torch.float64, "cpu", _gen())
    x, b = x.detach(), b.detach()  # only the weight asks for a gradient
    NF.linear(x, w, b).sum().backward()
    assert x.grad is None and b.grad is None
    torch.testing.assert_close(w.grad, torch.ones(5, 3, dtype=torch.float64).t() @ x)

    # torch.autograd.grad over specific inputs: the bias is not asked for, the input unused
    x2, w2, b2 = OPS["linear"].sample((5, 4), torch.float64, "cpu", _gen())
    other = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    gw, gother = torch.autograd.grad(NF.linear(x2, w2, b2).sum(), (w2, other), allow_unused=True)
    assert gother is None
    torch.testing.assert_close(gw, torch.ones(5, 3, dtype=torch.float64).t() @ x2.detach())


def test_cross_entropy_target_never_gets_a_gradient():
    z, y = OPS["cross_entropy"].sample((4, 3), torch.float64, "cpu", _gen())
    assert not y.requires_grad  # class indices cannot require grad
    NF.cross_entropy(z, y).backward()
    assert y.grad is None and z.grad is not None


class _Ctx:
    """A stand-in for autograd's ctx, to call a Function's backward with chosen needs."""

    def __init__(self, needs_input_grad: tuple[bool, ...]) -> None:
        self.needs_input_grad = needs_input_grad

    def save_for_backward(self, *tensors) -> None:
        self.saved_tensors = tensors


MULTI_INPUT_OPS = [name for name in OPS if name == "linear" or OPS[name].kind == "loss"]


@pytest.mark.parametrize("name", MULTI_INPUT_OPS)
def test_backward_respects_needs_input_grad(name):
    """Called with ctx.needs_input_grad, backward computes only the slots asked for."""
    function, extra = FUNCTIONS[name]
    tensors = tuple(t.detach() for t in OPS[name].sample((4, 3), torch.float64, "cpu", _gen()))
    inputs = tensors + extra
    out = function.forward(*inputs)
    upstream = torch.ones_like(out)
    for i in range(len(inputs)):
        needs = tuple(j == i for j in range(len(inputs)))
        ctx = _Ctx(needs)
        function.setup_context(ctx, inputs, out)
        grads = function.backward(ctx, upstream)
        assert len(grads) == len(inputs)
        for j, g in enumerate(grads):
            is_float = isinstance(inputs[j], torch.Tensor) and inputs[j].is_floating_point()
            wanted = j == i and is_float
            assert (g is not None) == wanted, f"{name}: slot {j} with needs_input_grad={needs}"
    ctx = _Ctx((False,) * len(inputs))
    function.setup_context(ctx, inputs, out)
    assert all(g is None for g in function.backward(ctx, upstream))


# ---- extreme values stay finite -----------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_cross_entropy_extreme_logits(dtype, device):
    z = torch.tensor(
        [[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4], [-1e4, 0.0, 1e4]],
        dtype=dtype, device=device,
    )
    y = torch.tensor([1, 2, 0, 0], device=device)
    for reduction in ("mean", "sum", "none"):
        zm, zr = z.clone().requires_grad_(), z.clone().requires_grad_()
        loss = NF.cross_entropy(zm, y, reduction=reduction)
        ref = F.cross_entropy(zr, y, reduction=reduction)
        assert torch.isfinite(loss).all()
        torch.testing.assert_close(loss, ref)
        loss.sum().backward()
        ref.sum().backward()
        assert torch.isfinite(zm.grad).all()
        torch.testing.assert_close(zm.grad, zr.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_bce_with_logits_extreme_logits(dtype, device):
    z = torch.tensor([1e4, -1e4, 1e4, -1e4, 1e4, 0.0], dtype=dtype, device=device)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 1.0], dtype=dtype, device=device)
    zm, zr = z.clone().requires_grad_(), z.clone().requires_grad_()
    loss = NF.binary_cross_entropy_with_logits(zm, y)
    ref = F.binary_cross_entropy_with_logits(zr, y)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    ref.backward()
    assert torch.isfinite(zm.grad).all()
    torch.testing.assert_close(zm.grad, zr.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_softplus_large_input(dtype, device):
    x = torch.tensor([1e4, 100.0, 30.0, 19.9, -100.0, -1e4], dtype=dtype, device=device)
    xm, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = NF.softplus(xm)
    ref = F.softplus(xr)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    ref.sum().backward()
    assert torch.isfinite(xm.grad).all()
    torch.testing.assert_close(xm.grad, xr.grad)


# ---- reductions ---------------------------------------------------------------------------


REDUCTION_CASES = [
    pytest.param(name, shape, id=f"{name}-{shape}")
    for name in LOSS_NAMES
    for shape in _shapes(name)
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, shape", REDUCTION_CASES)
def test_loss_reductions_match_torch(name, shape, reduction):
    spec = OPS[name]
    inputs = spec.sample(shape, torch.float64, "cpu", _gen())
    twin = _clone(inputs)
    out = spec.manual(*inputs, reduction=reduction)
    ref = spec.reference(*twin, reduction=reduction)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref)
    upstream = torch.randn(out.shape, generator=_gen(1), dtype=torch.float64)
    out.backward(upstream)
    ref.backward(upstream)
    for i in _differentiable(inputs):
        torch.testing.assert_close(inputs[i].grad, twin[i].grad)
    # and finite differences / double backward with this reduction
    fn = lambda *a: spec.manual(*a, reduction=reduction)  # noqa: E731
    assert torch.autograd.gradcheck(fn, _clone(inputs), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, _clone(inputs), check_batched_grad=True)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_bad_reduction(name):
    spec = OPS[name]
    inputs = spec.sample((4, 3), torch.float64, "cpu", _gen())
    with pytest.raises(ValueError, match="reduction='avg'.*mean, sum, none"):
        spec.manual(*inputs, reduction="avg")


# ---- bad input ----------------------------------------------------------------------------


def test_linear_bad_shapes():
    x = torch.zeros(5, 4)
    with pytest.raises(ValueError, match="weight"):
        NF.linear(x, torch.zeros(4))  # weight 1-D
    with pytest.raises(ValueError, match="input.*n_in=3"):
        NF.linear(x, torch.zeros(2, 3))  # mismatched n_in
    with pytest.raises(ValueError, match="bias"):
        NF.linear(x, torch.zeros(2, 4), torch.zeros(3))  # bias does not match n_out
    with pytest.raises(ValueError, match="bias"):
        NF.linear(x, torch.zeros(2, 4), torch.zeros(1, 2))  # bias not 1-D


def test_cross_entropy_bad_targets():
    z = torch.zeros(4, 3)
    with pytest.raises(TypeError, match="target"):
        NF.cross_entropy(z, torch.zeros(4))  # float targets
    with pytest.raises(ValueError, match="target"):
        NF.cross_entropy(z, torch.zeros(3, dtype=torch.long))  # wrong batch size
    with pytest.raises(ValueError, match="input"):
        NF.cross_entropy(torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.long))


def test_mse_and_bce_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        NF.mse_loss(torch.zeros(4, 3), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="same shape"):
        NF.binary_cross_entropy_with_logits(torch.zeros(4), torch.zeros(4, 1))


def test_gelu_tanh_approximation_rejected():
    with pytest.raises(ValueError, match="approximate='tanh'"):
        NF.gelu(torch.zeros(3), approximate="tanh")


def test_softplus_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        NF.softplus(torch.zeros(3), beta=0.0)


# ---- per-sample gradients: vmap(grad(f)) through the manual Functions ---------------------


@pytest.mark.parametrize("shape", [(5,), (4, 3)], ids=str)
@pytest.mark.parametrize("name", list(OPS))
def test_vmap_grad_per_sample(name, shape):
    """vmap(grad(f)) over a batch of samples (every tensor input batched) == a Python loop."""
    spec = OPS[name]
    batch = 3
    samples = [spec.sample(shape, torch.float64, "cpu", _gen(k)) for k in range(batch)]
    argnums = tuple(_differentiable(samples[0]))
    stacked = tuple(torch.stack([s[i].detach() for s in samples]) for i in range(len(samples[0])))

    def f(*inputs):
        return spec.manual(*inputs).sum()

    per_sample = torch.func.vmap(torch.func.grad(f, argnums=argnums))(*stacked)
    for k, sample in enumerate(samples):
        twin = _clone(sample)
        expected = torch.autograd.grad(
            spec.reference(*twin).sum(), [twin[i] for i in argnums]
        )
        for got, want in zip(per_sample, expected, strict=True):
            torch.testing.assert_close(got[k], want)
