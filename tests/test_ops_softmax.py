# pytest tests/test_ops_softmax.py
"""softmax and log_softmax beyond the OPS table's call (dim=-1): every dim, ``dtype=``, the
implicit dim, bad dims, and half precision where one class dominates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuronlab import functional as NF
from neuronlab.functional.softmax import log_softmax_backward, softmax_backward


def _x(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_every_dim_matches_torch_and_finite_differences(name, dim):
    ours, theirs = getattr(NF, name), getattr(F, name)
    x = _x(3, 4, 2)
    twin = x.detach().clone().requires_grad_()
    v = torch.randn(3, 4, 2, dtype=torch.float64)
    out, ref = ours(x, dim), theirs(twin, dim)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(torch.autograd.grad(out, x, v)[0],
                               torch.autograd.grad(ref, twin, v)[0])
    assert torch.autograd.gradcheck(lambda t: ours(t, dim), (x,))
    assert torch.autograd.gradgradcheck(lambda t: ours(t, dim), (x,))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_dtype_argument_casts_first(name):
    x = _x(4, 5, dtype=torch.float32)
    twin = x.detach().clone().requires_grad_()
    out = getattr(NF, name)(x, 1, dtype=torch.float64)
    ref = getattr(F, name)(twin, 1, dtype=torch.float64)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    ref.sum().backward()
    assert x.grad.dtype == torch.float32
    torch.testing.assert_close(x.grad, twin.grad)


def test_implicit_dim_is_torchs_with_its_warning():
    for shape in [(5,), (3, 4), (2, 3, 4), (2, 3, 4, 5)]:
        x = _x(*shape)
        with pytest.warns(UserWarning, match="Implicit dimension"):
            out = NF.softmax(x)
        with pytest.warns(UserWarning):
            ref = F.softmax(x.detach())
        torch.testing.assert_close(out, ref)


def test_bad_dim_is_named():
    with pytest.raises(IndexError, match="dim=2 is out of range"):
        NF.softmax(torch.zeros(3, 4), 2)
    with pytest.raises(TypeError, match="dim must be an int"):
        NF.log_softmax(torch.zeros(3, 4), 1.0)


@pytest.mark.parametrize("backward", [softmax_backward, log_softmax_backward])
def test_the_pure_backward_is_the_jacobian_product(backward):
    """The plain functions alone: vᵀJ from the formula == autograd's through torch's op."""
    x = _x(4, 6)
    torch_op = torch.softmax if backward is softmax_backward else torch.log_softmax
    y = torch_op(x, 1)
    v = torch.randn(4, 6, dtype=torch.float64)
    (expected,) = torch.autograd.grad(y, x, v)
    torch.testing.assert_close(backward(v, y.detach(), 1), expected)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_bfloat16_dominant_class_gradient_is_the_float64_one_rounded(name):
    """One logit far above the rest: g − y·Σg cancels; the gradient comes from a float32 y,
    so it is within bfloat16's rounding of the float64 truth (not percents off)."""
    x = torch.tensor([[1.8203, -3.5156, -4.4062, 2.3281, 8.3750]]).to(torch.bfloat16)
    x.requires_grad_()
    v = torch.tensor([[0.3, -1.2, 0.7, 2.0, -0.4]])
    (g,) = torch.autograd.grad(getattr(NF, name)(x, 1), x, v.to(torch.bfloat16))
    x64 = x.detach().double().requires_grad_()
    (truth,) = torch.autograd.grad(getattr(F, name)(x64, 1), x64, v.double())
    torch.testing.assert_close(g.double(), truth, rtol=8e-3, atol=1e-5)
