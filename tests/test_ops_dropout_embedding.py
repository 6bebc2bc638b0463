# pytest tests/test_ops_dropout_embedding.py
"""dropout: torch's very mask for the same seed, a fresh mask per call, p = 0 / 1, eval,
inplace; embedding: the scatter-add, padding_idx, the refused arguments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuronlab import functional as NF


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_is_torchs_mask_for_the_same_seed(p, dtype):
    x = torch.randn(7, 33).to(dtype)
    ours, twin = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(3)
    out = NF.dropout(ours, p)
    torch.manual_seed(3)
    ref = F.dropout(twin, p)
    assert torch.equal(out, ref)
    g = torch.randn(7, 33).to(dtype)
    out.backward(g)
    ref.backward(g)
    assert torch.equal(ours.grad, twin.grad)


def test_dropout_draws_a_fresh_mask_per_call_and_a_seed_reproduces_it():
    x = torch.ones(1000)
    torch.manual_seed(0)
    a, b = NF.dropout(x, 0.5), NF.dropout(x, 0.5)
    assert not torch.equal(a, b)
    torch.manual_seed(0)
    assert torch.equal(NF.dropout(x, 0.5), a)
    assert set(a.unique().tolist()) == {0.0, 2.0}  # kept entries scaled by 1/(1 − p)
    assert abs(a.mean().item() - 1.0) < 0.1


def test_dropout_edges_as_torch():
    x = torch.randn(4, 5, requires_grad=True)
    assert NF.dropout(x, 0.5, training=False) is x
    assert NF.dropout(x, 0.0) is x
    out = NF.dropout(x, 1.0)
    assert torch.equal(out, torch.zeros(4, 5))
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros(4, 5))


def test_dropout_inplace_as_torch():
    w = torch.randn(6, requires_grad=True)
    twin = w.detach().clone().requires_grad_()
    x, x_ref = w * 1.0, twin * 1.0
    torch.manual_seed(1)
    out = NF.dropout(x, 0.4, inplace=True)
    torch.manual_seed(1)
    F.dropout(x_ref, 0.4, inplace=True)
    assert out is x and torch.equal(x, x_ref)
    (out * out).sum().backward()
    (x_ref * x_ref).sum().backward()
    torch.testing.assert_close(w.grad, twin.grad)


def test_dropout_bad_p():
    with pytest.raises(ValueError, match="p=1.5 must be a probability"):
        NF.dropout(torch.zeros(3), 1.5)


def test_embedding_scatter_adds_repeated_rows_and_skips_padding():
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    twin = w.detach().clone().requires_grad_()
    idx = torch.tensor([[1, 2, 1], [0, 4, 1]])
    g = torch.randn(2, 3, 3, dtype=torch.float64)
    for padding_idx in (None, 1, -1):
        (ours,) = torch.autograd.grad(NF.embedding(idx, w, padding_idx), w, g)
        (ref,) = torch.autograd.grad(F.embedding(idx, twin, padding_idx), twin, g)
        torch.testing.assert_close(ours, ref)
    (grad,) = torch.autograd.grad(NF.embedding(idx, w), w, g)
    torch.testing.assert_close(grad[1], g[0, 0] + g[0, 2] + g[1, 2])  # looked up three times
    assert not grad[3].any()  # never looked up


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_embedding_half_gradients_summed_in_float32(dtype):
    w = torch.randn(3, 4).to(dtype).requires_grad_()
    idx = torch.zeros(300, dtype=torch.long)  # one row, 300 times
    g = torch.full((300, 4), 0.01).to(dtype)
    (grad,) = torch.autograd.grad(NF.embedding(idx, w), w, g)
    truth = (g.double().sum(0)).to(dtype)
    assert torch.equal(grad[0], truth)


def test_embedding_double_backward():
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([0, 3, 3, 1])
    fn = lambda w: NF.embedding(idx, w).tanh()  # noqa: E731
    assert torch.autograd.gradcheck(fn, (w,), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, (w,))


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_norm=1.0), "max_norm=1.0 is not supported"),
    (dict(scale_grad_by_freq=True), "scale_grad_by_freq=True is not supported"),
    (dict(sparse=True), "sparse=True is not supported"),
    (dict(padding_idx=5), "padding_idx=5 must be within the 4 rows"),
])
def test_embedding_refuses_in_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        NF.embedding(torch.tensor([0, 1]), torch.zeros(4, 2), **kwargs)
    assert "\n" not in str(e.value)


def test_embedding_float_indices_refused():
    with pytest.raises(TypeError, match="integer indices"):
        NF.embedding(torch.tensor([0.0]), torch.zeros(4, 2))
