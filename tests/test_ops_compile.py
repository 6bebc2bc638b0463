# pytest tests/test_ops_compile.py
"""torch.compile(fullgraph=True) traces the layer ops' Functions, forward and backward: a small
CNN and a small embedding model give eager's loss and gradients."""

from __future__ import annotations

import pytest
import torch

from neuronlab import functional as NF


def _params(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).mul(0.5).requires_grad_() for s in shapes]


def _grads_eager_and_compiled(loss_fn, params, *data):
    eager = torch.autograd.grad(loss_fn(*data, *params), params)
    compiled_fn = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    loss = compiled_fn(*data, *params)
    torch.testing.assert_close(loss, loss_fn(*data, *params))
    return eager, torch.autograd.grad(loss, params)


@pytest.mark.slow
def test_compiled_cnn_matches_eager():
    def loss_fn(x, y, w1, b1, gamma, beta, w2, w3, b3):
        h = NF.conv1d(x, w1, b1, stride=2, padding=1)  # (N, 4, 8)
        h = NF.relu(NF.batch_norm(h, None, None, gamma, beta, training=True))
        h = NF.max_pool1d(h, 2)  # (N, 4, 4)
        h = NF.avg_pool2d(NF.conv2d(h.unsqueeze(1), w2, padding="same"), 2)  # (N, 2, 2, 2)
        z = NF.linear(h.flatten(1), w3, b3)
        return -NF.log_softmax(z, 1).gather(1, y[:, None]).mean()

    x = torch.randn(6, 2, 16, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(2))
    params = _params((4, 2, 3), (4,), (4,), (4,), (2, 1, 2, 3), (3, 8), (3,))
    eager, compiled = _grads_eager_and_compiled(loss_fn, params, x, y)
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(a, b)


def test_compiled_embedding_model_matches_eager():
    def loss_fn(idx, table, gamma, beta):
        h = NF.layer_norm(NF.embedding(idx, table, padding_idx=0), (5,), gamma, beta)
        return NF.softmax(h, -1).square().sum()

    idx = torch.tensor([[0, 3, 3, 1], [2, 0, 4, 4]])
    params = _params((6, 5), (5,), (5,))
    eager, compiled = _grads_eager_and_compiled(loss_fn, params, idx)
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(a, b)
