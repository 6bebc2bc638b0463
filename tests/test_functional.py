# pytest tests/test_functional.py
"""The chain rule, op by op: every manual Function against torch, the oracle.

One table drives the tests: ``neuronlab.functional.OPS`` (name → manual, reference, sampler).
Finite differences run in float64; manual-vs-reference in float32 and float64, bfloat16 and
float16 for the activations, and under autocast, on every device of the ``device`` parameter
(see conftest). The arguments beyond the basics (class weights, ignore_index, label smoothing,
pos_weight, gelu's tanh form, inplace) are checked against torch here; PyTorch's own OpInfo
samples run in ``test_opinfo.py``.
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
from neuronlab.functional.conv import ConvFunction
from neuronlab.functional.dropout import DropoutFunction
from neuronlab.functional.embedding import EmbeddingFunction
from neuronlab.functional.linear import LinearFunction
from neuronlab.functional.losses import (
    BCEWithLogitsFunction,
    CrossEntropyFunction,
    MSELossFunction,
)
from neuronlab.functional.norm import BatchNormFunction, LayerNormFunction
from neuronlab.functional.pooling import AvgPoolFunction, MaxPoolFunction
from neuronlab.functional.samplers import LAYER_KINDS
from neuronlab.functional.softmax import LogSoftmaxFunction, SoftmaxFunction

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
    "gelu": (GELUFunction, ("none",)),
    "mse_loss": (MSELossFunction, ("mean",)),
    "binary_cross_entropy_with_logits": (BCEWithLogitsFunction, (None, None, "mean")),
    "cross_entropy": (CrossEntropyFunction, (None, "mean", -100, 0.0)),
    "softmax": (SoftmaxFunction, (-1,)),
    "conv1d": (ConvFunction, ((2,), ((1, 1),), (1,), 1)),
    "conv2d": (ConvFunction, ((2, 2), ((1, 1), (1, 1)), (1, 1), 1)),
    "max_pool1d": (MaxPoolFunction, ((3,), (2,), (1,), (1,), False)),
    "max_pool2d": (MaxPoolFunction, ((3, 3), (2, 2), (1, 1), (1, 1), False)),
    "avg_pool1d": (AvgPoolFunction, ((3,), (2,), (1,), True, False, None)),
    "avg_pool2d": (AvgPoolFunction, ((3, 3), (2, 2), (1, 1), True, False, None)),
    "layer_norm": (LayerNormFunction, ()),
    "batch_norm": (BatchNormFunction, ()),
    "dropout": (DropoutFunction, ()),
    "embedding": (EmbeddingFunction, ()),
    "log_softmax": (LogSoftmaxFunction, (-1,)),
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
        assert spec.kind in ("linear", "activation", "loss", *LAYER_KINDS)


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
    """Low precision: float32 inner math rounded once, so output and gradient stay in the dtype
    and match torch's to its own default tolerances for that dtype."""
    spec = OPS[name]
    (x,) = spec.sample(shape, dtype, device, _gen())
    (twin,) = _clone((x,))
    out = spec.manual(x)
    ref = spec.reference(twin)
    assert out.dtype == dtype
    torch.testing.assert_close(out, ref)
    upstream = torch.randn(out.shape, generator=_gen(1)).to(dtype=dtype, device=device)
    out.backward(upstream)
    ref.backward(upstream)
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad, twin.grad)


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


def test_cross_entropy_bad_arguments():
    z, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="weight must have shape \\(3,\\)"):
        NF.cross_entropy(z, y, weight=torch.ones(4))
    with pytest.raises(ValueError, match="weight requires grad"):
        NF.cross_entropy(z, y, weight=torch.ones(3, requires_grad=True))
    with pytest.raises(ValueError, match="label_smoothing"):
        NF.cross_entropy(z, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match="ignore_index=1 applies to class-index targets"):
        NF.cross_entropy(z, torch.rand(4, 3), ignore_index=1)
    with pytest.raises(ValueError, match="pos_weight of shape \\(2,\\)"):
        NF.binary_cross_entropy_with_logits(z, z, pos_weight=torch.ones(2))


