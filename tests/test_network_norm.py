# pytest tests/test_network_norm.py
"""Normalization, the activation after it and dropout in the network loop
(``functional/norm_math.py``): a CNN or a non-residual ResMLP with batch or layer norm and
dropout runs as one Function at ``granularity=network`` and gives the op path's bits — logits,
loss, every gradient, the running statistics and the dropout mask of the same seed — in
training and evaluation, float32 and float64, every activation, under bf16 autocast; the
forward hooks the gradient-flow statistics read see what they see op by op; a training run
(audit and flow statistics on) ends on the op run's weights."""

from __future__ import annotations

import math

import pytest
import torch

from neuronlab import Layer
from neuronlab.functional.layer_math import LOOP_ACTIVATIONS
from neuronlab.functional.network import NetworkFunction, _plan, network
from neuronlab.gradcheck import compare_gradients
from neuronlab.modules import CNN, ModelConfig, build_network
from neuronlab.modules.dropout import Dropout
from neuronlab.modules.embedmlp import EmbeddingMLP
from neuronlab.modules.norm import BatchNorm1d, LayerNorm
from neuronlab.modules.resmlp import ResMLP


def _pair(make):
    """The same network (same weights) at ``op`` and at ``network``."""
    torch.manual_seed(0)
    op, loop = make("op"), make("network")
    loop.load_state_dict(op.state_dict())
    return op, loop


def _step(net, x, y, train: bool, autocast: bool = False):
    """Logits, loss, gradients and buffers of one step, with the dropout seed fixed."""
    net.train(train)
    net.zero_grad()
    torch.manual_seed(7)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits, loss = net.logits_and_loss(x, y, "cross_entropy")
    loss.backward()
    return (logits, loss, [p.grad for p in net.parameters()],
            [b.clone() for b in net.buffers()], type(loss.grad_fn).__name__)


def _assert_same_bits(op, loop, x, y, train: bool, autocast: bool = False) -> None:
    a, b = _step(op, x, y, train, autocast), _step(loop, x, y, train, autocast)
    assert b[4] == "NetworkFunctionBackward" != a[4]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for (name, _), p, q in zip(op.named_parameters(), a[2], b[2], strict=True):
        assert torch.equal(p, q), name
    assert all(torch.equal(p, q) for p, q in zip(a[3], b[3], strict=True))  # running stats


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("activation", LOOP_ACTIVATIONS)
def test_a_normalized_mlp_with_dropout_in_the_loop_is_the_op_path_bit_for_bit(activation, norm):
    op, loop = _pair(lambda g: ResMLP([6, 5, 4, 3], activation=activation, residual=False,
                                      norm=norm, dropout=0.3, granularity=g).double())
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (8,))
    for train in (True, False, True):  # the running statistics updated, used, updated
        _assert_same_bits(op, loop, x, y, train)
    torch.manual_seed(3)
    out = loop(x)
    torch.manual_seed(3)
    assert torch.equal(out, op(x))


