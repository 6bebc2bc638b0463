"""The MNIST-1D CNN's training step for ``scripts/bench.py`` (section ``cnn``): manual (op by
op), network (the textbook loop) and autograd, eager vs compiled (and graphed on CUDA), each
the ``TrainStep`` a run uses, on MNIST-1D's paper recipe: Conv1d 1→25 (k5 s2 p1), 25→25
(k3 s2 p1) twice, ReLU, Linear 125→10, batch 100, SGD (the update the compiled and graphed
steps run on the device)."""

from __future__ import annotations

import torch
from bench_timing import interleaved, median, paired_ratio, spread

from neuronlab.functional import get_loss
from neuronlab.modules.cnn import CNN
from neuronlab.optim import SGD
from neuronlab.training.step import TrainStep

# manual: op by op (one Function per op); network: the whole CNN and its cross-entropy as
# one Function (the textbook loop, what neuronlab-train runs by default); autograd: torch's
BACKPROPS = ("manual", "network", "autograd")


def _step(backprop: str, mode: str, batch: int, device: torch.device, dtype: torch.dtype,
          compile_backend: str | None):
    torch.manual_seed(0)
    granularity = "network" if backprop == "network" else "op"
    backprop = "manual" if backprop == "network" else backprop
    net = CNN((1, 40), 10, backprop=backprop, granularity=granularity).to(device, dtype)
    loss_fn = get_loss("cross_entropy", backprop)
    opt = SGD(net.parameters(), lr=0.05)  # the compiled/graphed step updates with this SGD
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 40, generator=g).to(device, dtype)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    kw = {"compile_backend": compile_backend} if mode == "compiled" and compile_backend else {}
    if granularity == "network":
        def loss(xb, yb):
            return net.logits_and_loss(xb, yb, "cross_entropy")[1]
    else:
        def loss(xb, yb):
            return loss_fn(net.pre_activation(xb), yb)
    step = TrainStep(loss, opt, mode=mode, loop_fn=net.loop_pass, **kw)
    return step, (lambda: step(x, y))


def cnn_section(plan) -> dict:
    """Step time of MNIST-1D's CNN (batch 100), manual / autograd, per mode."""
    dev, batch = plan.device, 100
    modes = ["eager"]
    if plan.compile_backend:
        modes.append("compiled")
    if dev.type == "cuda":
        modes.append("graph")
    fns, fallbacks = {}, {}
    for mode in modes:
        for b in BACKPROPS:
            key = f"{b}/{mode}"
            try:
                step, fn = _step(b, mode, batch, dev, plan.dtype, plan.compile_backend)
                for _ in range(step.warmup_steps + 2):  # warm-up, compile, capture
                    fn()
            except Exception as err:  # no C++ toolchain, an op that cannot compile: go on
                fallbacks[key] = f"{type(err).__name__}: {err}"[:500]
                continue
            if step.fallback:
                fallbacks[key] = step.fallback
                continue
            fns[key] = fn
    times = interleaved(fns, dev, blocks=plan.blocks, block_s=plan.block_s, warmup=2)
    out = {
        "model": "MNIST-1D CNN, 5,210 parameters", "batch": batch,
        "time_s": {k: median(t) for k, t in times.items()},
        "spread": {k: spread(t) for k, t in times.items()},
        **{f"{b}_over_autograd": {m: paired_ratio(times[f"{b}/{m}"], times[f"autograd/{m}"])
                                  for m in modes if f"{b}/{m}" in times
                                  and f"autograd/{m}" in times}
           for b in ("manual", "network")},
        "fallbacks": fallbacks,
    }
    return out


def cnn_table(r: dict) -> tuple[str, list[str], list[list[str]]]:
    """(title, header, rows) for bench.py's tables."""
    rows = [[k, f"{t * 1e3:.3f} ms", f"{r['spread'][k]:.2f}"] for k, t in r["time_s"].items()]
    rows += [[f"{b} / autograd, {m}", f"{v:.3f}", ""] for b in ("manual", "network")
             for m, v in r.get(f"{b}_over_autograd", {}).items()]
    rows += [[k, "fell back", why[:120]] for k, why in r["fallbacks"].items()]
    return (f"{r['model']}: training step, batch {r['batch']}", ["variant", "time", "spread"],
            rows)