def test_gelu_unknown_approximation_rejected():
    with pytest.raises(ValueError, match="approximate='erf'.*none, tanh"):
        NF.gelu(torch.zeros(3), approximate="erf")


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

    # dropout draws its mask inside: the same mask for every sample, as in the loop
    randomness = "same" if spec.kind == "dropout" else "error"
    per_sample = torch.func.vmap(torch.func.grad(f, argnums=argnums),
                                 randomness=randomness)(*stacked)
    for k, sample in enumerate(samples):
        twin = _clone(sample)
        expected = torch.autograd.grad(
            spec.reference(*twin).sum(), [twin[i] for i in argnums]
        )
        for got, want in zip(per_sample, expected, strict=True):
            torch.testing.assert_close(got[k], want)


# ---- mixed precision: autocast's dtype per op, float32 inner math, rounded once -------------

AUTOCAST_DTYPES = {"cpu": [torch.bfloat16], "cuda": [torch.bfloat16, torch.float16]}


@pytest.mark.parametrize("name", list(OPS))
def test_autocast_computes_where_torch_does(name, device):
    """Under autocast each op returns the dtype its torch twin returns (linear low precision,
    losses float32, activations their input's), and each input gets its gradient in its own
    dtype (float32 here), close to torch's."""
    spec = OPS[name]
    for dtype in AUTOCAST_DTYPES[device]:
        inputs = spec.sample((4, 3), torch.float32, device, _gen())
        twin = _clone(inputs)
        with torch.autocast(device, dtype=dtype):
            out = spec.manual(*inputs)
            ref = spec.reference(*twin)
        assert out.dtype == ref.dtype, f"{name} under {dtype} autocast"
        torch.testing.assert_close(out, ref)
        upstream = torch.randn(out.shape, generator=_gen(1)).to(dtype=out.dtype, device=device)
        out.backward(upstream)
        ref.backward(upstream)
        for i in _differentiable(inputs):
            assert inputs[i].grad.dtype == torch.float32
            torch.testing.assert_close(inputs[i].grad.to(out.dtype), twin[i].grad.to(out.dtype))


def test_mlp_step_under_autocast_matches_autograd(device):
    """x → linear → gelu → linear → cross-entropy under autocast: the hand-written backward
    runs (bf16 GEMMs, float32 weights) and lands where torch's autograd lands."""
    for dtype in AUTOCAST_DTYPES[device]:
        g = _gen()
        x = torch.randn(16, 8, generator=g).to(device)
        y = torch.randint(0, 4, (16,), generator=g).to(device)
        params = [torch.randn(s, generator=g).mul(0.5).to(device).requires_grad_()
                  for s in [(6, 8), (6,), (4, 6), (4,)]]
        twin = _clone(params)

        def loss(ops, x, y, w1, b1, w2, b2):
            linear, gelu, ce = ops
            return ce(linear(gelu(linear(x, w1, b1)), w2, b2), y)

        with torch.autocast(device, dtype=dtype):
            ours = loss((NF.linear, NF.gelu, NF.cross_entropy), x, y, *params)
            ref = loss((F.linear, F.gelu, F.cross_entropy), x, y, *twin)
        assert ours.dtype == torch.float32
        ours.backward()
        ref.backward()
        torch.testing.assert_close(ours, ref, rtol=1e-2, atol=1e-3)
        for p, t in zip(params, twin, strict=True):
            assert p.grad.dtype == torch.float32
            torch.testing.assert_close(p.grad, t.grad, rtol=2e-2, atol=2e-2)


def test_compiled_under_autocast():
    """torch.compile(fullgraph=True) traces the autocast casts and the Functions."""
    x, w, b = (t.detach() for t in OPS["linear"].sample((5, 4), torch.float32, "cpu", _gen()))
    y = torch.tensor([0, 1, 2, 0, 1])

    def step(x, w, b):
        return NF.cross_entropy(NF.tanh(NF.linear(x, w, b)), y)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(compiled(x, w, b), step(x, w, b))