@pytest.mark.parametrize("layout,pool,norm,activation", [
    ((1, 40), None, "batch", "relu"), ((1, 40), "avg", "layer", "sigmoid"),
    ((1, 8, 8), "max", "batch", "gelu"), ((2, 6, 6), None, "layer", "tanh"),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_normalized_cnn_with_dropout_in_the_loop_is_the_op_path_bit_for_bit(
        layout, pool, norm, activation, dtype):
    channels = [4, 4] if len(layout) == 3 else [4, 4, 4]
    op, loop = _pair(lambda g: CNN(layout, 10, channels=channels, pool=pool, norm=norm,
                                   activation=activation, dropout=0.25,
                                   granularity=g).to(dtype))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, math.prod(layout), generator=gen, dtype=dtype)
    y = torch.randint(0, 10, (8,), generator=gen)
    for train in (True, False):
        _assert_same_bits(op, loop, x, y, train)


@pytest.mark.parametrize("model", ["cnn", "mlp"])
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_under_bf16_autocast_the_normalized_loop_is_the_op_path(model, norm):
    """On the CPU neither norm is on an autocast list: they compute in float32 inside and
    return their input's dtype, in the loop as op by op."""
    if model == "cnn":
        op, loop = _pair(lambda g: CNN((1, 40), 10, norm=norm, dropout=0.2, granularity=g))
        x = torch.randn(8, 40)
    else:
        op, loop = _pair(lambda g: ResMLP([6, 8, 8, 10], residual=False, norm=norm,
                                          dropout=0.2, granularity=g))
        x = torch.randn(8, 6)
    _assert_same_bits(op, loop, x, torch.arange(8) % 10, True, autocast=True)
    assert _step(loop, x, torch.arange(8) % 10, True, autocast=True)[0].dtype == torch.bfloat16


def test_every_batch_norm_option_and_a_bare_layer_list_run_as_op_by_op():
    """A cumulative average (momentum=None), no affine, no running statistics, a layer norm
    without its affine: ``network`` over the modules themselves is their calls in a row."""
    def layers():
        torch.manual_seed(0)
        return [Layer(6, 5, "identity").double(), BatchNorm1d(5, momentum=None, affine=False),
                Dropout(0.5), Layer(5, 4, "identity").double(),
                BatchNorm1d(4, track_running_stats=False).double(),
                LayerNorm(4, elementwise_affine=False), Layer(4, 3).double()]

    op, loop = layers(), layers()
    x = torch.randn(10, 6, dtype=torch.float64)
    for _ in range(2):  # num_batches_tracked 1 then 2: the momentum 1/k
        torch.manual_seed(5)
        h = x
        for m in op:
            h = m(h)
        torch.manual_seed(5)
        out = network(x, loop)[0]
        assert torch.equal(h, out)
        params = [p for m in op for p in m.parameters()]
        grads = torch.autograd.grad(h.square().sum(), params)
        loop_grads = torch.autograd.grad(out.square().sum(),
                                         [p for m in loop for p in m.parameters()])
        assert all(torch.equal(a, b) for a, b in zip(grads, loop_grads, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(op[1].buffers(), loop[1].buffers(),
                                                     strict=True))
    assert int(loop[1].num_batches_tracked) == 2


def test_the_normalized_loop_is_right_on_finite_differences_and_in_double_backward():
    torch.manual_seed(0)
    net = ResMLP([3, 4, 4, 3], activation="gelu", residual=False, norm="batch",
                 granularity="network").double()
    steps = net._chain()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    _, plan, ps = _plan(x, steps, logits=False)
    trainable = [i for i, p in enumerate(ps) if p is not None and p.requires_grad]
    params = [ps[i].detach().clone().requires_grad_() for i in trainable]
    assert len(params) == len(list(net.parameters()))

    def through(x, *weights):  # the weights as inputs (gradcheck perturbs them)
        full = list(ps)
        for i, w in zip(trainable, weights, strict=True):
            full[i] = w
        return NetworkFunction.apply(plan, None, x, None, *full)[0]

    assert torch.autograd.gradcheck(through, (x, *params))
    assert torch.autograd.gradgradcheck(through, (x, *params))


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_a_wrong_normalization_formula_reaches_the_loop(norm, monkeypatch):
    """The loop calls the norms' own plain functions: the one-formula backward without its
    mean term (−Σdh) is caught in the loop as op by op."""
    import neuronlab.functional.norm as N

    def without_the_mean_term(dh, xhat, rstd, dims):
        n = math.prod([dh.shape[d] for d in dims])
        return rstd / n * (n * dh - xhat * (dh * xhat).sum(dims, keepdim=True))

    torch.manual_seed(0)
    net = ResMLP([6, 8, 8, 3], residual=False, norm=norm, dropout=0.2,
                 granularity="network").double()
    x, y = torch.randn(32, 6, dtype=torch.float64), torch.arange(32) % 3
    assert compare_gradients(net, x, y).ok
    monkeypatch.setattr(N, "normalize_backward", without_the_mean_term)
    assert not compare_gradients(net, x, y).ok
    assert _step(net, x, y, True)[4] == "NetworkFunctionBackward"


def test_forward_hooks_see_the_norms_and_layers_as_the_op_path_does():
    """What ``GradientFlow`` hooks: each norm (its input z and output, the activation taken
    after it) and each un-normalized layer; the steps that are plain calls op by op (a weighted
    sum, the activation after a norm) run no hook."""
    for norm in ("batch", None):
        op, loop = _pair(lambda g, norm=norm: ResMLP([6, 5, 4, 3], residual=False, norm=norm,
                                                     dropout=0.3, granularity=g))
        x, y = torch.randn(8, 6), torch.arange(8) % 3
        seen: dict[str, list] = {}
        for net in (op, loop):
            seen[net.granularity] = record = []
            hooked = [*net.layers, *net.norms, net.dropout]
            hooks = [m.register_forward_hook(
                lambda m, args, out, i=i, record=record: record.append((i, args[0], out)))
                for i, m in enumerate(hooked)]
            torch.manual_seed(1)
            net.logits_and_loss(x, y, "cross_entropy")
            for h in hooks:
                h.remove()
        assert [i for i, *_ in seen["network"]] == [i for i, *_ in seen["op"]]
        assert len(seen["op"]) == 4  # two hidden layers (or their norms), two dropouts
        for (_, a_in, a_out), (_, b_in, b_out) in zip(seen["op"], seen["network"],
                                                      strict=True):
            assert torch.equal(a_in, b_in) and torch.equal(a_out, b_out)


def test_what_is_no_chain_runs_op_by_op():
    """Residual skips and an embedding lookup are not in the loop; ``model=mlp`` with a norm or
    dropout gets the config's granularity (``network`` by default) and loops."""
    x, y = torch.randn(8, 6), torch.arange(8) % 3
    residual = ResMLP([6, 5, 5, 3], norm="batch", granularity="network")
    tokens = EmbeddingMLP(6, 4, 2, [5, 3], norm="layer")
    tokens.granularity = "network"
    for net in (residual, tokens):
        x_in = torch.randint(0, 4, (8, 6)).float() if net is tokens else x
        assert type(net.logits_and_loss(x_in, y, "cross_entropy")[1].grad_fn).__name__ != \
            "NetworkFunctionBackward"
    net = build_network(ModelConfig(kind="mlp", hidden=[5], norm="layer", dropout=0.1), 6, 3)
    assert isinstance(net, ResMLP) and net.granularity == "network"
    assert type(net.logits_and_loss(x, y, "cross_entropy")[1].grad_fn).__name__ == \
        "NetworkFunctionBackward"


def test_a_normalized_run_with_dropout_at_network_is_the_op_run_bit_for_bit(tmp_path):
    """Two epochs with the gradient audit and the gradient-flow statistics on: the same
    weights, running statistics and flow statistics at either granularity."""
    from granularity_runs import op_and_network_runs

    common = ["data=moons", "model=mlp", "model.hidden=[8,8]", "model.norm=batch",
              "model.dropout=0.2", "trainer.max_epochs=2", "callbacks.progress_bar=null",
              "callbacks.gradient_flow.every_n_steps=3", "callbacks.gradient_audit.every_n_steps=3"]
    runs, flow = op_and_network_runs(tmp_path, common, ("flow/", "grad_audit/"))
    assert all(r["status"] == "ok" for r in runs.values())
    assert runs["network"]["task"].net._loops()
    a, b = (r["task"].net.state_dict() for r in (runs["op"], runs["network"]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "flow/layer0/dead" in flow["network"] and "grad_audit/worst" in flow["network"]
    assert {k: v for k, v in flow["network"].items() if k.startswith("flow/")} == \
        {k: v for k, v in flow["op"].items() if k.startswith("flow/")}


def test_two_forwards_before_one_backward_run_as_op_by_op():
    """The running statistics a training forward updates are no saved tensor of the loop: a
    second batch's forward before the first one's backward is fine, as op by op."""
    op, loop = _pair(lambda g: CNN((1, 40), 10, norm="batch", dropout=0.2, granularity=g))
    x, y = torch.randn(16, 40), torch.arange(16) % 10
    grads = []
    for net in (op, loop):
        torch.manual_seed(2)
        losses = [net.logits_and_loss(x[i::2], y[i::2], "cross_entropy")[1] for i in (0, 1)]
        grads.append(torch.autograd.grad(losses[0] + losses[1], list(net.parameters())))
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(op.buffers(), loop.buffers(), strict=True))


@pytest.mark.slow
def test_a_compiled_normalized_loop_matches_eager():
    """``torch.compile(fullgraph=True)`` traces the loop with its in-place running-statistics
    update (once per forward, as eager)."""
    torch._dynamo.reset()
    eager, compiled = _pair(lambda g: CNN((1, 40), 10, norm="batch", granularity="network"))
    x, y = torch.randn(8, 40), torch.arange(8) % 10
    fn = torch.compile(lambda x, y: compiled.logits_and_loss(x, y, "cross_entropy")[1],
                       backend="aot_eager", fullgraph=True)
    ref = torch.autograd.grad(eager.logits_and_loss(x, y, "cross_entropy")[1],
                              list(eager.parameters()))
    grads = torch.autograd.grad(fn(x, y), list(compiled.parameters()))
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(compiled.buffers(), eager.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
