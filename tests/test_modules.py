# pytest tests/test_modules.py
"""Neuron → Layer → MLP: a layer is its neurons side by side, both backprop modes agree,
the network compiles, and per-sample gradients flow through the manual Functions."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from neuronlab import MLP, Layer, Neuron, initialize_
from neuronlab.functional import ACTIVATIONS, cross_entropy

ACTIVATION_NAMES = list(ACTIVATIONS)
MODES = ["manual", "autograd"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int = 1, dtype=torch.float64, device="cpu") -> torch.Tensor:
    return torch.randn(shape, generator=_gen(seed), dtype=dtype).to(device)


def _mlp(sizes=(4, 8, 6, 3), dtype=torch.float64, device="cpu", **kwargs) -> MLP:
    """An MLP with seeded weights and non-zero biases (so a bias bug cannot hide)."""
    model = MLP(list(sizes), **kwargs)
    initialize_(model, generator=_gen(0))
    with torch.no_grad():
        for layer in model.layers:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=_gen(7)) * 0.1)
    return model.to(dtype=dtype, device=device)


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


# ---- a layer is its neurons side by side --------------------------------------------------


def _dot_product_bound(x, weight, bias) -> torch.Tensor:
    """How far two correct x·w + b of n terms may differ, whatever the summation order, FMA or
    blocking of the BLAS: each is within γ_n·(|x|·|w| + |b|) of the exact value, γ_n ≈ n·eps
    (Higham, Accuracy and Stability, §3.1), so two of them within 2γ_n; ×2 for margin."""
    eps = torch.finfo(x.dtype).eps
    n = x.shape[-1] + 1  # the bias is one more term
    return 4 * n * eps * (x.abs() @ weight.abs().t() + bias.abs())  # (*, n_out)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backprop", MODES)
@pytest.mark.parametrize("shape", [(4,), (5, 4), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_layer_equals_its_neurons(activation, shape, backprop, dtype, device):
    """Neuron i computes what column i of the layer computes, to rounding: the same dot product,
    though no BLAS promises the same bits for a (*, 1) and a (*, 3) GEMM."""
    layer = initialize_(Layer(4, 3, activation=activation, backprop=backprop), generator=_gen())
    layer = layer.to(dtype=dtype, device=device)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    x = _randn(*shape, dtype=dtype, device=device)
    out = layer(x)
    assert out.shape == (*shape[:-1], 3)
    with torch.no_grad():
        bound = _dot_product_bound(x, layer.weight, layer.bias)  # (*, 3)
    eps = torch.finfo(dtype).eps
    for i in range(layer.n_out):
        neuron = Neuron(4, activation=activation, backprop=backprop).to(dtype=dtype,
                                                                         device=device)
        with torch.no_grad():
            neuron.weight.copy_(layer.weight[i : i + 1])  # row i of the layer
            neuron.bias.copy_(layer.bias[i : i + 1])
        assert neuron.w.shape == (4,)
        y = neuron(x)
        assert y.shape == shape[:-1]
        # the weighted sum: the same dot product, to the rounding error of a dot product
        z_gap = (neuron.pre_activation(x) - layer.pre_activation(x)[..., i]).abs()
        assert (z_gap <= bound[..., i]).all(), (z_gap, bound[..., i])
        # the activation: |a'| ≤ 1.13 carries the gap through, plus a few ulps of its own
        a_gap = (y - out[..., i]).abs()
        allowed = 1.13 * bound[..., i] + 8 * eps * out[..., i].abs() + torch.finfo(dtype).tiny
        assert (a_gap <= allowed).all(), (a_gap, allowed)


def test_neuron_is_weighted_sum_plus_bias_then_activation():
    neuron = Neuron(3, activation="sigmoid").double()
    with torch.no_grad():
        neuron.weight.copy_(torch.tensor([[0.5, -1.0, 2.0]]))
        neuron.bias.fill_(0.25)
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    z = x @ torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) + 0.25
    torch.testing.assert_close(neuron.pre_activation(x), z)
    torch.testing.assert_close(neuron(x), torch.sigmoid(z))


# ---- the backprop switch ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda: Neuron(3), lambda: Layer(3, 2), lambda: MLP([3, 4, 2])],
    ids=["Neuron", "Layer", "MLP"],
)
def test_backprop_is_switchable(make):
    module = make()
    assert module.backprop == "manual"
    module.backprop = "autograd"
    assert module.backprop == "autograd"
    module.backprop = "manual"
    assert module.backprop == "manual"
    with pytest.raises(ValueError, match="autograd, manual"):
        module.backprop = "symbolic"
    assert module.backprop == "manual"  # a bad value leaves the mode as it was


def test_mlp_switch_reaches_every_layer():
    model = MLP([3, 4, 5, 2], backprop="autograd")
    assert all(layer.backprop == "autograd" for layer in model.layers)
    model.backprop = "manual"
    assert all(layer.backprop == "manual" for layer in model.layers)


def test_bad_backprop_at_construction():
    for make in (lambda: Neuron(3, backprop="x"), lambda: Layer(3, 2, backprop="x"),
                 lambda: MLP([3, 2], backprop="x")):
        with pytest.raises(ValueError, match="backprop='x'.*autograd, manual"):
            make()


def test_manual_mode_runs_the_manual_functions():
    model = _mlp()
    x = _randn(5, 4)
    assert type(model(x).grad_fn).__name__ == "LinearFunctionBackward"
    model.backprop = "autograd"
    assert type(model(x).grad_fn).__name__ != "LinearFunctionBackward"


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "gelu", "softplus"])
def test_both_modes_give_same_outputs_and_gradients(activation, device):
    model = _mlp(activation=activation, device=device)
    _check_both_modes(model, device)


def test_both_modes_without_bias():
    model = MLP([4, 5, 3], bias=False).double()
    initialize_(model, generator=_gen())
    assert all(layer.bias is None for layer in model.layers)
    assert len(list(model.parameters())) == 2
    _check_both_modes(model, "cpu")


def _check_both_modes(model: MLP, device: str) -> None:
    x = _randn(6, 4, device=device)
    y = torch.tensor([0, 2, 1, 1, 0, 2], device=device)
    results = {}
    for mode in MODES:
        model.backprop = mode
        model.zero_grad(set_to_none=True)
        out = model(x)
        cross_entropy(out, y).backward()
        results[mode] = (out.detach(), _grads(model))
    (out_m, grads_m), (out_a, grads_a) = results["manual"], results["autograd"]
    torch.testing.assert_close(out_m, out_a)
    assert grads_m.keys() == grads_a.keys()
    for name in grads_m:
        torch.testing.assert_close(grads_m[name], grads_a[name], msg=name)


# ---- MLP structure ------------------------------------------------------------------------


def test_mlp_layers():
    model = MLP([4, 8, 6, 3], activation="tanh")
    assert isinstance(model.layers, nn.ModuleList)
    assert len(model.layers) == 3
    assert all(isinstance(layer, Layer) for layer in model.layers)
    assert [(layer.n_in, layer.n_out) for layer in model.layers] == [(4, 8), (8, 6), (6, 3)]
    assert [layer.weight.shape for layer in model.layers] == [(8, 4), (6, 8), (3, 6)]
    assert [layer.activation for layer in model.layers] == ["tanh", "tanh", "identity"]


def test_mlp_output_activation_and_pre_activation():
    logits_model = _mlp(activation="relu", output_activation=None)
    x = _randn(5, 4)
    torch.testing.assert_close(logits_model(x), logits_model.pre_activation(x))

    model = _mlp(activation="relu", output_activation="sigmoid")
    assert model.layers[-1].activation == "sigmoid"
    logits = model.pre_activation(x)
    torch.testing.assert_close(model(x), torch.sigmoid(logits))
    # the same parameters without the output activation give the same logits
    logits_model.load_state_dict(model.state_dict())
    torch.testing.assert_close(logits_model(x), logits)


# ---- torch.compile ------------------------------------------------------------------------


def _eager_and_compiled(backend: str, backprop: str):
    model = _mlp(dtype=torch.float32, backprop=backprop)
    x = _randn(6, 4, dtype=torch.float32)
    y = torch.tensor([0, 2, 1, 1, 0, 2])
    results = []
    for fn in (model, torch.compile(model, backend=backend, fullgraph=True)):
        model.zero_grad(set_to_none=True)
        out = fn(x)
        cross_entropy(out, y).backward()
        results.append((out.detach(), _grads(model)))
    return results


def _assert_same(results):
    (out_e, grads_e), (out_c, grads_c) = results
    torch.testing.assert_close(out_c, out_e)
    for name in grads_e:
        torch.testing.assert_close(grads_c[name], grads_e[name], msg=name)


@pytest.mark.parametrize("backprop", MODES)
def test_compile_fullgraph_aot_eager(backprop):
    """The manual Functions trace into one graph (no graph break) and match eager."""
    torch.compiler.reset()
    _assert_same(_eager_and_compiled("aot_eager", backprop))


def test_compiled_model_follows_the_switch():
    """Flipping ``backprop`` after compiling recompiles (dynamo guards on the attribute): the
    manual graph calls the autograd Functions, the autograd graph plain torch ops."""
    torch.compiler.reset()
    graphs = []

    def backend(gm, example_inputs):  # record each traced graph, run it as is
        graphs.append({str(node.target) for node in gm.graph.nodes if node.op == "call_function"})
        return gm.forward

    model = _mlp(dtype=torch.float32)
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    x = _randn(6, 4, dtype=torch.float32)
    for mode in ["manual", "autograd", "manual"]:
        model.backprop = mode
        torch.testing.assert_close(compiled(x), model(x))
    assert len(graphs) == 2  # one per mode; switching back reuses the first
    assert "autograd_function_apply" in graphs[0]
    assert "autograd_function_apply" not in graphs[1]


@pytest.mark.slow  # ~20 s cold (C++ codegen on CPU), ~4 s with a warm inductor cache
def test_compile_fullgraph_inductor():
    """The default backend (inductor generates C++ on CPU): the same outputs and gradients."""
    torch.compiler.reset()
    start = time.perf_counter()
    _assert_same(_eager_and_compiled("inductor", "manual"))
    assert time.perf_counter() - start < 60


# ---- per-sample gradients -----------------------------------------------------------------


def test_per_sample_gradients_vmap_grad_functional_call():
    """vmap(grad(loss)) over single examples (input (n_in,), target ()) == a loop of backwards."""
    model = _mlp(activation="tanh")  # manual mode, float64
    params = {name: p.detach() for name, p in model.named_parameters()}
    x = _randn(5, 4)
    y = torch.tensor([0, 2, 1, 1, 0])

    def loss_fn(params, xi, yi):
        logits = torch.func.functional_call(model, params, (xi,))  # (n_out,)
        return cross_entropy(logits, yi)

    per_sample = torch.func.vmap(torch.func.grad(loss_fn), in_dims=(None, 0, 0))(params, x, y)
    assert per_sample.keys() == params.keys()
    for k in range(len(x)):
        model.zero_grad(set_to_none=True)
        cross_entropy(model(x[k]), y[k]).backward()
        for name, p in model.named_parameters():
            assert per_sample[name].shape == (len(x), *p.shape)
            torch.testing.assert_close(per_sample[name][k], p.grad, msg=name)


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: Neuron(0), "n_in=0"),
        (lambda: Layer(0, 3), "n_in=0"),
        (lambda: Layer(3, 0), "n_out=0"),
        (lambda: Layer(3, 2.5), "n_out=2.5"),
        (lambda: Layer(True, 2), "n_in=True"),
        (lambda: MLP([3]), r"sizes=\[3\]"),
        (lambda: MLP([3, 0, 2]), r"sizes\[1\]=0"),
    ],
)
def test_bad_sizes(make, key):
    with pytest.raises(ValueError, match=key):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: Neuron(3, activation="sigmoidd"),
        lambda: Layer(3, 2, activation="sigmoidd"),
        lambda: MLP([3, 2], activation="sigmoidd"),
        lambda: MLP([3, 2], output_activation="sigmoidd"),
    ],
)
def test_unknown_activation(make):
    with pytest.raises(ValueError, match="activation='sigmoidd'") as info:
        make()
    message = str(info.value)
    for name in ACTIVATION_NAMES:
        assert name in message
    assert "did you mean 'sigmoid'" in message
