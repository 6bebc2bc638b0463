# pytest tests/test_optim.py
"""The update rule w ← w − lr · g, written out, against torch.optim.SGD step by step."""

from __future__ import annotations

import io
import math

import pytest
import torch

from neuronlab import MLP, initialize_
from neuronlab.functional import cross_entropy
from neuronlab.optim import (
    SGD,
    OptimizerConfig,
    SchedulerConfig,
    build_optimizer,
    build_scheduler,
)

STEPS = 20

CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "weight_decay": dict(lr=0.1, weight_decay=1e-2),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "dampening": dict(lr=0.1, momentum=0.9, dampening=0.5),
    "all": dict(lr=0.05, momentum=0.8, weight_decay=1e-2, nesterov=True),
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model() -> MLP:
    model = MLP([4, 8, 3], activation="tanh").double()  # manual backprop
    initialize_(model, "normal", "xavier", generator=_gen(0))
    with torch.no_grad():
        for layer in model.layers:
            layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=_gen(1)))
    return model


def _batches(steps: int = STEPS) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = _gen(2)
    return [
        (
            torch.randn(6, 4, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (6,), generator=g),
        )
        for _ in range(steps)
    ]


def _step(model, optimizer, batch) -> None:
    x, y = batch
    optimizer.zero_grad()
    cross_entropy(model(x), y).backward()
    optimizer.step()


def _assert_same_params(a, b) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        # the same arithmetic in the same order: equal to the last bit
        assert torch.equal(p, q), name


@pytest.mark.parametrize("config", list(CONFIGS))
def test_matches_torch_sgd_step_by_step(config):
    ours, theirs = _model(), _model()
    opt_ours = SGD(ours.parameters(), **CONFIGS[config])
    opt_theirs = torch.optim.SGD(theirs.parameters(), foreach=False, **CONFIGS[config])
    start = [p.detach().clone() for p in ours.parameters()]
    for batch in _batches():
        _step(ours, opt_ours, batch)
        _step(theirs, opt_theirs, batch)
        _assert_same_params(ours, theirs)
    assert any(not torch.equal(p, s) for p, s in zip(ours.parameters(), start, strict=True))


@pytest.mark.parametrize("config", ["plain", "momentum", "all"])
def test_matches_torch_sgd_with_mixed_dtypes_and_late_gradients(config):
    """One group of float32 and float64 tensors (updated tensor by tensor), one of which gets
    its first gradient (its velocity's v₀) only at the third step."""
    g = _gen(3)
    start = [torch.randn(5, dtype=torch.float64, generator=g), torch.randn(3, 2, generator=g),
             torch.randn(4, generator=g)]
    ours = [w.clone().requires_grad_() for w in start]
    theirs = [w.clone().requires_grad_() for w in start]
    opt_ours = SGD(ours, **CONFIGS[config])
    opt_theirs = torch.optim.SGD(theirs, foreach=False, **CONFIGS[config])
    for step in range(6):
        for ws, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            used = ws if step >= 2 else ws[:2]
            sum((w.double() ** 2).sum() * (i + 1) for i, w in enumerate(used)).backward()
            opt.step()
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)
    assert all(not torch.equal(a, s) for a, s in zip(ours, start, strict=True))


def test_step_hooks_and_the_profiler_still_see_the_step():
    model = _model()
    optimizer = SGD(model.parameters(), lr=0.1)
    calls = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    _step(model, optimizer, _batches(1)[0])
    assert calls == ["pre", "post"]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _step(model, optimizer, _batches(1)[0])
    names = {e.key for e in prof.key_averages()}
    assert "Optimizer.step#SGD.step" in names and "Optimizer.zero_grad#SGD.zero_grad" in names


def test_one_plain_step_is_w_minus_lr_grad():
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = SGD(model.parameters(), lr=0.3)
    x, y = _batches(1)[0]
    cross_entropy(model(x), y).backward()
    optimizer.step()
    for p, w in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), w - 0.3 * p.grad, rtol=0, atol=1e-15)


def test_parameters_without_grad_are_left_alone():
    model = _model()
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _batches(1)[0]
    last = model.layers[-1]
    cross_entropy(last(x.new_ones(6, 8)), y).backward()  # only the last layer gets gradients
    first_before = model.layers[0].weight.detach().clone()
    optimizer.step()
    assert torch.equal(model.layers[0].weight, first_before)
    assert model.layers[0].weight not in optimizer.state


