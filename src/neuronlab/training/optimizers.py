"""Optimizer and learning-rate schedule by name, from config primitives."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from ..functional.registry import unknown_choice
from ..optim import SGD

OPTIMIZERS = ("sgd", "torch_sgd", "adam")
SCHEDULERS = ("none", "step", "cosine", "warmup_cosine")


def build_optimizer(params: Iterable[torch.Tensor], cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """``cfg``: ``name`` (sgd = neuronlab's written-out SGD, torch_sgd, adam), ``lr``, and
    ``momentum``/``weight_decay`` (sgd) or ``betas``/``weight_decay`` (adam)."""
    name = cfg.get("name", "sgd")
    lr = cfg.get("lr")
    if not isinstance(lr, int | float) or isinstance(lr, bool) or not lr > 0 or math.isinf(lr):
        raise ValueError(f"optimizer.lr={lr!r} must be a number > 0")
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
