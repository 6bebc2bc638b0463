# pytest tests/test_loop_pass.py
"""The loop without the autograd graph (``LoopPass``): a training step whose only use of the
graph is the parameters' gradients runs the network loop's forward, then ``backprop`` itself,
into ``.grad``. Same bits as ``loss.backward()`` through ``NetworkFunction``; refused wherever
something else needs the graph; what ``neuronlab-train`` and ``TrainStep`` run by default."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

import neuronlab.functional.layer_math as LM
import neuronlab.functional.loop_pass as N
from neuronlab import MLP
from neuronlab.modules import CNN
from neuronlab.optim import SGD
from neuronlab.training.step import TrainStep


def _batch(n_in, n=12, classes=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g, dtype=torch.float64).to(dtype)
    return x, torch.randint(0, classes, (n,), generator=g)


def _mlp(activation="relu", dtype=torch.float64, sizes=(5, 7, 6, 4)):
    torch.manual_seed(0)
    return MLP(list(sizes), activation=activation, granularity="network").to(dtype)


def _grads_both_ways(net, x, y):
    """(loss, logits, grads) through ``loss.backward()``, then through the ``LoopPass``."""
    out = []
    for use_pass in (False, True):
        net.zero_grad(set_to_none=True)
        if use_pass:
            logits, loss, pending = net.loop_pass(x, y, "cross_entropy")
            assert not loss.requires_grad and not logits.requires_grad  # no graph was built
            pending.backward()
        else:
            logits, loss = net.logits_and_loss(x, y, "cross_entropy")
            loss.backward()
        out.append((loss.detach(), logits.detach(), [p.grad for p in net.parameters()]))
    return out


@pytest.mark.parametrize("activation", LM.LOOP_ACTIVATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_pass_gives_loss_backwards_bits(activation, dtype):
    net = _mlp(activation, dtype)
    (l1, z1, g1), (l2, z2, g2) = _grads_both_ways(net, *_batch(5, dtype=dtype))
    assert torch.equal(l1, l2) and torch.equal(z1, z2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))


@pytest.mark.parametrize("pool", [None, "max"])
def test_a_cnn_pass_gives_loss_backwards_bits(pool):
    torch.manual_seed(0)
    net = CNN([1, 16], 5, channels=(3, 4), activation="tanh", pool=pool,
              granularity="network").double()
    (l1, _, g1), (l2, _, g2) = _grads_both_ways(net, *_batch(16, classes=5))
    assert torch.equal(l1, l2) and all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))


@pytest.mark.parametrize("kind", ["mlp-batch-dropout", "cnn-layer-dropout", "cnn-batch-eval"])
def test_norms_and_dropout_in_the_pass_give_the_same_bits_masks_and_statistics(kind):
    from neuronlab.modules.resmlp import ResMLP

    torch.manual_seed(0)
    if kind.startswith("mlp"):
        net, x = ResMLP([5, 6, 6, 4], residual=False, norm="batch", dropout=0.3,
                        granularity="network").double(), _batch(5)[0]
    else:
        net = CNN([1, 12], 4, channels=(3, 2), norm=kind.split("-")[1], pool="max",
                  dropout=0.0 if kind.endswith("eval") else 0.25, granularity="network")
        net, x = net.double(), _batch(12)[0]
    net.train(not kind.endswith("eval"))
    y = _batch(5)[1]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    out = []
    for use_pass in (False, True):
        net.load_state_dict(state)
        torch.manual_seed(1)  # the same dropout masks
        net.zero_grad(set_to_none=True)
        if use_pass:
            _, loss, pending = net.loop_pass(x, y)
            pending.backward()
        else:
            loss = net.logits_and_loss(x, y, "cross_entropy")[1]
            loss.backward()
        out.append([loss.detach(), *(p.grad for p in net.parameters()), *net.buffers()])
    assert all(torch.equal(a, b) for a, b in zip(*out, strict=True))


def test_a_hook_on_a_layer_inside_a_normed_step_refuses_the_pass():
    net = CNN([1, 12], 4, channels=(3, 2), norm="batch", granularity="network").double()
    x, y = _batch(12)
    assert net.loop_pass(x, y) is not None
    handle = net.layers[0].weight.register_hook(lambda g: g)  # the conv behind a _ConvSum step
    assert net.loop_pass(x, y) is None
    handle.remove()


def test_a_second_pass_adds_into_grad_as_autograd_accumulates():
    net = _mlp()
    x, y = _batch(5)
    net.zero_grad()
    for _ in range(2):
        net.logits_and_loss(x, y, "cross_entropy")[1].backward(torch.tensor(0.5, dtype=x.dtype))
    engine = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    for _ in range(2):
        net.loop_pass(x, y, "cross_entropy")[2].backward(torch.tensor(0.5, dtype=x.dtype))
    assert all(torch.equal(a, p.grad) for a, p in zip(engine, net.parameters(), strict=True))


def test_a_frozen_parameter_gets_no_gradient_and_a_pass_runs_once():
    net = _mlp()
    net.layers[0].weight.requires_grad_(False)
    _, _, pending = net.loop_pass(*_batch(5), "cross_entropy")
    pending.backward()
    assert net.layers[0].weight.grad is None and net.layers[0].bias.grad is not None
    with pytest.raises(RuntimeError, match="already ran"):
        pending.backward()


def _refusals():
    """(name, net, how to run loop_pass) for every case where the graph is needed."""
    x, y = _batch(5)

    def hooked(attach):
        def run():
            net = _mlp()
            handle = attach(net)
            try:
                return net.loop_pass(x, y, "cross_entropy")
            finally:
                handle.remove()
        return run

    def parametrized():
        net = _mlp()

        class Twice(torch.nn.Module):
            def forward(self, w):
                return 2 * w
        parametrize.register_parametrization(net.layers[0], "weight", Twice())
        return net.loop_pass(x, y, "cross_entropy")

    def under(ctx_factory):
        def run():
            with ctx_factory():
                return _mlp().loop_pass(x, y, "cross_entropy")
        return run

    return {
        "granularity op": lambda: MLP([5, 4], granularity="op").double().loop_pass(
            x, y, "cross_entropy"),
        "autograd": lambda: MLP([5, 4], backprop="autograd", granularity="network").double()
        .loop_pass(x, y, "cross_entropy"),
        "mse": lambda: _mlp().loop_pass(x, y, "mse"),
        "input wants a gradient": lambda: _mlp().loop_pass(x.clone().requires_grad_(), y,
                                                           "cross_entropy"),
        "forward hook": hooked(lambda n: n.layers[1].register_forward_hook(lambda *a: None)),
        "tensor hook": hooked(lambda n: n.layers[0].weight.register_hook(lambda g: g)),
        "post-accumulate hook": hooked(
            lambda n: n.layers[0].bias.register_post_accumulate_grad_hook(lambda p: None)),
        "global hook": hooked(lambda n: torch.nn.modules.module.register_module_forward_hook(
            lambda *a: None)),
        "parametrization": parametrized,
        "every parameter frozen": lambda: _mlp().requires_grad_(False).loop_pass(x, y),
        "no_grad": under(torch.no_grad),
        "autocast": under(lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
        "anomaly detection": under(torch.autograd.detect_anomaly),
    }


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
@pytest.mark.parametrize("case", sorted(_refusals()))
def test_the_pass_is_refused_where_the_graph_is_needed(case):
    assert _refusals()[case]() is None


def test_the_functional_pass_names_what_it_refuses():
    net = _mlp()
    x, y = _batch(5)
    with pytest.raises(ValueError, match="autocast"), torch.autocast("cpu", dtype=torch.bfloat16):
        N.network_cross_entropy_pass(x.float(), y, net._chain())
    with pytest.raises(ValueError, match=r"class indices \(N,\)"):
        N.network_cross_entropy_pass(x, y.double(), net._chain())


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_train_step_with_the_pass_reaches_the_same_weights(momentum):
    x, y = _batch(5, n=40)
    weights = []
    for use_pass in (False, True):
        net = _mlp()
        step = TrainStep(lambda a, b, net=net: net.logits_and_loss(a, b, "cross_entropy")[1],
                         SGD(net.parameters(), lr=0.1, momentum=momentum), mode="eager",
                         loop_fn=net.loop_pass if use_pass else None)
        for i in range(0, 40, 8):
            step(x[i:i + 8], y[i:i + 8])
        weights.append([p.detach().clone() for p in net.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def _fit(tmp_path, monkeypatch, use_pass: bool, *extra: str):
    from neuronlab.config import compose
    from neuronlab.training.run import train
    from neuronlab.training.task import LearnTask

    calls = []
    if use_pass:
        real = N.LoopPass.backward
        monkeypatch.setattr(N.LoopPass, "backward",
                            lambda self, g=None: (calls.append(1), real(self, g))[1])
    else:
        monkeypatch.setattr(LearnTask, "loop_pass", lambda self, x, y: None)
    record = train(compose(["data=moons", "model=mlp", "trainer.max_epochs=2",
                            "callbacks.progress_bar=null", "optimizer.momentum=0.9",
                            "callbacks.gradient_audit.every_n_steps=3", *extra],
                           output_dir=tmp_path / str(use_pass)))
    monkeypatch.undo()
    assert record["status"] == "ok"
    return record["task"].net.state_dict(), len(calls), record["steps"]


@pytest.mark.parametrize("extra", [(), ("+trainer.accumulate_grad_batches=2",)])
def test_neuronlab_train_runs_the_pass_and_trains_as_the_graph_does(tmp_path, monkeypatch, extra):
    a, _, steps = _fit(tmp_path, monkeypatch, False, *extra)
    b, passes, _ = _fit(tmp_path, monkeypatch, True, *extra)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # every training batch but the gradient-flow steps' (their forward hooks need the graph)
    batches = steps * (2 if extra else 1)
    assert 0.8 * batches <= passes < batches
