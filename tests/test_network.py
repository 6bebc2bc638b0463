# pytest tests/test_network.py
"""The network loop (``functional.network``, ``model.granularity=network``): the whole network,
and its cross-entropy, as one Function whose backward is the textbook loop. Every granularity
(op, layer, network) gives the same values and gradients on every model and activation, right
on finite differences and in double backward; a new layer type plugs in without touching the
loop; the gradient-flow hooks see each layer; plants in the derivative formulas reach it."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from planted import PLANTS

import neuronlab.functional.layer_math as LM
from neuronlab import MLP, Layer, Neuron
from neuronlab.errors import ConfigError
from neuronlab.functional import ACTIVATIONS, LOSSES
from neuronlab.functional.network import (
    NetworkFunction,
    network,
    network_cross_entropy,
    register_layer,
)
from neuronlab.gradcheck import compare_gradients
from neuronlab.modules import CNN, ModelConfig, build_network

GRANULARITIES = ("op", "layer", "network")


def _batch(n_in=3, n=16, classes=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g, dtype=torch.float64).to(dtype)
    return x, torch.randint(0, classes, (n,), generator=g)


def _loss_and_grads(net, x, y, loss: str, create_graph=False):
    """The task's loss (``LearnTask.output_and_loss``'s routes) and its gradients wrt x and
    every parameter."""
    x = x.detach().requires_grad_()
    if loss == "cross_entropy":
        out, value = net.logits_and_loss(x, y, loss)
    else:
        out = net.pre_activation(x) if LOSSES[loss].takes_logits else net(x)
        target = (torch.nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)
                  if out.dim() == 2 and out.shape[-1] > 1 else y.reshape(out.shape).to(out.dtype))
        value = LOSSES[loss].manual(out, target)
    grads = torch.autograd.grad(value, [x, *net.parameters()], create_graph=create_graph)
    return out, value, grads


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize(("kind", "loss"), [("mlp", "cross_entropy"), ("mlp", "mse"),
                                            ("mlp", "bce"), ("neuron", "bce"),
                                            ("neuron", "mse")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_granularity_gives_the_op_paths_values_and_gradients(activation, kind, loss,
                                                                  dtype):
    classes = 2 if kind == "neuron" or loss == "bce" else 3
    config = ModelConfig(kind=kind, hidden=[5, 4] if kind == "mlp" else [], loss=loss,
                         activation=activation,
                         output_activation="sigmoid" if (loss, kind) == ("mse", "mlp") else None)
    torch.manual_seed(0)
    net = build_network(config, 3, classes).to(dtype)
    x, y = _batch(classes=classes, dtype=dtype)
    results = {}
    for g in GRANULARITIES:
        net.granularity = g
        results[g] = _loss_and_grads(net, x, y, loss)
    out, value, grads = results["op"]
    for g in ("layer", "network"):
        o, v, gr = results[g]
        assert o.dtype == out.dtype and v.dtype == value.dtype
        # the same ops in the same order: the same bits
        assert torch.equal(o, out) and torch.equal(v, value), g
        for a, b in zip(gr, grads, strict=True):
            assert torch.equal(a, b), g
    net.backprop = "autograd"
    _, ref_value, ref = _loss_and_grads(net, x, y, loss)
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(value, ref_value, **tol)
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("activation", sorted(LM.LOOP_ACTIVATIONS))
def test_the_loop_is_right_on_finite_differences_and_in_double_backward(activation):
    torch.manual_seed(0)
    net = MLP([3, 4, 4, 3], activation=activation, output_activation="tanh",
              granularity="network").double()
    x, y = _batch(n=5)
    x.requires_grad_()
    params = list(net.parameters())
    n = len(params)

    def through(x, *ps):  # parameters as inputs: gradcheck perturbs them
        plan = tuple(("dense", (layer.activation,)) for layer in net.layers)
        return NetworkFunction.apply(plan, None, x, None, *ps)[0]

    inputs = (x, *(p.detach().clone().requires_grad_() for p in params))
    assert torch.autograd.gradcheck(through, inputs)
    assert torch.autograd.gradgradcheck(through, inputs)

    def with_loss(x, *ps):
        plan = tuple(("dense", ("identity" if i == n // 2 - 1 else layer.activation,))
                     for i, layer in enumerate(net.layers))
        outs = NetworkFunction.apply(plan, False, x, y, *ps)
        return outs[-1], outs[0]

    assert torch.autograd.gradcheck(with_loss, inputs)
    assert torch.autograd.gradgradcheck(with_loss, inputs)


def test_double_backward_matches_the_op_path():
    torch.manual_seed(0)
    net = MLP([3, 5, 4, 3], activation="gelu").double()
    x, y = _batch()
    second = {}
    for g in ("op", "network"):
        net.granularity = g
        out, _, grads = _loss_and_grads(net, x, y, "cross_entropy", create_graph=True)
        # a gradient penalty, plus the logits used outside the loss: both reach the loop
        s = sum((t * t).sum() for t in grads) + (out**3).sum()
        second[g] = torch.autograd.grad(s, list(net.parameters()))
    for a, b in zip(second["network"], second["op"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_a_network_is_one_autograd_node_with_its_loss():
    net = MLP([3, 5, 4, 3], activation="relu", granularity="network")
    x, y = _batch(dtype=torch.float32)
    _, value = net.logits_and_loss(x, y, "cross_entropy")
    assert type(value.grad_fn).__name__ == "NetworkFunctionBackward"
    nodes = {type(f[0]).__name__ for f in value.grad_fn.next_functions if f[0] is not None}
    assert nodes == {"AccumulateGrad"}  # straight to the parameters: no other node


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_the_loop_saves_no_more_activations_than_autograd(activation):
    """What the backward keeps, besides the parameters: never more storage than autograd's
    graph keeps (the logits before the loss are not saved: the loop's backward never reads
    them)."""
    x, y = _batch(n_in=6, n=32, dtype=torch.float32)

    def saved(granularity):
        net = MLP([6, 8, 8, 4], activation=activation,
                  backprop="autograd" if granularity is None else "manual",
                  granularity=granularity)
        params = {p.untyped_storage().data_ptr() for p in net.parameters()}
        storages = {}

        def pack(t):
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logits, _ = net.logits_and_loss(x, y, "cross_entropy")
        return logits, {k: v for k, v in storages.items() if k not in params}

    logits, ours = saved("network")
    assert logits.untyped_storage().data_ptr() not in ours
    assert sum(ours.values()) <= sum(saved(None)[1].values())


def test_under_autocast_the_loop_gives_the_op_paths_bits():
    torch.manual_seed(0)
    net = MLP([3, 8, 8, 3], activation="tanh")
    x, y = _batch(dtype=torch.float32)
    res = {}
    for g in ("op", "network"):
        net.granularity = g
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, value = net.logits_and_loss(x, y, "cross_entropy")
            grads = torch.autograd.grad(value, list(net.parameters()))
        res[g] = out, value, grads
    (o1, v1, g1), (o2, v2, g2) = res["op"], res["network"]
    assert o2.dtype == torch.bfloat16 and v2.dtype == torch.float32
    assert all(g.dtype == torch.float32 for g in g2)
    assert torch.equal(o1, o2) and torch.equal(v1, v2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))


def test_a_compiled_step_at_network_granularity_matches_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = MLP([3, 8, 8, 3], activation="relu", granularity="network")
    x, y = _batch(dtype=torch.float32)

    def loss_fn(x, y):
        return net.logits_and_loss(x, y, "cross_entropy")[1]

    eager = torch.autograd.grad(loss_fn(x, y), list(net.parameters()))
    compiled = torch.compile(loss_fn, backend="aot_eager", fullgraph=True)
    grads = torch.autograd.grad(compiled(x, y), list(net.parameters()))
    for a, b in zip(grads, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_forward_hooks_see_each_layer_as_the_op_path_does():
    torch.manual_seed(0)
    net = MLP([3, 5, 4, 3], activation="sigmoid", output_activation="tanh")
    x, y = _batch(dtype=torch.float32)
    seen: dict[str, list] = {}
    for g in ("op", "network"):
        net.granularity = g
        seen[g] = []
        hooks = [layer.register_forward_hook(
            lambda m, args, out, i=i, g=g: seen[g].append((i, args[0], out)))
            for i, layer in enumerate(net.layers)]
        net(x)  # the whole network: every layer
        net.logits_and_loss(x, y, "cross_entropy")  # to the logits: every layer but the last
        for h in hooks:
            h.remove()
    assert [i for i, *_ in seen["network"]] == [0, 1, 2, 0, 1] == [i for i, *_ in seen["op"]]
    for (_, a_in, a_out), (_, b_in, b_out) in zip(seen["op"], seen["network"], strict=True):
        assert torch.equal(a_in, b_in) and torch.equal(a_out, b_out)


@pytest.mark.parametrize("name", [n for n, p in PLANTS.items()
                                  if p.activation in LM.LOOP_ACTIVATIONS
                                  and hasattr(p.swap, "formula")])
def test_a_wrong_derivative_formula_reaches_the_loop(name, monkeypatch):
    plant = PLANTS[name]
    torch.manual_seed(0)
    model = MLP([2, 8, 8, 2], activation=plant.activation, granularity="network").double()
    x, y = _batch(n_in=2, n=32, classes=2, dtype=torch.float32)
    assert compare_gradients(model, x, y).ok
    plant.install(monkeypatch)
    assert not compare_gradients(model, x, y).ok


class _Scale(torch.nn.Module):
    """A toy layer type: y = x ⊙ s, one scale per feature."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.linspace(0.5, 1.5, n))