def test_half_precision_rounds_once():
    """The examples of issue 10: each once off because intermediates were rounded to bf16."""
    bf16 = torch.bfloat16
    x = torch.tensor([-3.09375], dtype=bf16)
    torch.testing.assert_close(NF.gelu(x), F.gelu(x))  # was −0.00604, torch −0.00305
    x = torch.tensor([-1.703125], dtype=bf16)
    torch.testing.assert_close(NF.softplus(x, 3, 0.2), F.softplus(x, 3, 0.2))
    x, w, b = (t.detach().to(bf16) for t in OPS["linear"].sample((2, 3, 4), torch.float64,
                                                                  "cpu", _gen()))
    torch.testing.assert_close(NF.linear(x, w, b), F.linear(x, w, b))  # N-D: bias fused too
    z = torch.randn(50, generator=_gen()).to(bf16)
    y = torch.rand(50, generator=_gen(1)).to(bf16)
    truth = F.binary_cross_entropy_with_logits(z.double(), y.double()).to(bf16)
    assert NF.binary_cross_entropy_with_logits(z, y) == truth  # rounded once: the nearest
    z = torch.tensor([8e4, -8e4, 8e4])
    y = torch.tensor([0.99, 0.3, 0.999999])
    truth = F.binary_cross_entropy_with_logits(z.double(), y.double())
    rel = (NF.binary_cross_entropy_with_logits(z, y).double() - truth).abs() / truth
    assert rel < 2e-7  # (1 − y)·z, not z − z·y: no cancellation at huge logits


# ---- NaN propagates as in torch -----------------------------------------------------------


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_nan_and_inf_as_torch(name):
    """Outputs and gradients at NaN and ±inf are torch's: relu passes the gradient at NaN
    (torch.sign(NaN) = 0 made it a silent zero)."""
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 0.5],
                     dtype=torch.float64, requires_grad=True)
    (twin,) = _clone((x,))
    out, ref = OPS[name].manual(x), OPS[name].reference(twin)
    torch.testing.assert_close(out, ref, equal_nan=True)
    out.backward(torch.ones_like(out))
    ref.backward(torch.ones_like(ref))
    torch.testing.assert_close(x.grad, twin.grad, equal_nan=True)
    if name == "relu":
        assert x.grad[0] == 1.0


# ---- parity with torch.nn.functional: arguments and their gradients ------------------------


def _matches_torch(manual, reference, inputs, **kwargs):
    """Same value and same gradients as torch (float64), plus gradcheck and gradgradcheck."""
    twin = _clone(inputs)
    out, ref = manual(*inputs, **kwargs), reference(*twin, **kwargs)
    torch.testing.assert_close(out, ref)
    upstream = torch.randn(out.shape, generator=_gen(1), dtype=torch.float64)
    idx = _differentiable(inputs)
    grads = torch.autograd.grad(out, [inputs[i] for i in idx], upstream)
    ref_grads = torch.autograd.grad(ref, [twin[i] for i in idx], upstream)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
    fn = lambda *a: manual(*a, **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, _clone(inputs))
    assert torch.autograd.gradgradcheck(fn, _clone(inputs))


CE_CASES = {
    "weight": dict(weight=torch.tensor([0.2, 1.0, 3.0, 0.5], dtype=torch.float64)),
    "ignore_index": dict(ignore_index=2),
    "smoothing": dict(label_smoothing=0.3),
    "all": dict(weight=torch.tensor([0.2, 1.0, 3.0, 0.5], dtype=torch.float64),
                ignore_index=1, label_smoothing=0.2),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(4,), (5, 4), (3, 4, 2)], ids=str)
@pytest.mark.parametrize("case", list(CE_CASES))
def test_cross_entropy_arguments_match_torch(case, shape, reduction):
    """Class weights, ignore_index and label smoothing (classes along dim 1, K-dim too)."""
    z = torch.randn(shape, generator=_gen(), dtype=torch.float64, requires_grad=True)
    target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    y = torch.randint(0, 4, target_shape, generator=_gen(2))
    _matches_torch(NF.cross_entropy, F.cross_entropy, (z, y), reduction=reduction,
                   **CE_CASES[case])


def test_cross_entropy_default_ignore_index():
    """A target of -100 adds nothing (torch's default ignore_index), not an IndexError."""
    z = torch.randn(5, 3, generator=_gen(), dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, -100, 2, -100, 1])
    _matches_torch(NF.cross_entropy, F.cross_entropy, (z, y))
    _matches_torch(NF.cross_entropy, F.cross_entropy, (z, y),
                   weight=CE_CASES["weight"]["weight"][:3])


