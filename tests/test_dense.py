# pytest tests/test_dense.py
"""The fused layer (``functional.dense``, ``model.fused=true``): one Function per layer, the
same bits as the per-op path (linear's Function, then the activation's) in values and
gradients, right on finite differences, fewer autograd nodes, and watched by the same checks
(compare_gradients catches a wrong fused backward and a wrong derivative formula)."""

from __future__ import annotations

import pytest
import torch
from planted import PLANTS

import neuronlab.functional.dense as D
from neuronlab import MLP, Neuron
from neuronlab.errors import ConfigError
from neuronlab.functional import ACTIVATIONS, get_activation, linear
from neuronlab.functional.dense import FUSED_ACTIVATIONS, DenseFunction, dense
from neuronlab.gradcheck import compare_gradients
from neuronlab.modules import ModelConfig


def _layer_inputs(shape, dtype, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    w = torch.randn(3, shape[-1], generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    b = torch.randn(3, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    return x, w, (b if bias else None)


def _value_and_grads(fn, x, w, b):
    out = fn(x, w, b)
    up = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    inputs = tuple(t for t in (x, w, b) if t is not None)
    return out, torch.autograd.grad(out, inputs, up.to(out.dtype))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(8, 5), (2, 4, 5), (5,)])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_is_the_per_op_path_bit_for_bit(activation, dtype, shape, bias):
    x, w, b = _layer_inputs(shape, dtype, bias)
    fused, fused_grads = _value_and_grads(lambda *a: dense(*a, activation), x, w, b)
    per_op, per_op_grads = _value_and_grads(
        lambda x, w, b: get_activation(activation)(linear(x, w, b)), x, w, b)
    assert fused.dtype == per_op.dtype and torch.equal(fused, per_op)
    assert all(torch.equal(f, p) for f, p in zip(fused_grads, per_op_grads, strict=True))


@pytest.mark.parametrize("activation", FUSED_ACTIVATIONS)
def test_dense_under_bf16_autocast_is_the_per_op_path(activation):
    x, w, b = _layer_inputs((16, 5), torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, fused_grads = _value_and_grads(lambda *a: dense(*a, activation), x, w, b)
        per_op, per_op_grads = _value_and_grads(
            lambda x, w, b: get_activation(activation)(linear(x, w, b)), x, w, b)
    assert fused.dtype == torch.bfloat16 and torch.equal(fused, per_op)
    assert all(g.dtype == torch.float32 for g in fused_grads)  # float32 leaves: float32 grads
    assert all(torch.equal(f, p) for f, p in zip(fused_grads, per_op_grads, strict=True))


@pytest.mark.parametrize("activation", FUSED_ACTIVATIONS)
def test_dense_gradcheck_and_double_backward(activation):
    # inputs away from relu's kink, where finite differences are valid
    x, w, b = _layer_inputs((4, 5), torch.float64)
    with torch.no_grad():
        x.copy_(x.sign() * (x.abs() + 0.1))

    def fn(x, w, b):
        return dense(x, w, b, activation)

    assert torch.autograd.gradcheck(fn, (x, w, b))
    if activation != "relu":  # relu'' is 0 almost everywhere and not smooth at the kink
        assert torch.autograd.gradgradcheck(fn, (x, w, b))


def test_dense_under_vmap_matches_a_loop():
    x, w, b = _layer_inputs((3, 4, 5), torch.float64)
    batched = torch.func.vmap(lambda xi: dense(xi, w, b, "tanh"))(x.detach())
    looped = torch.stack([dense(xi, w, b, "tanh") for xi in x.detach()])
    torch.testing.assert_close(batched, looped)


def _grad_fn_names(t: torch.Tensor) -> list[str]:
    names, todo, seen = [], [t.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        todo.extend(n for n, _ in node.next_functions)
    return names


def test_a_fused_mlp_is_one_node_per_layer_with_the_same_gradients():
    torch.manual_seed(0)
    model = MLP([4, 8, 8, 3], activation="tanh").double()
    x = torch.randn(16, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    grads = {}
    for fused in (False, True):
        model.fused = fused
        assert all(layer.fused is fused for layer in model.layers)
        out = model(x)
        nodes = _grad_fn_names(out)
        expected = {"DenseFunctionBackward": 2, "TanhFunctionBackward": 0} if fused else \
            {"DenseFunctionBackward": 0, "TanhFunctionBackward": 2}
        assert {k: nodes.count(k) for k in expected} == expected
        loss = torch.nn.functional.cross_entropy(out, y)
        grads[fused] = torch.autograd.grad(loss, list(model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(grads[False], grads[True], strict=True))
    assert compare_gradients(model, x, y).ok


def test_a_fused_neuron_keeps_its_shape():
    neuron = Neuron(3, fused=True).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    out = neuron(x)
    assert out.shape == (7,) and "DenseFunctionBackward" in _grad_fn_names(out)
    neuron.fused = False
    torch.testing.assert_close(neuron(x), out, rtol=0, atol=0)


class _ChainSkipped(DenseFunction):
    """A plausible fused-layer mistake: the activation's chain step left out (∂L/∂z = ∂L/∂a)."""

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, _ = ctx.saved_tensors
        grads = D.weighted_sum_backward(grad_output, input, weight, ctx.needs_input_grad,
                                        ctx.has_bias)
        return *grads, None


def _fused_model_and_batch(activation: str):
    torch.manual_seed(0)
    model = MLP([2, 8, 8, 2], activation=activation, fused=True).double()
    gen = torch.Generator().manual_seed(0)
    return model, torch.randn(32, 2, generator=gen), torch.randint(0, 2, (32,), generator=gen)


def test_compare_gradients_catches_a_wrong_fused_backward(monkeypatch):
    model, x, y = _fused_model_and_batch("sigmoid")
    assert compare_gradients(model, x, y).ok
    monkeypatch.setattr(D, "DenseFunction", _ChainSkipped)
    report = compare_gradients(model, x, y)
    assert not report.ok
    assert {r.name for r in report.rows if not r.passed} <= {
        f"layers.{i}.{k}" for i in (0, 1) for k in ("weight", "bias")}


@pytest.mark.parametrize("name", [n for n, p in PLANTS.items()
                                  if p.op in FUSED_ACTIVATIONS and hasattr(p.swap, "formula")])
def test_a_wrong_derivative_formula_reaches_the_fused_layer(name, monkeypatch):
    plant = PLANTS[name]
    model, x, y = _fused_model_and_batch(plant.op)
    plant.install(monkeypatch)
    assert not compare_gradients(model, x, y).ok


def test_model_fused_must_be_a_bool():
    assert ModelConfig(fused=True).fused is True
    with pytest.raises(ConfigError, match="model.fused='yes' must be true or false"):
        ModelConfig(fused="yes")
    with pytest.raises(ConfigError, match="fused=1 must be true or false"):
        MLP([2, 2], fused=1)


def test_a_fused_training_run_is_the_per_op_run_bit_for_bit(tmp_path):
    from neuronlab.config import compose
    from neuronlab.training.run import train

    common = ["data=moons", "model=mlp", "model.activation=tanh", "trainer.max_epochs=3",
              "callbacks.progress_bar=null"]
    runs = {fused: train(compose([*common, f"model.fused={str(fused).lower()}"],
                                 output_dir=tmp_path / str(fused))) for fused in (False, True)}
    assert all(r["status"] == "ok" for r in runs.values())
    assert runs[True]["task"].net.fused is True
    a, b = (r["task"].net.state_dict() for r in (runs[False], runs[True]))
    assert all(torch.equal(a[k], b[k]) for k in a)