def _scale_forward(x, params, attrs):
    return x * params[0], ()


def _scale_backward(grad_y, grad_extra, x, y, params, extra, attrs, needs):
    (s,) = params
    return grad_y * s, ((grad_y * x).sum(0),)


def test_a_new_layer_type_plugs_in_without_touching_the_loop(monkeypatch):
    from neuronlab.functional.precision import INPUT_DTYPE, DtypeRule

    math = LM.LayerMath("scale", 1, _scale_forward, _scale_backward, lambda attrs: 0,
                        DtypeRule(INPUT_DTYPE))
    monkeypatch.setitem(LM.LAYER_MATH, "scale", math)
    register_layer(_Scale, "scale", lambda m, logits: ((), (m.scale,)))
    torch.manual_seed(0)
    layers = [Layer(3, 4, "tanh").double(), _Scale(4).double(), Layer(4, 3).double()]
    x, y = _batch()
    value, _, ys = network_cross_entropy(x, y, layers)
    assert len(ys) == 3
    params = [p for m in layers for p in m.parameters()]
    grads = torch.autograd.grad(value, params)
    h = torch.tanh(torch.nn.functional.linear(x, layers[0].weight, layers[0].bias))
    ref_value = torch.nn.functional.cross_entropy(
        torch.nn.functional.linear(h * layers[1].scale, layers[2].weight, layers[2].bias), y)
    ref = torch.autograd.grad(ref_value, params)
    torch.testing.assert_close(value, ref_value)
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b)


