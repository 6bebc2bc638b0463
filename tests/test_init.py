# pytest tests/test_init.py
"""Initialization: the std each scale rule gives, normal vs uniform, torch.nn.init as the
oracle, reproducible draws, errors that name the key, and the symmetry that zeros leave."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from neuronlab import MLP, Layer, initialize_, zeros_
from neuronlab.init import ACTIVATION_GAINS, DISTRIBUTIONS, SCHEMES, init_std

FAN_IN, FAN_OUT = 400, 300  # weight (FAN_OUT, FAN_IN): 120 000 draws, std known to ~0.3 %
STD_RTOL = 0.03


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _big_layer(activation: str = "relu") -> Layer:
    layer = Layer(FAN_IN, FAN_OUT, activation=activation)
    with torch.no_grad():
        layer.bias.fill_(1.0)  # so "biases are zero afterwards" is not vacuous
    return layer


def _expected_std(scheme: str, activation: str = "relu", std=None, gain=None) -> float:
    """The formulas, written out independently of neuronlab.init."""
    if scheme == "fixed":
        return std
    if scheme == "lecun":
        return 1 / math.sqrt(FAN_IN)
    if scheme == "xavier":
        return (1.0 if gain is None else gain) * math.sqrt(2 / (FAN_IN + FAN_OUT))
    g = {"relu": math.sqrt(2), "tanh": 5 / 3, "identity": 1.0}[activation] if gain is None else gain
    return g / math.sqrt(FAN_IN)


def _check_sample(w: torch.Tensor, std: float, distribution: str) -> None:
    assert w.std().item() == pytest.approx(std, rel=STD_RTOL)
    assert abs(w.mean().item()) < 0.02 * std  # the standard error of the mean is 0.003·std
    if distribution == "uniform":
        bound = math.sqrt(3) * std
        assert w.abs().max().item() <= bound
        assert w.abs().max().item() >= 0.99 * bound


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_std_matches_the_formula(scheme, distribution):
    std = 0.05 if scheme == "fixed" else None
    layer = initialize_(_big_layer(), distribution, scheme, std=std, generator=_gen())
    expected = _expected_std(scheme, "relu", std=std)
    assert init_std(FAN_IN, FAN_OUT, scheme, std=std, activation="relu") == pytest.approx(expected)
    _check_sample(layer.weight.detach(), expected, distribution)
    assert torch.equal(layer.bias.detach(), torch.zeros(FAN_OUT))


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_scale_multiplies_the_std(scheme, distribution):
    std = 0.05 if scheme == "fixed" else None
    base = initialize_(_big_layer(), distribution, scheme, std=std, generator=_gen())
    scaled = initialize_(_big_layer(), distribution, scheme, 2.5, std=std, generator=_gen())
    # the same draws, stretched: the weights themselves are 2.5× (up to rounding)
    torch.testing.assert_close(scaled.weight, 2.5 * base.weight)
    _check_sample(scaled.weight.detach(), 2.5 * _expected_std(scheme, std=std), distribution)


@pytest.mark.parametrize("activation", ["relu", "tanh", "identity"])
def test_kaiming_uses_the_activation_gain(activation):
    layer = initialize_(_big_layer(activation), "normal", "kaiming", generator=_gen())
    _check_sample(layer.weight.detach(), _expected_std("kaiming", activation), "normal")
    expected_gain = {"relu": math.sqrt(2), "tanh": 5 / 3, "identity": 1.0}[activation]
    assert ACTIVATION_GAINS[activation] == pytest.approx(expected_gain)
    assert ACTIVATION_GAINS[activation] == pytest.approx(
        nn.init.calculate_gain("linear" if activation == "identity" else activation)
    )
    # a given gain wins over the activation's
    layer = initialize_(_big_layer(activation), "normal", "kaiming", gain=3.0, generator=_gen())
    _check_sample(layer.weight.detach(), 3.0 / math.sqrt(FAN_IN), "normal")


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_xavier_gain_is_one_unless_given(activation):
    layer = initialize_(_big_layer(activation), "uniform", "xavier", generator=_gen())
    _check_sample(layer.weight.detach(), math.sqrt(2 / (FAN_IN + FAN_OUT)), "uniform")
    layer = initialize_(_big_layer(activation), "uniform", "xavier", gain=2.0, generator=_gen())
    _check_sample(layer.weight.detach(), 2.0 * math.sqrt(2 / (FAN_IN + FAN_OUT)), "uniform")


TORCH_COUNTERPARTS = [
    ("normal", "xavier", lambda w, g: nn.init.xavier_normal_(w, generator=g)),
    ("uniform", "xavier", lambda w, g: nn.init.xavier_uniform_(w, generator=g)),
    (
        "normal",
        "kaiming",
        lambda w, g: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", generator=g),
    ),
    (
        "uniform",
        "kaiming",
        lambda w, g: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu", generator=g),
    ),
]


@pytest.mark.parametrize(
    "distribution, scheme, torch_init", TORCH_COUNTERPARTS,
    ids=[f"{d}-{s}" for d, s, _ in TORCH_COUNTERPARTS],
)
def test_matches_torch_nn_init(distribution, scheme, torch_init):
    ours = initialize_(_big_layer("relu"), distribution, scheme, generator=_gen(0)).weight.detach()
    theirs = torch_init(torch.empty(FAN_OUT, FAN_IN), _gen(1))  # (fan_out, fan_in), like ours
    assert ours.std().item() == pytest.approx(theirs.std().item(), rel=STD_RTOL)
    assert ours.abs().max().item() == pytest.approx(
        theirs.abs().max().item(), rel=0.2 if distribution == "normal" else 0.01
    )


def test_initializes_every_layer_of_an_mlp():
    model = MLP([50, 40, 30, 20], activation="tanh")
    initialize_(model, "normal", "lecun", generator=_gen())
    for layer in model.layers:
        assert layer.weight.std().item() == pytest.approx(1 / math.sqrt(layer.n_in), rel=0.1)
        assert torch.equal(layer.bias.detach(), torch.zeros(layer.n_out))


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_same_generator_seed_same_weights(distribution):
    a = initialize_(MLP([6, 5, 3]), distribution, "kaiming", generator=_gen(42))
    b = initialize_(MLP([6, 5, 3]), distribution, "kaiming", generator=_gen(42))
    c = initialize_(MLP([6, 5, 3]), distribution, "kaiming", generator=_gen(43))
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        if pa.dim() == 2:
            assert not torch.equal(pa, pc)


def test_returns_the_module():
    layer = Layer(3, 2)
    assert initialize_(layer, generator=_gen()) is layer
    assert zeros_(layer) is layer


# ---- errors name the key ------------------------------------------------------------------


def test_unknown_scheme_suggests():
    with pytest.raises(ValueError, match="init.scheme='xavir' is not one of") as info:
        initialize_(Layer(3, 2), scheme="xavir")
    message = str(info.value)
    assert all(name in message for name in SCHEMES)
    assert "did you mean 'xavier'" in message
    with pytest.raises(ValueError, match="init.scheme='xavir'"):
        init_std(3, 2, "xavir")


def test_unknown_distribution():
    with pytest.raises(ValueError, match="init.distribution='gaussian'.*normal, uniform"):
        initialize_(Layer(3, 2), distribution="gaussian")


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf")])
def test_bad_scale(scale):
    with pytest.raises(ValueError, match="init.scale="):
        initialize_(Layer(3, 2), scale=scale)


def test_fixed_requires_std():
    with pytest.raises(ValueError, match="init.std is required"):
        initialize_(Layer(3, 2), scheme="fixed")
    with pytest.raises(ValueError, match="init.std=0"):
        initialize_(Layer(3, 2), scheme="fixed", std=0)


@pytest.mark.parametrize("scheme", ["lecun", "xavier", "kaiming"])
def test_std_only_with_fixed(scheme):
    message = f"init.std=0.1 is only used with init.scheme='fixed'.*{scheme}"
    with pytest.raises(ValueError, match=message):
        initialize_(Layer(3, 2), scheme=scheme, std=0.1)


def test_bad_gain():
    with pytest.raises(ValueError, match="init.gain="):
        initialize_(Layer(3, 2), scheme="xavier", gain=0.0)


def test_a_bad_value_changes_nothing():
    layer = Layer(3, 2)
    before = [p.detach().clone() for p in layer.parameters()]
    with pytest.raises(ValueError):
        initialize_(layer, scheme="fixed")
    for p, q in zip(layer.parameters(), before, strict=True):
        assert torch.equal(p, q)


# ---- zeros: the symmetry ------------------------------------------------------------------


def _assert_rows_identical(t: torch.Tensor, exact: bool = True) -> None:
    """Every neuron (row) holds the same values as the first (exactly, or to rounding)."""
    tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(t, t[:1].expand_as(t), **tol)


@pytest.mark.parametrize("backprop", ["manual", "autograd"])
def test_zeros_leave_hidden_neurons_identical(backprop):
    model = zeros_(MLP([4, 5, 6, 3], activation="sigmoid", backprop=backprop).double())
    assert all(torch.count_nonzero(p) == 0 for p in model.parameters())
    x = torch.randn(8, 4, generator=_gen(), dtype=torch.float64)
    y = torch.randint(0, 3, (8,), generator=_gen())
    loss_fn = nn.CrossEntropyLoss()

    loss_fn(model(x), y).backward()
    hidden = model.layers[:-1]
    for layer in hidden:
        _assert_rows_identical(layer.weight.grad)  # every hidden neuron, the same gradient
        _assert_rows_identical(layer.bias.grad[:, None])
    last = model.layers[-1]
    _assert_rows_identical(last.weight.grad.t())  # identical hidden inputs: identical columns
    assert last.weight.grad.abs().sum() > 0  # σ(0) = ½ feeds forward, so this is not vacuous

    # and it persists: a few plain gradient steps never tell the hidden neurons apart
    # (to rounding: a vectorized matmul may sum identical rows in a different order)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
        model.zero_grad()
        loss_fn(model(x), y).backward()
    for layer in hidden:
        assert layer.weight.grad.abs().sum() > 0
        _assert_rows_identical(layer.weight.grad, exact=False)
        _assert_rows_identical(layer.weight.detach(), exact=False)
