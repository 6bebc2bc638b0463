"""The update rule, written out: w ← w − lr · ∂L/∂w.

With ``weight_decay`` λ the gradient gains λw (the gradient of λ/2·‖w‖²); with ``momentum``
μ the step follows a velocity v ← μv + (1 − dampening)·g instead of g alone (Nesterov:
g + μv). The arithmetic is the same as ``torch.optim.SGD``'s, so the two agree step by step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


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
            raise ValueError(f"optimizer.lr={lr!r} must be > 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"optimizer.momentum={momentum!r} must be in [0, 1)")
        if not weight_decay >= 0:
            raise ValueError(f"optimizer.weight_decay={weight_decay!r} must be ≥ 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("optimizer.nesterov=true needs momentum > 0 and dampening = 0")
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