def test_bad_input_names_what_is_allowed():
    with pytest.raises(ConfigError, match="model.granularity='loop' is not one of"):
        ModelConfig(granularity="loop")
    with pytest.raises(ValueError, match="granularity='loop' is not one of: layer, network, op"):
        MLP([2, 2], granularity="loop")
    with pytest.raises(ValueError, match="register_layer: kind='norm' is not one of: dense, "
                                         "conv, pool, reshape, batch_norm, layer_norm, "
                                         "activation, dropout"):
        register_layer(_Scale, "norm", lambda m, logits: ((), ()))
    with pytest.raises(TypeError, match="Linear has no layer math"):
        network(torch.zeros(2, 2), [torch.nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="linear: input's last dimension must equal"):
        network(torch.zeros(2, 3), [Layer(2, 2)])
    with pytest.raises(ValueError, match="class indices"):
        network_cross_entropy(torch.zeros(2, 2), torch.zeros(2), [Layer(2, 2)])


def test_fused_is_the_old_name_of_granularity_layer():
    assert ModelConfig().granularity == "network"
    assert ModelConfig(fused=True).granularity == "layer"
    net = MLP([2, 3, 2], fused=True)
    assert net.granularity == "layer" and all(layer.fused for layer in net.layers)
    net.granularity = "network"
    assert not net.fused and all(layer.granularity == "network" for layer in net.layers)
    old = Neuron(2)
    old.__dict__.pop("_granularity")
    old.__dict__["_fused"] = True  # a module pickled before ``granularity`` existed
    assert pickle.loads(pickle.dumps(old)).granularity == "layer"


def test_a_network_run_is_the_op_run_bit_for_bit_flow_statistics_included(tmp_path):
    from granularity_runs import op_and_network_runs

    common = ["data=moons", "model=mlp", "model.activation=tanh", "trainer.max_epochs=2",
              "callbacks.progress_bar=null", "callbacks.gradient_flow.every_n_steps=5",
              "callbacks.gradient_audit.every_n_steps=5"]
    runs, flow = op_and_network_runs(tmp_path, common, ("flow/",))
    assert all(r["status"] == "ok" for r in runs.values())
    assert runs["network"]["task"].net.granularity == "network"
    a, b = (r["task"].net.state_dict() for r in (runs["op"], runs["network"]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "flow/layer1/act_mean" in flow["network"] and "flow/layer0/saturated" in flow["network"]
    assert flow["network"] == flow["op"]


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_graphed_network_step_reaches_the_eager_op_weights(precision):
    from neuronlab.optim import SGD
    from neuronlab.training.step import TrainStep

    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(32, 3, generator=gen).cuda(),
                torch.randint(0, 3, (32,), generator=gen).cuda()) for _ in range(10)]
    weights = {}
    for g, mode in (("op", "eager"), ("network", "graph")):
        torch.manual_seed(0)
        net = MLP([3, 16, 16, 3], activation="tanh", granularity=g).cuda()
        step = TrainStep(lambda x, y, net=net: net.logits_and_loss(x, y, "cross_entropy")[1],
                         SGD(net.parameters(), lr=0.1, momentum=0.9), mode=mode,
                         precision=precision)
        for x, y in batches:
            step(x, y)
        if mode == "graph":
            assert step.fallback is None and step._graph is not None
        weights[g] = [p.detach().clone() for p in net.parameters()]
    tol = dict(rtol=1e-4, atol=1e-5) if precision == "32-true" else dict(rtol=1e-2, atol=1e-3)
    for a, b in zip(weights["network"], weights["op"], strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize(("sizes", "bias", "shape"), [([3, 2], True, (7, 3)),
                                                      ([3, 4, 2], False, (7, 3)),
                                                      ([3, 4, 2], True, (2, 5, 3)),
                                                      ([3, 4, 2], True, (3,))])
def test_one_layer_no_bias_and_any_batch_shape_run_the_loop_as_the_op_path(sizes, bias, shape):
    torch.manual_seed(0)
    net = MLP(sizes, activation="gelu", bias=bias).double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    res = {}
    for g in ("op", "network"):
        net.granularity = g
        out = net(x)
        grads = torch.autograd.grad((out**2).sum(), [x, *net.parameters()])
        if len(shape) == 2:  # and with the cross-entropy in the loop
            _, value = net.logits_and_loss(x, torch.arange(shape[0]) % sizes[-1],
                                           "cross_entropy")
            grads += torch.autograd.grad(value, [x, *net.parameters()])
        res[g] = out, grads
    assert torch.equal(res["op"][0], res["network"][0])
    assert all(torch.equal(a, b) for a, b in zip(res["op"][1], res["network"][1], strict=True))


@pytest.mark.parametrize("layout,pool,activation", [
    ((1, 40), None, "relu"), ((1, 40), "max", "gelu"), ((1, 40), "avg", "leaky_relu"),
    ((1, 8, 8), "avg", "tanh"), ((1, 8, 8), None, "sigmoid"), ((2, 6, 6), "max", "softplus"),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_cnn_in_the_loop_is_the_op_path_bit_for_bit(layout, pool, activation, dtype):
    """Convolutions, pools, the flatten and the linear layer plug into the loop through their
    LayerMath (functional/conv_math.py): the same logits, loss and gradients as op by op."""
    channels = [4, 4] if len(layout) == 3 and pool else [4, 4, 4]
    torch.manual_seed(0)
    op_net = CNN(layout, 10, channels=channels, pool=pool, activation=activation).to(dtype)
    loop = CNN(layout, 10, channels=channels, pool=pool, activation=activation,
               granularity="network").to(dtype)
    loop.load_state_dict(op_net.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, math.prod(layout), generator=gen, dtype=dtype)
    y = torch.randint(0, 10, (8,), generator=gen)
    (la, loss_a), (lb, loss_b) = (net.logits_and_loss(x, y, "cross_entropy")
                                  for net in (op_net, loop))
    loss_a.backward()
    loss_b.backward()
    assert torch.equal(la, lb) and torch.equal(loss_a, loss_b)
    assert torch.equal(op_net.pre_activation(x), loop.pre_activation(x))
    for (name, p), q in zip(op_net.named_parameters(), loop.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name
    assert _node(loop, x, y) == "NetworkFunctionBackward"


def test_a_cnn_with_a_norm_or_dropout_loops_at_granularity_network():
    """Their math is in the loop too (``functional/norm_math.py``; bits: test_network_norm)."""
    x, y = torch.randn(8, 40), torch.randint(0, 10, (8,))
    for net in (CNN((1, 40), 10, norm="batch", granularity="network"),
                CNN((1, 40), 10, dropout=0.2, granularity="network")):
        assert _node(net, x, y) == "NetworkFunctionBackward"


def _node(net, x, y) -> str:
    """The autograd node the cross-entropy's loss comes from (which path ran)."""
    return type(net.logits_and_loss(x, y, "cross_entropy")[1].grad_fn).__name__


@pytest.mark.parametrize("pool", [None, "max", "avg"])
def test_a_cnn_in_the_loop_under_bf16_autocast_is_the_op_path(pool):
    """Under autocast the loop casts each layer's tensors as its op-level Function would
    (convolutions in bfloat16; pools and the flatten keep their input's dtype)."""
    torch.manual_seed(0)
    op_net = CNN((1, 40), 10, pool=pool)
    loop = CNN((1, 40), 10, pool=pool, granularity="network")
    loop.load_state_dict(op_net.state_dict())
    x, y = torch.randn(8, 40), torch.randint(0, 10, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (la, loss_a), (lb, loss_b) = (net.logits_and_loss(x, y, "cross_entropy")
                                      for net in (op_net, loop))
    loss_a.backward()
    loss_b.backward()
    assert la.dtype == lb.dtype == torch.bfloat16 and torch.equal(la, lb)
    for (name, p), q in zip(op_net.named_parameters(), loop.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name
