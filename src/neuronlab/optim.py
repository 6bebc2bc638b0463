"""The learning rate, in one place: the update rule w ← w − lr · ∂L/∂w, and the schedules.

With ``weight_decay`` λ the gradient gains λw (the gradient of λ/2·‖w‖²); with ``momentum``
μ the step follows a velocity v ← μv + (1 − dampening)·g instead of g alone (Nesterov:
g + μv). The arithmetic is the same as ``torch.optim.SGD``'s, so the two agree step by step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.optim.optimizer as _torch_optimizer
from torch import Tensor

from .errors import is_int, is_number, require, require_choice, unknown_choice
from .schema import GroupConfig


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

    def step(self, closure=None):  # noqa: D102 - the rule is in the class docstring
        if _listened(self):  # torch's wrapper: a profiler record, the step hooks
            return self._hooked_step(closure)
        return self._step(closure)

    # torch.optim.Optimizer wraps ``step`` in a profiler record and the step hooks, paid on
    # every call (≈10 µs on the CPU, a small MLP's whole update); ``hooked`` tells it not to, and
    # ``step`` takes that wrapper only while a profiler or a hook listens
    step.hooked = True

    def _step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                ws = [w for w in group["params"] if w.grad is not None]
                if not ws:
                    continue
                if len({(w.device, w.dtype) for w in ws}) == 1:  # one multi-tensor update
                    _foreach_sgd_(ws, group, self.state)
                else:
                    for w in ws:
                        _foreach_sgd_([w], group, self.state)
        return loss

    _hooked_step = torch.optim.Optimizer.profile_hook_step(_step)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Every ``.grad`` to ``None`` (or zeros: ``set_to_none=False``, torch's own path)."""
        if not set_to_none or _listened(self):
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is not None:
                    w.grad = None


def _listened(opt: torch.optim.Optimizer) -> bool:
    """Whether a profiler runs or a step hook is registered (on ``opt`` or globally)."""
    return bool(torch._C._autograd._profiler_enabled() or opt._optimizer_step_pre_hooks
                or opt._optimizer_step_post_hooks or _optimizer_hooks[0] or _optimizer_hooks[1])


_optimizer_hooks = (_torch_optimizer._global_optimizer_pre_hooks,
                    _torch_optimizer._global_optimizer_post_hooks)


def _foreach_sgd_(ws: list[Tensor], group: dict, state: dict) -> None:
    """``SGD.step`` on parameters ``ws`` of one device and dtype (each with a gradient), as
    multi-tensor ``torch._foreach_*`` ops: the same arithmetic as ``torch.optim.SGD``, bit for bit
    (its own foreach path runs these ops; on the CPU they loop over the tensors)."""
    lr, mu = group["lr"], group["momentum"]
    gs = [w.grad for w in ws]  # ∂L/∂w
    if group["weight_decay"] != 0:
        gs = torch._foreach_add(gs, ws, alpha=group["weight_decay"])  # ∂/∂w [L + λ/2 ‖w‖²]
    if mu != 0:
        vs = [state[w].get("velocity") for w in ws]
        if any(v is None for v in vs):  # v₀ = g₀ (tensor by tensor: a new parameter's first)
            for i, (w, g) in enumerate(zip(ws, gs, strict=True)):
                if vs[i] is None:
                    vs[i] = state[w]["velocity"] = g.clone()
                else:
                    vs[i].mul_(mu).add_(g, alpha=1 - group["dampening"])
        else:
            torch._foreach_mul_(vs, mu)
            torch._foreach_add_(vs, gs, alpha=1 - group["dampening"])  # v ← μv + (1−d)g
        gs = torch._foreach_add(gs, vs, alpha=mu) if group["nesterov"] else vs
    torch._foreach_add_(ws, gs, alpha=-lr)  # w ← w − lr · g


# ---- by name, from config primitives -------------------------------------------------

OPTIMIZERS = ("sgd", "torch_sgd", "adam")
SCHEDULERS = ("none", "step", "cosine", "warmup_cosine")


@dataclass
class OptimizerConfig(GroupConfig):
    """``optimizer.*``: the update rule and its learning rate. Defaults are
    ``conf/optimizer/sgd.yaml``'s (``betas``: ``adam.yaml``'s).

    Attributes:
        name: ``sgd`` (:class:`SGD`, written out here), ``torch_sgd`` or ``adam``.
        lr: the learning rate (> 0).
        momentum: μ in [0, 1) (sgd, torch_sgd).
        weight_decay: λ ≥ 0.
        betas: Adam's two decay rates, each in [0, 1).
    """

    group: ClassVar[str] = "optimizer"
    name: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])

    def __post_init__(self) -> None:
        require_choice("optimizer.name", self.name, OPTIMIZERS)
        require(is_number(self.lr) and self.lr > 0, "optimizer.lr", self.lr,
                "must be a number > 0")
        require(is_number(self.momentum) and 0 <= self.momentum < 1, "optimizer.momentum",
                self.momentum, "must be in [0, 1)")
        require(is_number(self.weight_decay) and self.weight_decay >= 0,
                "optimizer.weight_decay", self.weight_decay, "must be a number ≥ 0")
        b = self.betas
        ok = isinstance(b, list | tuple) and len(b) == 2
        require(ok and all(is_number(x) and 0 <= x < 1 for x in b), "optimizer.betas",
                list(b) if isinstance(b, list | tuple) else b, "must be two numbers in [0, 1)")
        self.betas = [float(b[0]), float(b[1])]  # a list: checkpoints hold primitives


