# pytest tests/test_ops_pooling.py
"""Max and average pooling beyond the OPS table's call: every argument against torch and finite
differences (float64), ties and overlapping windows, the pure backwards, bad arguments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuronlab import functional as NF
from neuronlab.functional.pooling import avg_pool_backward, max_pool_backward, max_pool_forward


def _t(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()


def _matches_torch(name, x, **kwargs):
    ours, theirs = getattr(NF, name), getattr(F, name)
    twin = x.detach().clone().requires_grad_()
    out, ref = ours(x, **kwargs), theirs(twin, **kwargs)
    if kwargs.get("return_indices"):
        assert torch.equal(out[1], ref[1])
        out, ref = out[0], ref[0]
    torch.testing.assert_close(out, ref)
    v = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    torch.testing.assert_close(torch.autograd.grad(out, x, v)[0],
                               torch.autograd.grad(ref, twin, v)[0])
    kwargs.pop("return_indices", None)
    fn = lambda t: ours(t, **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, (x,))


POOL1D = [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
          dict(kernel_size=3, stride=2, ceil_mode=True)]
MAX_ONLY = [dict(kernel_size=2, stride=1, dilation=3, padding=1, return_indices=True)]
AVG_ONLY = [dict(kernel_size=3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
            dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)]


@pytest.mark.parametrize("kwargs", POOL1D + MAX_ONLY, ids=str)
def test_max_pool1d_matches_torch(kwargs):
    _matches_torch("max_pool1d", _t(2, 3, 10), **kwargs)
    _matches_torch("max_pool1d", _t(3, 9), **kwargs)  # unbatched


@pytest.mark.parametrize("kwargs", POOL1D + AVG_ONLY, ids=str)
def test_avg_pool1d_matches_torch(kwargs):
    _matches_torch("avg_pool1d", _t(2, 3, 10), **kwargs)


POOL2D = [dict(kernel_size=(2, 3)), dict(kernel_size=3, stride=(1, 2), padding=1),
          dict(kernel_size=2, stride=2, ceil_mode=True)]


@pytest.mark.parametrize("kwargs", POOL2D + [dict(kernel_size=2, dilation=(1, 2),
                                                  return_indices=True)], ids=str)
def test_max_pool2d_matches_torch(kwargs):
    _matches_torch("max_pool2d", _t(2, 2, 7, 6), **kwargs)


@pytest.mark.parametrize("kwargs", POOL2D + AVG_ONLY + [
    dict(kernel_size=3, padding=1, divisor_override=5, stride=2)], ids=str)
def test_avg_pool2d_matches_torch(kwargs):
    _matches_torch("avg_pool2d", _t(2, 2, 7, 6), **kwargs)
    _matches_torch("avg_pool2d", _t(2, 5, 5), **kwargs)


def test_max_pool_routes_to_the_argmax_and_sums_overlaps():
    """Windows [0,1,2], [1,2,3], [2,3,4] of 0 1 5 2 0: the 5 wins all three, gets 3·g."""
    x = torch.tensor([[[0.0, 1.0, 5.0, 2.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    NF.max_pool1d(x, 3, stride=1).sum().backward()
    assert x.grad.tolist() == [[[0.0, 0.0, 3.0, 0.0, 0.0]]]


def test_max_pool_tie_and_nan_as_torch():
    x = torch.tensor([[[2.0, 2.0, float("nan"), 1.0, 3.0, 3.0]]], dtype=torch.float64)
    ours, twin = x.clone().requires_grad_(), x.clone().requires_grad_()
    NF.max_pool1d(ours, 2).sum().backward()
    F.max_pool1d(twin, 2).sum().backward()
    assert torch.equal(ours.grad, twin.grad)


def test_avg_pool_spreads_evenly():
    x = torch.zeros(1, 1, 4, dtype=torch.float64, requires_grad=True)
    NF.avg_pool1d(x, 2).backward(torch.tensor([[[1.0, 4.0]]], dtype=torch.float64))
    assert x.grad.tolist() == [[[0.5, 0.5, 2.0, 2.0]]]


def test_pure_backwards_are_the_chain_rule():
    x = _t(2, 3, 6, 5)
    out, idx = max_pool_forward(x, (2, 2), (1, 2), (1, 0), (1, 1), True)
    g = torch.randn(out.shape, dtype=torch.float64)
    torch.testing.assert_close(max_pool_backward(g, idx, tuple(x.shape), 2),
                               torch.autograd.grad(out, x, g)[0])
    out = F.avg_pool2d(x, 3, (2, 1), 1, True, False)
    g = torch.randn(out.shape, dtype=torch.float64)
    torch.testing.assert_close(
        avg_pool_backward(g, tuple(x.shape), (3, 3), (2, 1), (1, 1), False, None),
        torch.autograd.grad(out, x, g)[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_gradients_summed_in_float32(dtype):
    x = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(0)).to(dtype)
    for name, kwargs in [("max_pool1d", dict(kernel_size=3, stride=1)),
                         ("avg_pool1d", dict(kernel_size=3, stride=1, padding=1))]:
        ours, twin = x.clone().requires_grad_(), x.clone().requires_grad_()
        out = getattr(NF, name)(ours, **kwargs)
        assert out.dtype == dtype
        torch.testing.assert_close(out, getattr(F, name)(twin, **kwargs))
        out.sum().backward()
        getattr(F, name)(twin, **kwargs).sum().backward()
        assert ours.grad.dtype == dtype
        torch.testing.assert_close(ours.grad, twin.grad)


@pytest.mark.parametrize("call, match", [
    (lambda x: NF.max_pool1d(x, 2, padding=2), "padding=2 must be at most half"),
    (lambda x: NF.max_pool1d(x, 0), "kernel_size=0 must be an int ≥ 1"),
    (lambda x: NF.avg_pool1d(x, 2, stride=(1, 1)), "stride=\\(1, 1\\) must be an int ≥ 1"),
    (lambda x: NF.avg_pool2d(x[None], 2, divisor_override=0), "divisor_override=0"),
    (lambda x: NF.max_pool2d(x[0, 0], 2), "input must be \\(C, \\*S\\) or \\(N, C, \\*S\\)"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.zeros(1, 2, 8))
