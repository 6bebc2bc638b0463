# pytest tests/test_ops_conv.py
"""conv1d/conv2d beyond the OPS table's call: every argument against torch and finite
differences (float64), asymmetric 'same' padding, groups, the pure backward, bad arguments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuronlab import functional as NF
from neuronlab.functional.conv import conv_backward, conv_forward


def _t(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


def _matches_torch(ours, theirs, inputs, **kwargs):
    twin = [t.detach().clone().requires_grad_() if t is not None else None for t in inputs]
    out, ref = ours(*inputs, **kwargs), theirs(*twin, **kwargs)
    torch.testing.assert_close(out, ref)
    v = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    wrt = [t for t in inputs if t is not None]
    grads = torch.autograd.grad(out, wrt, v)
    ref_grads = torch.autograd.grad(ref, [t for t in twin if t is not None], v)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
    fn = lambda *a: ours(*a, **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(inputs), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, tuple(inputs))


CONV1D = [
    dict(stride=3, padding=2, dilation=2),
    dict(padding="same", dilation=3),  # total 6: 3 each side
    dict(padding="same"),  # kernel 4 below: total 3, one more on the right
    dict(padding="valid", stride=2, groups=2),
    dict(stride=2, padding=1, groups=4),  # depthwise
]


@pytest.mark.parametrize("kwargs", CONV1D, ids=str)
def test_conv1d_arguments_match_torch(kwargs):
    groups = kwargs.get("groups", 1)
    x = _t(2, 4, 11)
    w = _t(4, 4 // groups, 4 if kwargs.get("padding") == "same" else 3, seed=1)
    b = _t(4, seed=2)
    _matches_torch(NF.conv1d, F.conv1d, [x, w, b], **kwargs)


CONV2D = [
    dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    dict(padding="same", dilation=(2, 1)),
    dict(stride=2, groups=2),
]


@pytest.mark.parametrize("kwargs", CONV2D, ids=str)
def test_conv2d_arguments_match_torch(kwargs):
    groups = kwargs.get("groups", 1)
    x = _t(2, 2, 6, 7)
    w = _t(4, 2 // groups, 2, 3, seed=1)
    _matches_torch(NF.conv2d, F.conv2d, [x, w, _t(4, seed=2)], **kwargs)
    _matches_torch(NF.conv2d, F.conv2d, [x[0].detach().requires_grad_(), w, None], **kwargs)


def test_the_stride_leftover_gets_zero_gradient():
    """L = 8, k = 3, s = 3: windows at 0, 3 (reach 6); inputs 6 and 7 are seen by none."""
    x, w = _t(1, 1, 8), _t(1, 1, 3, seed=1)
    NF.conv1d(x, w, stride=3).sum().backward()
    assert x.grad[0, 0, 6:].eq(0).all() and x.grad[0, 0, :6].ne(0).all()


def test_pure_forward_and_backward_are_the_chain_rule():
    """conv_backward alone equals autograd through conv_forward, slot by slot."""
    x, w, b = _t(3, 2, 9), _t(4, 1, 3, seed=1), _t(4, seed=2)
    args = ((2,), ((1, 2),), (2,), 2)  # stride, asymmetric padding, dilation, groups
    z = conv_forward(x, w, b, *args)
    g = torch.randn(z.shape, dtype=torch.float64)
    expected = torch.autograd.grad(z, (x, w, b), g)
    got = conv_backward(g, x.detach(), w.detach(), (tuple(x.shape), tuple(w.shape)),
                        *args, (True, True, True), True)
    for a, e in zip(got, expected, strict=True):
        torch.testing.assert_close(a, e)


def test_weight_gradient_sums_over_every_position():
    """∂W of a 1×1 kernel is Σ over samples and positions of g·x: one term per position."""
    x, w = _t(2, 3, 5), _t(2, 3, 1, seed=1)
    g = torch.randn(2, 2, 5, dtype=torch.float64)
    (gw,) = torch.autograd.grad(NF.conv1d(x, w), w, g)
    torch.testing.assert_close(gw[:, :, 0], torch.einsum("nol,ncl->oc", g, x.detach()))


def test_autocast_runs_the_convolution_in_bfloat16():
    x, w, b = (t.detach().float().requires_grad_() for t in (_t(2, 3, 8), _t(4, 3, 3), _t(4)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = NF.conv1d(x, w, b, stride=2, padding=1)
        ref = F.conv1d(x, w, b, stride=2, padding=1)
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref)
    out.float().sum().backward()
    assert w.grad.dtype == torch.float32 and x.grad.dtype == torch.float32


@pytest.mark.parametrize("kwargs, match", [
    (dict(padding="full"), "padding='full' is not one of: valid, same"),
    (dict(padding="same", stride=2), "padding='same' is not supported for strided"),
    (dict(stride=0), "stride=0 must be an int ≥ 1"),
    (dict(padding=-1), "padding=-1 must be an int ≥ 0"),
    (dict(groups=3), "groups=3 must be an int ≥ 1 dividing C_out=4"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NF.conv1d(torch.zeros(1, 4, 8), torch.zeros(4, 4, 3), **kwargs)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="input has 3 channels, weight expects"):
        NF.conv1d(torch.zeros(1, 3, 8), torch.zeros(4, 4, 3))
    with pytest.raises(ValueError, match="weight must have shape"):
        NF.conv2d(torch.zeros(1, 3, 8, 8), torch.zeros(4, 3, 3))
    with pytest.raises(ValueError, match="bias must have shape \\(4,\\)"):
        NF.conv1d(torch.zeros(1, 4, 8), torch.zeros(4, 4, 3), torch.zeros(3))
