# pytest tests/test_step.py
"""``TrainStep``: eager is the plain loop bit for bit, compiled agrees, graph falls back on the
CPU with a message and (on a GPU) replays with no host sync; the learning rate stays live.

The oracle is the hand-written loop ``zero_grad; loss.backward(); SGD.step()``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from neuronlab import MLP, initialize_
from neuronlab.functional import get_loss
from neuronlab.optim import SGD, sgd_update_
from neuronlab.training.step import TrainStep, resolve_mode
from neuronlab.training.step_optimizer import StepOptimizer

SIZES = [8, 16, 16, 3]
STEPS = 6


def _net(backprop: str, device="cpu", seed: int = 0, fused: bool = False) -> MLP:
    net = MLP(SIZES, activation="relu", backprop=backprop, fused=fused)
    initialize_(net, distribution="normal", scheme="kaiming",
                generator=torch.Generator().manual_seed(seed))
    return net.to(device)


def _setup(backprop="manual", device="cpu", fused=False, **sgd):
    net = _net(backprop, device, fused=fused)
    opt = SGD(net.parameters(), **{"lr": 0.1, **sgd})
    loss = get_loss("cross_entropy", backprop)
    return net, opt, (lambda x, y: loss(net.pre_activation(x), y))


def _batches(device="cpu", n=STEPS, batch=32, last=None):
    g = torch.Generator().manual_seed(1)
    sizes = [batch] * n + ([last] if last else [])
    return [(torch.randn(b, SIZES[0], generator=g).to(device),
             torch.randint(0, SIZES[-1], (b,), generator=g).to(device)) for b in sizes]


def _hand_loop(net, opt, loss_fn, batches, sched=None):
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss_fn(x, y).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return [p.detach().clone() for p in net.parameters()]


def _max_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


SGD_SETTINGS = [dict(), dict(momentum=0.9, weight_decay=1e-3),
                dict(momentum=0.9, nesterov=True)]


@pytest.mark.parametrize("backprop", ["manual", "autograd"])
@pytest.mark.parametrize("sgd", SGD_SETTINGS, ids=["plain", "momentum_wd", "nesterov"])
def test_eager_step_is_the_hand_loop_bit_for_bit(backprop, sgd):
    batches = _batches(last=7)
    expected = _hand_loop(*_setup(backprop, **sgd), batches)
    net, opt, loss_fn = _setup(backprop, **sgd)
    step = TrainStep(loss_fn, opt, mode="eager")
    losses = [step(x, y) for x, y in batches]
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad
               for v in losses)
    for a, b in zip(net.parameters(), expected, strict=True):
        assert torch.equal(a.detach(), b)


@pytest.mark.parametrize("sgd", SGD_SETTINGS, ids=["plain", "momentum_wd", "nesterov"])
def test_device_lr_update_is_optim_sgd_bit_for_bit(sgd):
    """The foreach update with −lr in a tensor (compiled and graph modes) == SGD.step."""
    nets = [_net("autograd") for _ in range(2)]
    opts = [SGD(n.parameters(), lr=0.1, **sgd) for n in nets]
    neg_lr = torch.tensor(-0.1)
    for x, y in _batches():
        for net, opt in zip(nets, opts, strict=True):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
        opts[0].step()
        sgd_update_(opts[1].param_groups[0], opts[1].state, neg_lr)
    for a, b in zip(*(n.parameters() for n in nets), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("fused", [False, True], ids=["per_op", "fused"])
def test_compiled_step_matches_eager(fused, backprop="manual"):  # autograd: the scheduler test
    # aot_eager traces forward + backward + update as inductor does, without a C++ build
    batches = _batches(last=7)
    expected = _hand_loop(*_setup(backprop, momentum=0.9), batches)  # the per-op path
    net, opt, loss_fn = _setup(backprop, fused=fused, momentum=0.9)
    step = TrainStep(loss_fn, opt, mode="compiled", compile_backend="aot_eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback
        for x, y in batches:
            step(x, y)
    assert step.mode == "compiled" and step.fallback is None
    assert _max_diff(net.parameters(), expected) < 1e-6


def test_compile_failure_falls_back_to_eager_with_one_line():
    batches = _batches()
    expected = _hand_loop(*_setup(), batches)
    net, opt, loss_fn = _setup()
    step = TrainStep(loss_fn, opt, mode="compiled", compile_backend="no_such_backend")
    with pytest.warns(RuntimeWarning, match="mode='compiled' falls back to eager") as rec:
        for x, y in batches:
            step(x, y)
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert step.mode == "eager" and "torch.compile failed" in step.fallback
    assert _max_diff(net.parameters(), expected) < 1e-6


def test_graph_mode_falls_back_to_eager_on_cpu_with_a_message():
    batches = _batches(last=7)
    expected = _hand_loop(*_setup(momentum=0.9), batches)
    net, opt, loss_fn = _setup(momentum=0.9)
    with pytest.warns(RuntimeWarning, match="mode='graph' falls back to eager: CUDA graphs "
                                            "need a CUDA device"):
        step = TrainStep(loss_fn, opt, mode="graph")
    assert step.mode == "eager" and step.requested_mode == "graph"
    for x, y in batches:
        step(x, y)
    for a, b in zip(net.parameters(), expected, strict=True):
        assert torch.equal(a.detach(), b)


def test_auto_mode_is_eager_on_cpu_graph_on_cuda_silently():
    assert resolve_mode("auto", torch.device("cpu")) == "eager"
    assert resolve_mode("auto", torch.device("cuda")) == "graph"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainStep(_setup()[2], _setup()[1], mode="auto").mode == "eager"


def test_bad_mode_and_precision_name_what_is_allowed():
    _, opt, loss_fn = _setup()
    with pytest.raises(ValueError, match="step mode='graphs' is not one of: auto, compiled"):
        TrainStep(loss_fn, opt, mode="graphs")
    with pytest.raises(ValueError, match="trainer.precision='fp8' is not one of"):
        TrainStep(loss_fn, opt, precision="fp8")


def test_manual_and_autograd_steps_reach_the_same_weights():
    batches = _batches()
    nets = {}
    for backprop in ("manual", "autograd"):
        net, opt, loss_fn = _setup(backprop, momentum=0.9)
        step = TrainStep(loss_fn, opt, mode="eager")
        for x, y in batches:
            step(x, y)
        nets[backprop] = list(net.parameters())
    assert _max_diff(nets["manual"], nets["autograd"]) < 1e-5


@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_a_scheduler_changes_the_lr_the_step_uses(mode):
    batches = _batches(n=8)

    def sched(opt):
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5**t)

    net0, opt0, loss0 = _setup("autograd", momentum=0.9)
    expected = _hand_loop(net0, opt0, loss0, batches, sched(opt0))
    net, opt, loss_fn = _setup("autograd", momentum=0.9)
    step, s = TrainStep(loss_fn, opt, mode=mode, compile_backend="aot_eager"), sched(opt)
    for x, y in batches:
        step(x, y)
        s.step()
    assert _max_diff(net.parameters(), expected) < 1e-6
    frozen = [p.detach().clone() for p in net.parameters()]
    opt.param_groups[0]["lr"] = 0.0  # now the step must not move the weights at all
    step(*batches[0])
    # momentum would move them: with lr 0 nothing moves
    assert _max_diff(net.parameters(), frozen) == 0


@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_16_mixed_skips_a_step_with_inf_gradients_on_the_device(mode):
    net, opt, loss_fn = _setup(momentum=0.9)
    step = TrainStep(loss_fn, opt, mode=mode, precision="16-mixed", compile_backend="aot_eager")
    batches = _batches(n=3)
    for x, y in batches:
        step(x, y)
    weights = [p.detach().clone() for p in net.parameters()]
    velocity = [opt.state[p]["velocity"].clone() for p in net.parameters()]
    scale = step.loss_scale.clone()
    x, y = batches[0][0].clone(), batches[0][1]
    x[0, 0] = float("inf")
    step(x, y)
    assert step.loss_scale == scale / 2  # backed off, on the device
    assert _max_diff(net.parameters(), weights) == 0
    params = list(net.parameters())
    assert all(torch.equal(v, opt.state[p]["velocity"])
               for v, p in zip(velocity, params, strict=True))
    step(*batches[1])
    assert _max_diff(net.parameters(), weights) > 0


def test_bf16_mixed_runs_the_loss_under_autocast():
    net, opt, loss_fn = _setup()
    seen = []
    net.layers[0].register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    TrainStep(loss_fn, opt, mode="eager", precision="bf16-mixed")(*_batches(n=1)[0])
    assert seen == [torch.bfloat16] and all(p.dtype == torch.float32 for p in net.parameters())


def test_split_step_runs_hooks_between_backward_and_update():
    """forward_backward + update (for callbacks that need Python hooks) == one step."""
    batches = _batches()
    expected = _hand_loop(*_setup(momentum=0.9), batches)
    net, opt, loss_fn = _setup(momentum=0.9)
    step = TrainStep(loss_fn, opt, mode="compiled", compile_backend="aot_eager")
    calls = []
    for i, (x, y) in enumerate(batches):
        if i % 2:
            step(x, y)
            continue
        before = [p.detach().clone() for p in net.parameters()]
        step.forward_backward(x, y, after_backward=lambda loss: calls.append(
            loss.dim() == 0 and all(p.grad is not None for p in net.parameters())))
        assert _max_diff(net.parameters(), before) == 0  # not updated yet
        step.update()
    assert calls == [True] * 3
    assert _max_diff(net.parameters(), expected) < 1e-6


def _lightning_fit(batches, mode: str, device: str = "cpu", precision: str = "32-true"):
    """The wiring LearnTask uses: manual optimization, ``StepOptimizer``, the scheduler stepped
    per step, every other step split (``forward_backward`` + Lightning's backward hooks)."""
    import lightning as L

    class Task(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.net, self.opt, self.loss_fn = _setup(momentum=0.9)
            self.hooks = 0

        def configure_optimizers(self):
            self.train_step = TrainStep(self.loss_fn, self.opt, mode=mode,
                                        precision=self.trainer.precision,
                                        compile_backend="aot_eager")
            opt = StepOptimizer(self.train_step)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(
                opt, lambda t: 0.8**t)}

        def on_fit_start(self):  # 16-mixed: the step scales the loss on the device
            self.trainer.precision_plugin.scaler = None

        def on_after_backward(self):
            self.hooks += 1

        def training_step(self, batch, batch_idx):
            x, y = batch
            plugin = self.trainer.precision_plugin
            if batch_idx % 2:
                closure = lambda: self.train_step.forward_backward(  # noqa: E731
                    x, y, after_backward=lambda loss: plugin.post_backward(loss, self))
            else:
                closure = lambda: self.train_step(x, y)  # noqa: E731
            self.optimizers().step(closure=closure)
            self.lr_schedulers().step()
            self.log("train/loss", self.train_step.last_loss)

    class Loader:  # an iterable of (x, y), as TensorLoader (a list would be many loaders)
        def __iter__(self):
            return iter(batches)

        def __len__(self):
            return len(batches)

    task = Task()
    trainer = L.Trainer(max_epochs=1, accelerator="gpu" if device == "cuda" else "cpu",
                        devices=1, precision=precision, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(task, train_dataloaders=Loader())
    return task, trainer


@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_step_optimizer_lets_lightning_count_steps_and_schedule(mode):
    batches = _batches(n=5)
    net0, opt0, loss0 = _setup(momentum=0.9)
    expected = _hand_loop(net0, opt0, loss0, batches,
                          torch.optim.lr_scheduler.LambdaLR(opt0, lambda t: 0.8**t))
    task, trainer = _lightning_fit(batches, mode)
    assert trainer.global_step == len(batches) and task.hooks == 2
    assert task.train_step.mode == mode
    assert _max_diff(task.net.parameters(), expected) < 1e-6
    state = trainer.optimizers[0].state_dict()  # the real SGD's, velocity included
    assert len(state["state"]) == len(expected) and "velocity" in state["state"][0]


# ---- on a GPU ----------------------------------------------------------------------------


def _cuda_run(mode, backprop="manual", precision="32-true", batches=None, lr_at=None,
              fused=False):
    net, opt, loss_fn = _setup(backprop, "cuda", fused=fused, momentum=0.9)
    step = TrainStep(loss_fn, opt, mode=mode, precision=precision,
                     compile_backend="aot_eager")  # inductor is timed by scripts/bench.py
    for i, (x, y) in enumerate(batches):
        if lr_at is not None and i == lr_at:
            opt.param_groups[0]["lr"] = 0.01
        step(x, y)
    torch.cuda.synchronize()
    return step, [p.detach().clone() for p in net.parameters()]


@pytest.mark.cuda
@pytest.mark.parametrize("backprop", ["manual", "autograd", "fused"])
def test_graph_replay_reaches_the_eager_weights(backprop):
    batches = _batches("cuda", n=10, last=7)
    fused = backprop == "fused"
    backprop = "manual" if fused else backprop
    _, eager = _cuda_run("eager", backprop, batches=batches)  # fused: against the per-op path
    step, graphed = _cuda_run("graph", backprop, batches=batches, fused=fused)
    assert step.mode == "graph" and step.fallback is None and step._graph is not None
    assert _max_diff(graphed, eager) < 1e-5


@pytest.mark.cuda
def test_graph_replay_makes_no_host_sync():
    batches = _batches("cuda", n=12)
    net, opt, loss_fn = _setup("manual", "cuda", momentum=0.9)
    step = TrainStep(loss_fn, opt, mode="graph")
    for x, y in batches[:6]:  # warm-up and capture
        step(x, y)
    assert step._graph is not None
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.9**t)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in batches[6:]:
            loss = step(x, y)
            sched.step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(loss).item()


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["graph", "compiled"])
def test_lr_change_takes_effect_under_graph_and_compile_on_cuda(mode):
    batches = _batches("cuda", n=10)
    _, eager = _cuda_run("eager", batches=batches, lr_at=6)
    step, fast = _cuda_run(mode, batches=batches, lr_at=6)
    assert step.mode == mode
    assert _max_diff(fast, eager) < 1e-5
    _, unchanged = _cuda_run(mode, batches=batches)
    assert _max_diff(fast, unchanged) > 1e-4  # the new lr changed the path


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_graph_replay_under_mixed_precision(precision):
    batches = _batches("cuda", n=10)
    _, eager = _cuda_run("eager", precision=precision, batches=batches)
    step, graphed = _cuda_run("graph", precision=precision, batches=batches)
    assert step.mode == "graph"
    assert _max_diff(graphed, eager) < 1e-2


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_lightning_runs_the_graphed_step(precision):
    batches = _batches("cuda", n=9, last=7)
    task, trainer = _lightning_fit(batches, "auto", "cuda", precision)
    assert task.train_step.mode == "graph" and task.train_step._graph is not None
    assert trainer.global_step == len(batches) and task.hooks == 5
    assert torch.isfinite(task.train_step.last_loss).item()