@dataclass
class SchedulerConfig(GroupConfig):
    """``scheduler.*``: how the learning rate changes over the run, step by step. Defaults
    are those of ``conf/scheduler/{none,step,cosine,warmup_cosine}.yaml``; each schedule reads
    only its own keys.

    Attributes:
        name: ``none`` (constant), ``step``, ``cosine`` or ``warmup_cosine``.
        step_size, gamma: ``step``: lr × gamma every step_size steps.
        min_lr_ratio: ``cosine``/``warmup_cosine``: the last lr, as a fraction of lr.
        warmup_steps: ``warmup_cosine``: steps of linear warm-up.
    """

    group: ClassVar[str] = "scheduler"
    name: str = "none"
    step_size: int = 100
    gamma: float = 0.5
    min_lr_ratio: float = 0.0
    warmup_steps: int = 20

    def __post_init__(self) -> None:
        require_choice("scheduler.name", self.name, SCHEDULERS)
        for key, low in (("step_size", 1), ("warmup_steps", 0)):
            value = getattr(self, key)
            require(is_int(value) and value >= low, f"scheduler.{key}", value,
                    f"must be an integer ≥ {low}")
        require(is_number(self.gamma) and 0 < self.gamma <= 1, "scheduler.gamma", self.gamma,
                "must be in (0, 1]")
        require(is_number(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1,
                "scheduler.min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")


def build_optimizer(
    params: Iterable[torch.Tensor], config: OptimizerConfig
) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over ``params``."""
    if config.name == "sgd":
        return SGD(params, lr=config.lr, momentum=config.momentum,
                   weight_decay=config.weight_decay)
    if config.name == "torch_sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.name == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=tuple(config.betas),
                                weight_decay=config.weight_decay)
    raise unknown_choice("optimizer.name", config.name, OPTIMIZERS)


def schedule_factor(config: SchedulerConfig, total_steps: int) -> Callable[[int], float]:
    """step → the factor the learning rate is multiplied by at that step (0-based).

    ``step``: gamma^⌊step / step_size⌋. ``cosine``: from 1 to ``min_lr_ratio`` along half a
    cosine over ``total_steps``. ``warmup_cosine``: (step + 1) / warmup_steps for the first
    ``warmup_steps`` steps, then the cosine over the rest.
    """
    total = max(int(total_steps), 1)
    floor = config.min_lr_ratio

    def cosine(t: float) -> float:  # t in [0, 1]
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))

    if config.name == "none":
        return lambda step: 1.0
    if config.name == "step":
        return lambda step: config.gamma ** (step // config.step_size)
    if config.name == "cosine":
        return lambda step: cosine(step / total)
    if config.name == "warmup_cosine":
        warm = max(config.warmup_steps, 1)
        return lambda step: ((step + 1) / warm if step < warm
                             else cosine((step - warm) / max(total - warm, 1)))
    raise unknown_choice("scheduler.name", config.name, SCHEDULERS)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: SchedulerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule (see :func:`schedule_factor`) over ``optimizer``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(config, total_steps))


# ---- the update rule with a device learning rate ------------------------------------------


@torch.no_grad()
def sgd_update_(group: dict, state: dict, neg_lr: Tensor, skip: Tensor | None = None) -> None:
    """neuronlab's SGD on one param group, w ← w − lr·g, reading −lr from a device tensor.

    The arithmetic of ``neuronlab.optim.SGD.step`` (weight decay g + λw, velocity
    v ← μv + (1−d)g, v₀ = g₀, Nesterov g + μv), as multi-tensor ``torch._foreach_*`` ops, bit
    for bit: ``addcmul(w, g, −lr)`` rounds once, as ``w.add_(g, alpha=−lr)`` does.
    ``skip`` (a 0-dim bool tensor, 16-mixed): where true, w and v keep their values.
    """
    ws = [w for w in group["params"] if w.grad is not None]
    if not ws:
        return
    gs = [w.grad for w in ws]  # ∂L/∂w
    mu, wd = group["momentum"], group["weight_decay"]
    if wd != 0:
        gs = torch._foreach_add(gs, ws, alpha=wd)  # ∂/∂w [L + λ/2 ‖w‖²]
    if skip is not None:
        return _sgd_update_skipping(ws, gs, group, state, neg_lr, skip)
    if mu != 0:
        if any("velocity" not in state[w] for w in ws):  # first step: v₀ = g₀
            for w, g in zip(ws, gs, strict=True):
                state[w].setdefault("velocity", g.clone())
        else:
            vs = [state[w]["velocity"] for w in ws]
            torch._foreach_mul_(vs, mu)
            torch._foreach_add_(vs, gs, alpha=1 - group["dampening"])  # v ← μv + (1−d)g
        vs = [state[w]["velocity"] for w in ws]
        gs = torch._foreach_add(gs, vs, alpha=mu) if group["nesterov"] else vs
    torch._foreach_addcmul_(ws, gs, [neg_lr] * len(ws))  # w ← w − lr · g


def _sgd_update_skipping(ws, gs, group, state, neg_lr: Tensor, skip: Tensor) -> None:
    """As ``sgd_update_``, tensor by tensor, leaving w and v unchanged where ``skip``."""
    mu = group["momentum"]
    for w, g in zip(ws, gs, strict=True):
        if mu != 0:
            v = state[w].get("velocity")
            if v is None:  # v₀ = g₀ (a skipped first step starts the velocity at 0)
                v = state[w]["velocity"] = torch.where(skip, torch.zeros_like(g), g)
            else:
                v.copy_(torch.where(skip, v, v * mu + g * (1 - group["dampening"])))
            g = g + v * mu if group["nesterov"] else v
        w.addcmul_(torch.where(skip, torch.zeros_like(g), g), neg_lr)