@pytest.mark.parametrize("kwargs", [{}, dict(label_smoothing=0.1), CE_CASES["weight"],
                                    dict(reduction="none", **CE_CASES["weight"])],
                         ids=["plain", "smoothing", "weight", "weight-none"])
def test_cross_entropy_probability_targets(kwargs):
    z = torch.randn(5, 4, 2, generator=_gen(), dtype=torch.float64, requires_grad=True)
    t = torch.softmax(torch.randn(5, 4, 2, generator=_gen(1), dtype=torch.float64), 1)
    _matches_torch(NF.cross_entropy, F.cross_entropy, (z, t.requires_grad_()), **kwargs)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weights", ["weight", "pos_weight", "both"])
def test_bce_weight_and_pos_weight_match_torch(weights, reduction):
    z, y = OPS["binary_cross_entropy_with_logits"].sample((5, 3), torch.float64, "cpu", _gen())
    kwargs = {}
    if weights in ("weight", "both"):
        kwargs["weight"] = torch.rand(5, 1, generator=_gen(3), dtype=torch.float64)
    if weights in ("pos_weight", "both"):
        kwargs["pos_weight"] = torch.rand(3, generator=_gen(4), dtype=torch.float64) * 3
    _matches_torch(NF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits,
                   (z, y), reduction=reduction, **kwargs)


def test_gelu_tanh_approximation_matches_torch():
    x = torch.linspace(-6, 6, 41, dtype=torch.float64).requires_grad_()
    _matches_torch(NF.gelu, F.gelu, (x,), approximate="tanh")


@pytest.mark.parametrize("name, kwargs", [("relu", {}), ("leaky_relu", dict(negative_slope=0.2))])
def test_inplace_activations_match_torch(name, kwargs):
    """inplace=True writes the result into the input and keeps the gradient, as torch."""
    w = torch.randn(6, generator=_gen(), dtype=torch.float64, requires_grad=True)
    (twin,) = _clone((w,))
    x, x_ref = w * 1.0, twin * 1.0  # non-leaves: in place is allowed on them
    out = getattr(NF, name)(x, inplace=True, **kwargs)
    ref = getattr(F, name)(x_ref, inplace=True, **kwargs)
    assert out is x
    torch.testing.assert_close(x, x_ref)
    (out * out).sum().backward()
    (ref * ref).sum().backward()
    torch.testing.assert_close(w.grad, twin.grad)


def test_positional_misuse_raises_naming_the_argument():
    """Positions are torch's: a third positional is size_average (mse) or weight (losses with
    weights); misused, it raises, naming what it landed on, never 'reduction=tensor(...)'."""
    x, y = torch.zeros(4, 3), torch.zeros(4, 3)
    with pytest.raises(TypeError, match="size_average='sum'.*reduction="):
        NF.mse_loss(x, y, "sum")  # torch reads this as a *mean*
    with pytest.raises(TypeError, match="reduce=False"):
        NF.mse_loss(x, y, reduce=False)
    with pytest.raises(TypeError, match="weight must be a Tensor or None, got 'sum'"):
        NF.cross_entropy(x, torch.zeros(4, dtype=torch.long), "sum")
    with pytest.raises(TypeError, match="reduction must be a str.*got a Tensor of shape") as e:
        NF.binary_cross_entropy_with_logits(x, y, None, None, None, torch.ones(3))
    assert "tensor(" not in str(e.value)
    w = torch.tensor([1.0, 2.0, 0.5])
    z, t = torch.randn(4, 3, generator=_gen()), torch.tensor([0, 1, 2, 1])
    torch.testing.assert_close(NF.cross_entropy(z, t, w), F.cross_entropy(z, t, w))


def test_cross_entropy_with_every_target_ignored_has_torchs_zero_gradient():
    """'mean' over no targets: the loss is 0/0 = NaN in both; the gradient is 0 in torch (and
    so in per-sample gradients of such a sample), not NaN."""
    from neuronlab.functional import cross_entropy

    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    twin = z.detach().clone().requires_grad_()
    y = torch.full((4,), -100)
    ours, ref = cross_entropy(z, y), torch.nn.functional.cross_entropy(twin, y)
    assert torch.isnan(ours) and torch.isnan(ref)
    ours.backward()
    ref.backward()
    assert torch.equal(z.grad, twin.grad) and not z.grad.any()