def test_closure_returns_the_loss():
    model = _model()
    optimizer = SGD(model.parameters(), lr=0.1)
    x, y = _batches(1)[0]

    def closure():
        optimizer.zero_grad()
        loss = cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("lr", [0, -1, 0.0, float("nan")])
def test_bad_lr(lr):
    with pytest.raises(ValueError, match=r"^lr="):  # the library's words, not config keys
        SGD(_model().parameters(), lr=lr)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(momentum=-0.1), "momentum"),
        (dict(momentum=1.0), "momentum"),
        (dict(weight_decay=-1e-3), "weight_decay"),
        (dict(nesterov=True), "nesterov"),
        (dict(nesterov=True, momentum=0.9, dampening=0.1), "nesterov"),
    ],
)
def test_bad_hyperparameters(kwargs, key):
    with pytest.raises(ValueError, match=f"^{key}"):
        SGD(_model().parameters(), lr=0.1, **kwargs)


@pytest.mark.parametrize("config", ["momentum", "nesterov", "all"])
def test_state_dict_round_trip(config):
    """Save after half the steps, load into a fresh optimizer, go on: as if never interrupted."""
    batches = _batches()
    half = len(batches) // 2

    straight = _model()
    opt = SGD(straight.parameters(), **CONFIGS[config])
    for batch in batches:
        _step(straight, opt, batch)

    first = _model()
    opt_first = SGD(first.parameters(), **CONFIGS[config])
    for batch in batches[:half]:
        _step(first, opt_first, batch)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": opt_first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = _model()
    resumed.load_state_dict(saved["model"])
    opt_resumed = SGD(resumed.parameters(), lr=1.0)  # hyperparameters come from the state
    opt_resumed.load_state_dict(saved["optimizer"])
    assert opt_resumed.param_groups[0]["lr"] == CONFIGS[config]["lr"]
    assert len(opt_resumed.state) == len(list(resumed.parameters()))  # the velocities came too
    for batch in batches[half:]:
        _step(resumed, opt_resumed, batch)
    _assert_same_params(resumed, straight)


# ---- the learning-rate schedules, value by value -------------------------------------------


def _rates(schedule: dict, total: int, lr: float = 1.0) -> list[float]:
    opt = SGD(_model().parameters(), lr=lr)
    sched = build_scheduler(opt, SchedulerConfig(**schedule), total)
    rates = []
    for _ in range(total):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_constant_schedule():
    assert _rates({"name": "none"}, 5, lr=0.3) == [0.3] * 5


def test_step_schedule_halves_every_step_size_steps():
    assert _rates({"name": "step", "step_size": 2, "gamma": 0.5}, 6) == [1, 1, .5, .5, .25, .25]


def test_cosine_schedule_values():
    rates = _rates({"name": "cosine", "min_lr_ratio": 0.1}, 5)
    expected = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / 5)) for t in range(5)]
    assert rates == pytest.approx(expected, rel=1e-12)
    assert rates[0] == 1.0 and rates == sorted(rates, reverse=True)


def test_warmup_cosine_rises_linearly_then_follows_the_cosine():
    rates = _rates({"name": "warmup_cosine", "warmup_steps": 4, "min_lr_ratio": 0.0}, 10)
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0], rel=1e-12)
    tail = [0.5 * (1 + math.cos(math.pi * (t - 4) / 6)) for t in range(4, 10)]
    assert rates[4:] == pytest.approx(tail, rel=1e-12)


def test_unknown_schedule_and_optimizer_names():
    with pytest.raises(ValueError, match="scheduler.name='cosin'.*did you mean 'cosine'"):
        SchedulerConfig(name="cosin")
    with pytest.raises(ValueError, match="optimizer.name='sdg'"):
        OptimizerConfig(name="sdg", lr=0.1)


@pytest.mark.parametrize("name, kind", [("sgd", SGD), ("torch_sgd", torch.optim.SGD),
                                        ("adam", torch.optim.Adam)])
def test_optimizer_by_name(name, kind):
    opt = build_optimizer(_model().parameters(), OptimizerConfig(name=name, lr=0.25))
    assert type(opt) is kind and opt.param_groups[0]["lr"] == 0.25
