"""The learning rate, in one place: the update rule w ← w − lr · ∂L/∂w, and the schedules.

With ``weight_decay`` λ the gradient gains λw (the gradient of λ/2·‖w‖²); with ``momentum``
μ the step follows a velocity v ← μv + (1 − dampening)·g instead of g alone (Nesterov:
g + μv). The arithmetic is the same as ``torch.optim.SGD``'s, so the two agree step by step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .functional.registry import unknown_choice


class SGD(torch.optim.Optimizer):
    """Stochastic gradient descent: w ← w − lr · (∂L/∂w + λw), optionally with momentum.

    Args:
        params: the parameters (or parameter groups) to update.
        lr: the learning rate, the size of each step (> 0).
        momentum: μ in [0, 1).
        dampening: scales the new gradient's share of the velocity.
        weight_decay: λ ≥ 0 (L2 penalty).
        nesterov: look ahead along the velocity.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.1,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr={lr!r} must be > 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum!r} must be in [0, 1)")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay={weight_decay!r} must be ≥ 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - the rule is in the class docstring
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad  # ∂L/∂w
                if group["weight_decay"] != 0:
                    g = g.add(w, alpha=group["weight_decay"])  # ∂/∂w [L + λ/2 ‖w‖²]
                if mu != 0:
                    state = self.state[w]
                    if "velocity" not in state:
                        v = state["velocity"] = g.clone()  # v₀ = g₀
                    else:
                        v = state["velocity"]
                        v.mul_(mu).add_(g, alpha=1 - group["dampening"])  # v ← μv + (1−d)g
                    g = g.add(v, alpha=mu) if group["nesterov"] else v
                w.add_(g, alpha=-lr)  # w ← w − lr · g
        return loss


# ---- by name, from config primitives -------------------------------------------------
OPTIMIZERS = ("sgd", "torch_sgd", "adam")
SCHEDULERS = ("none", "step", "cosine", "warmup_cosine")


def build_optimizer(params: Iterable[torch.Tensor], cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """``cfg``: ``name`` (sgd = neuronlab's written-out SGD, torch_sgd, adam), ``lr``, and
    ``momentum``/``weight_decay`` (sgd) or ``betas``/``weight_decay`` (adam)."""
    name = cfg.get("name", "sgd")
    lr = cfg.get("lr")
    if not isinstance(lr, int | float) or isinstance(lr, bool) or not lr > 0 or math.isinf(lr):
        raise ValueError(f"lr={lr!r} must be a number > 0")
    wd = cfg.get("weight_decay", 0.0) or 0.0
    if name == "sgd":
        return SGD(params, lr=lr, momentum=cfg.get("momentum", 0.0) or 0.0, weight_decay=wd)
    if name == "torch_sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.get("momentum", 0.0) or 0.0,
                               weight_decay=wd)
    if name == "adam":
        betas = tuple(cfg.get("betas", (0.9, 0.999)))
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    raise unknown_choice("optimizer.name", name, OPTIMIZERS)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: dict[str, Any], total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule: ``none`` (constant), ``step`` (× ``gamma`` every ``step_size``
    steps), ``cosine`` (to ``min_lr_ratio``·lr), ``warmup_cosine`` (linear warm-up over
    ``warmup_steps``, then cosine)."""
    name = cfg.get("name", "none")
    total = max(int(total_steps), 1)
    floor = float(cfg.get("min_lr_ratio", 0.0))

    def cosine(t: float) -> float:  # t in [0, 1]
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))

    if name == "none":
        factor = lambda step: 1.0  # noqa: E731
    elif name == "step":
        size, gamma = int(cfg.get("step_size", 100)), float(cfg.get("gamma", 0.5))
        factor = lambda step: gamma ** (step // size)  # noqa: E731
    elif name == "cosine":
        factor = lambda step: cosine(step / total)  # noqa: E731
    elif name == "warmup_cosine":
        warm = max(int(cfg.get("warmup_steps", 10)), 1)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return cosine((step - warm) / max(total - warm, 1))
    else:
        raise unknown_choice("scheduler.name", name, SCHEDULERS)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
