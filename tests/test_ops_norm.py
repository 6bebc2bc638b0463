# pytest tests/test_ops_norm.py
"""layer_norm and batch_norm: the one-formula backward against its op-by-op witness (backprop
ninja's exercise, node by node), every argument against torch and finite differences, the
running statistics exactly as torch updates them, bad arguments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuronlab import functional as NF
from neuronlab.functional.norm import batch_norm_backward, normalize_backward, standardize

EPS = 1e-5


def _t(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


def op_by_op_batch_norm_backward(x, gain, dout):
    """The chain rule node by node through the forward written op by op (biased variance, as
    the normalization uses): every local derivative × its upstream gradient, summed."""
    n = x.shape[0]
    mean = x.sum(0, keepdim=True) / n
    diff = x - mean
    diff2 = diff**2
    var = diff2.sum(0, keepdim=True) / n
    var_inv = (var + EPS) ** -0.5
    raw = diff * var_inv
    # out = gain * raw + bias
    draw = gain * dout
    dgain = (raw * dout).sum(0)
    dbias = dout.sum(0)
    ddiff = var_inv * draw  # raw = diff * var_inv: through diff ...
    dvar_inv = (diff * draw).sum(0, keepdim=True)  # ... and through var_inv
    dvar = -0.5 * (var + EPS) ** -1.5 * dvar_inv
    ddiff2 = torch.ones_like(diff2) / n * dvar
    ddiff = ddiff + 2 * diff * ddiff2  # diff reaches the output twice: the sums add
    dx = ddiff.clone()
    dmean = -ddiff.sum(0, keepdim=True)
    dx = dx + torch.ones_like(x) / n * dmean
    return dx, dgain, dbias


def test_one_formula_equals_the_op_by_op_witness_and_autograd():
    x, gain, bias = _t(32, 7), _t(7, seed=1), _t(7, seed=2)
    dout = torch.randn(32, 7, dtype=torch.float64)
    witness = op_by_op_batch_norm_backward(x.detach(), gain.detach(), dout)
    ours = batch_norm_backward(dout, x.detach(), None, None, gain.detach(), True, EPS,
                               (True, True, True), True)
    out = F.batch_norm(x, None, None, gain, bias, training=True, eps=EPS)
    autograd = torch.autograd.grad(out, (x, gain, bias), dout)
    for a, b, c in zip(ours, witness, autograd, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)


def test_normalize_backward_is_the_formula_with_n():
    xhat, rstd, _, _ = standardize(_t(5, 4).detach(), [0], EPS)
    dh = torch.randn(5, 4, dtype=torch.float64)
    expected = rstd / 5 * (5 * dh - dh.sum(0) - xhat * (dh * xhat).sum(0))
    torch.testing.assert_close(normalize_backward(dh, xhat, rstd, [0]), expected)


def _matches_torch(ours, theirs, tensors, **kwargs):
    twin = [t.detach().clone().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor)
            else t for t in tensors]
    out, ref = ours(*tensors, **kwargs), theirs(*twin, **kwargs)
    torch.testing.assert_close(out, ref)
    wrt = [t for t in tensors if isinstance(t, torch.Tensor) and t.requires_grad]
    v = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    grads = torch.autograd.grad(out, wrt, v)
    ref_grads = torch.autograd.grad(
        ref, [t for t in twin if isinstance(t, torch.Tensor) and t.requires_grad], v)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
    return out


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 4, 5), (3, 5)], ids=str)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch(shape, training):
    c = shape[1]
    x, w, b = _t(*shape), _t(c, seed=1), _t(c, seed=2)
    rm, rv = torch.randn(c, dtype=torch.float64), torch.rand(c, dtype=torch.float64) + 0.5
    _matches_torch(NF.batch_norm, F.batch_norm, [x, rm.clone(), rv.clone(), w, b],
                   training=training, momentum=0.3, eps=1e-3)
    fn = lambda x, w, b: NF.batch_norm(x, rm.clone(), rv.clone(), w, b, training)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0])
def test_running_statistics_updated_in_place_as_torch(momentum):
    """Three batches: running mean and the *unbiased* running variance, bit for bit close."""
    rm, rv = torch.zeros(3), torch.ones(3)
    rm_t, rv_t = rm.clone(), rv.clone()
    for seed in range(3):
        x = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(seed)) * 3 + seed
        NF.batch_norm(x, rm, rv, training=True, momentum=momentum)
        F.batch_norm(x, rm_t, rv_t, training=True, momentum=momentum)
        torch.testing.assert_close(rm, rm_t)
        torch.testing.assert_close(rv, rv_t)
    assert not torch.equal(rv, torch.ones(3))


def test_cumulative_average_is_momentum_one_over_batches():
    """A module's momentum=None: torch's BatchNorm passes 1/num_batches_tracked; so do we."""
    module = torch.nn.BatchNorm1d(3, momentum=None, affine=False)
    rm, rv = torch.zeros(3), torch.ones(3)
    for k in range(1, 5):
        x = torch.randn(6, 3, generator=torch.Generator().manual_seed(k)) + k
        module(x)
        NF.batch_norm(x, rm, rv, training=True, momentum=1 / k)
    torch.testing.assert_close(rm, module.running_mean)
    torch.testing.assert_close(rv, module.running_var)


@pytest.mark.parametrize("normalized", [(5,), (4, 5)], ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(normalized, affine):
    x = _t(3, 4, 5)
    params = [_t(*normalized, seed=1), _t(*normalized, seed=2)] if affine else [None, None]
    _matches_torch(lambda x, w, b: NF.layer_norm(x, normalized, w, b, 1e-3),
                   lambda x, w, b: F.layer_norm(x, normalized, w, b, 1e-3), [x, *params])
    fn = lambda x, *p: NF.layer_norm(x, normalized, *(p or (None, None)), eps=1e-3)  # noqa: E731
    inputs = (x, *params) if affine else (x,)
    assert torch.autograd.gradcheck(fn, inputs, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_inputs_normalized_in_float32(dtype):
    x = _t(8, 16, dtype=dtype)
    w = _t(16, seed=1, dtype=torch.float32)
    twin_x, twin_w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    out = NF.layer_norm(x, (16,), w)
    ref = F.layer_norm(twin_x.double(), (16,), twin_w.double())
    assert out.dtype == dtype
    torch.testing.assert_close(out, ref.to(dtype))
    out.float().sum().backward()
    assert x.grad.dtype == dtype and w.grad.dtype == torch.float32


@pytest.mark.parametrize("call, error, match", [
    (lambda x: NF.batch_norm(x, None, None), ValueError, "must be given with training=False"),
    (lambda x: NF.batch_norm(x[:1], None, None, training=True), ValueError,
     "more than 1 value per channel"),
    (lambda x: NF.batch_norm(x, None, None, torch.ones(2), training=True), ValueError,
     "weight must have 3 entries"),
    (lambda x: NF.batch_norm(x, None, None, training=True, momentum=None), TypeError,
     "momentum must be a float"),
    (lambda x: NF.layer_norm(x, (4,)), ValueError, "normalized_shape=\\[4\\] must be"),
    (lambda x: NF.layer_norm(x, (3,), torch.ones(4)), ValueError, "weight must have shape"),
])
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call(torch.zeros(5, 3))
