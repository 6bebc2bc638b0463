# pytest tests/test_conv_modules.py
"""The modules past the MLP (conv, pooling, norm, dropout, embedding) and the models built of
them (``cnn``, ``resmlp``): each module's autograd path equals torch's own module with the
same weights, its manual path (neuronlab's Functions) equals its autograd path value for value
and gradient for gradient, in float64; init counts a convolution's kernel."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from neuronlab import functional
from neuronlab.init import initialize_
from neuronlab.modules.cnn import CNN
from neuronlab.modules.conv import Conv1d, Conv2d
from neuronlab.modules.dropout import Dropout
from neuronlab.modules.embedding import Embedding
from neuronlab.modules.norm import BatchNorm1d, BatchNorm2d, LayerNorm
from neuronlab.modules.pooling import AvgPool, MaxPool
from neuronlab.modules.resmlp import ResMLP

GEN = torch.Generator().manual_seed(0)


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN, dtype=torch.float64)


# (ours, torch's twin, input): the twin gets our parameters and buffers
CASES = {
    "conv1d": (lambda: Conv1d(3, 4, 5, stride=2, padding=1),
               lambda: nn.Conv1d(3, 4, 5, stride=2, padding=1), lambda: _x(2, 3, 17)),
    "conv1d_same_dilated_groups": (
        lambda: Conv1d(4, 6, 3, padding="same", dilation=2, groups=2),
        lambda: nn.Conv1d(4, 6, 3, padding="same", dilation=2, groups=2), lambda: _x(2, 4, 9)),
    "conv2d": (lambda: Conv2d(2, 3, (3, 2), stride=(2, 1), padding=1),
               lambda: nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=1),
               lambda: _x(2, 2, 7, 6)),
    "max_pool1d": (lambda: MaxPool(3, 2, 1), lambda: nn.MaxPool1d(3, 2, 1),
                   lambda: _x(2, 3, 11)),
    "max_pool2d": (lambda: MaxPool(2, dims=2), lambda: nn.MaxPool2d(2), lambda: _x(2, 3, 6, 6)),
    "avg_pool1d": (lambda: AvgPool(4, 2, 2), lambda: nn.AvgPool1d(4, 2, 2),
                   lambda: _x(2, 3, 11)),
    "avg_pool2d": (lambda: AvgPool(3, 1, 1, dims=2), lambda: nn.AvgPool2d(3, 1, 1),
                   lambda: _x(2, 3, 5, 5)),
    "layer_norm": (lambda: LayerNorm((3, 5)), lambda: nn.LayerNorm((3, 5)),
                   lambda: _x(4, 3, 5)),
    "batch_norm1d": (lambda: BatchNorm1d(3), lambda: nn.BatchNorm1d(3), lambda: _x(8, 3)),
    "batch_norm1d_length": (lambda: BatchNorm1d(3, momentum=None),
                            lambda: nn.BatchNorm1d(3, momentum=None), lambda: _x(4, 3, 5)),
    "batch_norm2d": (lambda: BatchNorm2d(3), lambda: nn.BatchNorm2d(3), lambda: _x(4, 3, 3, 3)),
    "batch_norm2d_no_stats": (lambda: BatchNorm2d(2, track_running_stats=False, affine=False),
                              lambda: nn.BatchNorm2d(2, track_running_stats=False, affine=False),
                              lambda: _x(3, 2, 2, 2)),
}
OP_OF = {"conv1d": "conv1d", "conv1d_same_dilated_groups": "conv1d", "conv2d": "conv2d",
         "max_pool1d": "max_pool1d", "max_pool2d": "max_pool2d", "avg_pool1d": "avg_pool1d",
         "avg_pool2d": "avg_pool2d", "layer_norm": "layer_norm", "batch_norm1d": "batch_norm",
         "batch_norm1d_length": "batch_norm", "batch_norm2d": "batch_norm",
         "batch_norm2d_no_stats": "batch_norm"}


def _twins(name: str):
    ours_f, theirs_f, x_f = CASES[name]
    torch.manual_seed(0)
    ours, theirs = ours_f().double(), theirs_f().double()
    with torch.no_grad():  # different values than the defaults, so a swapped γ/β shows
        for p in ours.parameters():
            p.copy_(torch.randn(p.shape, generator=GEN))
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs, x_f()


def _run(module: nn.Module, x: torch.Tensor, steps: int = 2):
    """Outputs and input/parameter gradients of ``steps`` training calls, then one in eval."""
    outs = []
    for _ in range(steps):
        xi = x.clone().requires_grad_()
        y = module(xi)
        weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
        grads = torch.autograd.grad((y * weights).sum(), [xi, *module.parameters()])
        outs += [y.detach(), *grads]
    module.eval()
    outs.append(module(x).detach())
    module.train()
    return outs


@pytest.mark.parametrize("name", CASES)
def test_autograd_path_is_torch_module(name):
    ours, theirs, x = _twins(name)
    ours.backprop = "autograd"
    for a, b in zip(_run(ours, x), _run(theirs, x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for key, buf in theirs.state_dict().items():  # running statistics updated alike
        torch.testing.assert_close(ours.state_dict()[key], buf, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_manual_path_matches_autograd(name):
    op = OP_OF[name]
    if not hasattr(functional, op):
        pytest.skip(f"neuronlab.functional.{op} not in this build yet (branch ops)")
    manual, _, x = _twins(name)
    auto = copy.deepcopy(manual)
    auto.backprop = "autograd"
    assert manual.backprop == "manual"
    for a, b in zip(_run(manual, x), _run(auto, x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for key, buf in auto.state_dict().items():
        torch.testing.assert_close(manual.state_dict()[key], buf, rtol=1e-12, atol=1e-12)


def test_dropout_seeded_and_scaled():
    d = Dropout(0.25, backprop="autograd")
    x = torch.ones(1000, dtype=torch.float64)
    torch.manual_seed(3)
    a = d(x)
    torch.manual_seed(3)
    assert torch.equal(a, d(x))  # the seed reproduces the mask
    assert set(a.unique().tolist()) <= {0.0, 1 / 0.75}
    assert 0.15 < (a == 0).double().mean() < 0.35
    d.eval()
    assert torch.equal(d(x), x)
    for p in (-0.1, 1.0, True, "0.5"):
        with pytest.raises(ValueError, match="p="):
            Dropout(p)


def test_embedding_matches_torch_and_keeps_padding_row():
    emb = Embedding(7, 3, padding_idx=-1, backprop="autograd").double()
    assert emb.padding_idx == 6 and torch.equal(emb.weight[6], torch.zeros(3, dtype=torch.float64))
    initialize_(emb, scheme="lecun", generator=torch.Generator().manual_seed(0))
    assert torch.equal(emb.weight[6], torch.zeros(3, dtype=torch.float64))
    assert 0.4 < emb.weight[:6].std() < 1.8  # lecun with fan-in 1: N(0, 1)
    ref = nn.Embedding(7, 3, padding_idx=6).double()
    ref.load_state_dict(emb.state_dict())
    idx = torch.tensor([[0, 6, 2], [2, 2, 6]])
    for module in (emb, ref):
        module(idx).pow(2).sum().backward()
    torch.testing.assert_close(emb.weight.grad, ref.weight.grad)
    assert torch.equal(emb.weight.grad[6], torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="padding_idx=7"):
        Embedding(7, 3, padding_idx=7)


@pytest.mark.parametrize("bad", [
    lambda: Conv1d(3, 4, 0), lambda: Conv1d(3, 4, 3, groups=2), lambda: Conv2d(1, 1, (3,)),
    lambda: Conv1d(1, 1, 3, padding="full"), lambda: Conv1d(1, 1, 3, activation="relux"),
    lambda: MaxPool(2, dims=3), lambda: AvgPool(2, padding=2), lambda: LayerNorm(3, eps=0),
    lambda: BatchNorm1d(3, momentum=2), lambda: Conv1d(1, 1, 3, backprop="numeric"),
])
def test_bad_arguments_are_one_line_errors(bad):
    with pytest.raises(ValueError) as info:
        bad()
    assert "\n" not in str(info.value)


def test_batch_norm_refuses_the_wrong_rank():
    with pytest.raises(ValueError, match="expects input of 4 dims"):
        BatchNorm2d(3)(torch.randn(2, 3, 4))


def test_conv_init_counts_the_kernel():
    conv = Conv1d(25, 25, 3, groups=5)
    assert (conv.fan_in, conv.fan_out) == (5 * 3, 5 * 3)
    net = CNN((1, 400), 10, channels=[200, 200], kernel_sizes=[5, 9], backprop="autograd")
    initialize_(net, scheme="kaiming", generator=torch.Generator().manual_seed(0))
    stds = [float(m.weight.detach().std()) for m in net.layers]
    want = [2**0.5 / (1 * 5) ** 0.5, 2**0.5 / (200 * 9) ** 0.5]
    for got, w in zip(stds, want, strict=False):
        assert abs(got / w - 1) < 0.05
    assert all(float(m.bias.abs().max()) == 0 for m in net.layers)
    bn = CNN((1, 40), 10, norm="batch", backprop="autograd")
    initialize_(bn, scheme="xavier")
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in bn.norms)  # γ stays 1


def test_mnist1d_cnn_has_the_papers_shape():
    net = CNN((1, 40), 10)
    assert sum(p.numel() for p in net.parameters()) == 5210
    assert [tuple(m.weight.shape) for m in net.layers] == [(25, 1, 5), (25, 25, 3), (25, 25, 3),
                                                          (10, 125)]
    net.backprop = "autograd"
    assert all(m.backprop == "autograd" for m in net.modules() if hasattr(m, "_backprop"))
    x = _x(3, 40).float()
    want = torch.nn.functional.relu
    h = x.reshape(3, 1, 40)
    for conv in net.layers[:-1]:
        h = want(nn.functional.conv1d(h, conv.weight, conv.bias, 2, 1))
    torch.testing.assert_close(net(x), nn.functional.linear(h.flatten(1), net.layers[-1].weight,
                                                            net.layers[-1].bias))
    image = CNN((1, 8, 8), 10, backprop="autograd")
    assert isinstance(image.layers[0], Conv2d) and image(_x(2, 64).float()).shape == (2, 10)
    with pytest.raises(ValueError, match="too small"):
        CNN((1, 2), 10)


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_cnn_and_resmlp_with_norm_and_dropout_run_both_ways(norm):
    for make in (lambda b: CNN((1, 40), 10, norm=norm, dropout=0.3, backprop=b),
                 lambda b: ResMLP([40, 16, 16, 10], norm=norm, dropout=0.3, backprop=b)):
        net = make("autograd").double()
        torch.manual_seed(0)
        out = net(_x(6, 40))
        assert out.shape == (6, 10) and out.isfinite().all()
        net.eval()  # no dropout, running statistics: the same output twice
        x = _x(2, 40)
        assert torch.equal(net(x), net(x)) and torch.equal(net(x), net.pre_activation(x))


def test_resmlp_is_the_papers_formula():
    net = ResMLP([40, 100, 100, 10], backprop="autograd").double()
    assert sum(p.numel() for p in net.parameters()) == 40 * 100 + 100 + 100 * 100 + 100 + 1010
    x = _x(5, 40)
    relu, lin = nn.functional.relu, nn.functional.linear
    a, b, c = net.layers
    h = relu(lin(x, a.weight, a.bias))
    h = h + relu(lin(h, b.weight, b.bias))
    torch.testing.assert_close(net(x), lin(h, c.weight, c.bias))
    plain = ResMLP([40, 8, 4, 10], residual=False, backprop="autograd")  # any sizes without skips
    assert plain(_x(2, 40).float()).shape == (2, 10)
    with pytest.raises(ValueError, match="one size"):
        ResMLP([40, 8, 4, 10])
