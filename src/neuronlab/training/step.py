"""One training step — forward, loss, backward, update — run eagerly, compiled whole, or
captured once as a CUDA graph and replayed.

    step = TrainStep(lambda x, y: loss_fn(net.pre_activation(x), y), SGD(net.parameters()),
                     mode="auto")         # graph on CUDA, eager on the CPU
    loss = step(x, y)                     # a device tensor: no .item(), no host sync

Modes:

- ``eager``: ``zero_grad``; loss; ``loss.backward()`` (the network's own backward: neuronlab's
  hand-written Functions or autograd); ``optimizer.step()`` — the plain loop, bit for bit.
- ``compiled``: the same step under ``torch.compile``, the update included: forward + loss
  is one compiled graph (AOTAutograd compiles its backward, which ``loss.backward()`` runs),
  the update another (Dynamo would break the graph at ``backward()`` anyway).
- ``graph``: the step captured as one CUDA graph (PyTorch's "whole network capture" recipe):
  the first ``warmup_steps`` steps run eagerly on a side stream, the next one is captured into
  static input buffers and every later batch is copied into them and replayed. ``.grad`` of
  every parameter is allocated once, inside the graph, and stays put.
- ``auto``: ``graph`` on CUDA, ``eager`` on the CPU.

What stays dynamic under ``compiled`` and ``graph``: the learning rate. Each param group's
``lr`` is mirrored in a device tensor that the update reads; before a step the host float
``group["lr"]`` is compared with the last one copied (host with host: no sync) and, when a
scheduler changed it, written into the tensor with ``fill_``. No re-capture, no recompile.
Other hyperparameters (momentum, weight decay) are fixed at capture: changing one re-captures.

Static shapes: the graph and the compiled step are specialized to the first batch's shapes. A
batch of another shape — the last, smaller batch of an epoch — is neither dropped nor padded:
it runs as one eager step with the same arithmetic (give the loader ``drop_last`` to make
every step a replay). Where capture is impossible (no CUDA, an op that syncs or is not
capturable, an optimizer other than neuronlab's SGD) the step falls back to eager with a
one-line ``RuntimeWarning``; so does ``compiled`` when compiling fails.

Python runs once per compile or capture, not per replay: forward hooks, prints and callbacks
inside the loss do not run on later steps. A step that needs them (a gradient audit, activation
statistics every N steps) calls ``forward_backward(x, y, after_backward)`` then ``update()``:
an eager step in any mode, the graph's buffers kept.

Precision (Lightning's names): ``*-mixed`` runs the loss under ``torch.autocast``
(``cache_enabled=False``, as graphs need); ``16-mixed`` adds a loss scale kept on the device,
as ``GradScaler`` does, but without its host sync: the gradients are unscaled and checked in
one fused kernel, a step with inf/NaN gradients leaves weights and velocity unchanged through
``torch.where``, and the scale backs off or grows on the device.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import unknown_choice
from ..functional.loop_pass import LoopPass
from ..optim import SGD, sgd_update_
from .cuda_graph import GraphCapture, one_line

STEP_MODES = ("auto", "eager", "compiled", "graph")
PRECISIONS = ("32-true", "64-true", "bf16-true", "16-true", "bf16-mixed", "16-mixed")
LossFn = Callable[[Tensor, Tensor], Tensor]
LoopFn = Callable[[Tensor, Tensor], "tuple[Tensor, Tensor, LoopPass] | None"]


def resolve_mode(mode: str, device: torch.device) -> str:
    """``auto`` → ``graph`` on CUDA, ``eager`` elsewhere; any other mode as given."""
    if mode not in STEP_MODES:
        raise unknown_choice("step mode", mode, STEP_MODES)
    if mode == "auto":
        return "graph" if device.type == "cuda" else "eager"
    return mode


def _check_precision(precision: str | int) -> str:
    p = {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}.get(
        str(precision), str(precision))
    if p not in PRECISIONS:
        raise unknown_choice("trainer.precision", str(precision), PRECISIONS)
    return p


# ---- the step ------------------------------------------------------------------------------


class TrainStep(GraphCapture):
    """Forward, loss, backward and update as one call, in one of ``STEP_MODES``.

    Args:
        loss_fn: ``loss_fn(x, y)`` → the scalar loss; its backward is whatever the network
            uses (``backprop="manual"`` or ``"autograd"``).
        optimizer: the optimizer of the parameters. ``compiled`` and ``graph`` read its
            ``param_groups`` every step and keep its state (the velocity) in
            ``optimizer.state``, so checkpoints and schedulers work as usual; they need
            neuronlab's ``SGD`` (``optimizer.name=sgd``) for the device-side update.
        mode: ``auto`` | ``eager`` | ``compiled`` | ``graph``.
        precision: Lightning's ``trainer.precision`` (``32-true``, ``bf16-mixed``, ...).
        warmup_steps: eager steps before capture (``graph``), run on a side stream.
        compile_backend: ``torch.compile``'s backend (``compiled``).
        loop_fn: ``loop_fn(x, y)`` → ``(logits, loss, LoopPass)`` or ``None`` (a network's
            ``loop_pass``): the forward without the autograd graph, whose ``LoopPass`` fills
            ``.grad`` (the bits of ``loss.backward()``); eager steps without a loss scale or
            autocast take it where it applies.

    Attributes:
        mode: the mode the step runs in now (after ``auto`` and any fallback).
        fallback: why the requested mode was given up, or ``None``.
        loss_scale: the 16-mixed loss scale (a 0-dim device tensor), else ``None``.
        last_loss: the loss of the last step (a device tensor).
    """

    def __init__(
        self, loss_fn: LossFn, optimizer: torch.optim.Optimizer, *, mode: str = "auto",
        precision: str | int = "32-true", warmup_steps: int = 3,
        compile_backend: str = "inductor", loop_fn: LoopFn | None = None,
    ) -> None:
        self.loss_fn, self.optimizer, self.loop_fn = loss_fn, optimizer, loop_fn
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        if not self.params:
            raise ValueError("TrainStep: the optimizer holds no parameters")
        self.device = self.params[0].device
        self.requested_mode = mode
        self.mode = resolve_mode(mode, self.device)
        self.precision = _check_precision(precision)
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps={warmup_steps!r} must be ≥ 1")
        self.warmup_steps, self.compile_backend = warmup_steps, compile_backend
        self.fallback: str | None = None
        self.last_loss: Tensor | None = None
        self._pending_update = False
        self._neg_lr: list[Tensor] = []  # −lr of each group, on the device
        self._lr_host: list[float] = []
        dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(self.precision)
        self._autocast = (lambda: torch.autocast(self.device.type, dtype=dtype,
                                                 cache_enabled=False)) if dtype else None
        self.loss_scale = self._found_inf = self._growth = None
        if self.precision == "16-mixed":
            self.loss_scale = torch.full((), 2.0**16, device=self.device)  # as GradScaler
            self._found_inf = torch.zeros((), device=self.device)
            self._growth = torch.zeros((), dtype=torch.int32, device=self.device)
        self._graph = self._compiled = None
        self._warm = 0
        if self.mode in ("compiled", "graph") and not isinstance(optimizer, SGD):
            self._fall_back(f"it needs neuronlab.optim.SGD (optimizer.name=sgd) for the "
                            f"device-side update, got {type(optimizer).__name__}")
        elif self.mode == "graph" and self.device.type != "cuda":
            self._fall_back(f"CUDA graphs need a CUDA device, the parameters are on "
                            f"{self.device.type}")

    def _fall_back(self, reason: str) -> None:
        self.fallback = reason
        warnings.warn(f"TrainStep: mode={self.mode!r} falls back to eager: {reason}",
                      RuntimeWarning, stacklevel=3)
        self.mode = "eager"
        self._graph = self._compiled = None

    # ---- the pieces ----------------------------------------------------------------------
    def _loss(self, x: Tensor, y: Tensor) -> Tensor:
        with self._autocast() if self._autocast else contextlib.nullcontext():
            return self.loss_fn(x, y)

    def _forward_backward(self, x: Tensor, y: Tensor, after_backward=None, loss_fn=None) -> Tensor:
        """Loss and backward; under 16-mixed the gradients are unscaled and checked."""
        got = None
        if (loss_fn is None and self.loop_fn is not None and self.mode == "eager"
                and self.loss_scale is None and self._autocast is None):
            got = self.loop_fn(x, y)  # the loop without the graph, where it applies
        if got is not None:
            _, loss, pending = got
            pending.backward()
        else:
            loss = (loss_fn or self._loss)(x, y)
            if self.loss_scale is None:
                loss.backward()
            else:
                (loss.float() * self.loss_scale).backward()
        if after_backward is not None:
            after_backward(loss)  # e.g. Lightning's on_after_backward hooks (grads still scaled)
        scaled = self.loss_scale is not None
        grads = [p.grad for p in self.params if p.grad is not None] if scaled else []
        if grads:  # 16-mixed: unscale and look for inf/NaN, one fused kernel
            self._found_inf.zero_()
            torch._amp_foreach_non_finite_check_and_unscale_(
                grads, self._found_inf, self.loss_scale.reciprocal())
        return loss.detach()

    def _device_update(self) -> None:
        """The update from the device learning rates (and the 16-mixed skip and rescale)."""
        skip = None if self._found_inf is None else self._found_inf > 0
        for group, neg_lr in zip(self.optimizer.param_groups, self._neg_lr, strict=True):
            sgd_update_(group, self.optimizer.state, neg_lr, skip)
        if self.loss_scale is not None:
            torch._amp_update_scale_(self.loss_scale, self._growth, self._found_inf,
                                     2.0, 0.5, 2000)

    def _body(self, x: Tensor, y: Tensor) -> Tensor:
        """The whole step after zero_grad: what ``graph`` captures."""
        loss = self._forward_backward(x, y)
        self._device_update()
        return loss

    def _sync_lr(self) -> None:
        """Mirror each group's host ``lr`` in its device tensor, only when it changed."""
        groups = self.optimizer.param_groups
        if len(groups) != len(self._neg_lr):
            self._neg_lr = [torch.tensor(-float(g["lr"]), device=self.device,  # opmath dtype
                                     dtype=torch.promote_types(g["params"][0].dtype,
                                                               torch.float32)) for g in groups]
            self._lr_host = [float(g["lr"]) for g in groups]
            self._graph = None  # new groups: capture again
            return
        for i, group in enumerate(groups):
            if group["lr"] != self._lr_host[i]:
                self._neg_lr[i].fill_(-group["lr"])
                self._lr_host[i] = group["lr"]

    def state_dict(self) -> dict:
        """The 16-mixed loss scale and its growth counter (empty otherwise), for checkpoints."""
        if self.loss_scale is None:
            return {}
        return {"loss_scale": self.loss_scale.clone(), "growth": self._growth.clone()}

    def load_state_dict(self, state: dict) -> None:
        if self.loss_scale is not None and state:
            self.loss_scale.copy_(state["loss_scale"])
            self._growth.copy_(state["growth"])

    # ---- one step ------------------------------------------------------------------------
    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """One training step on the batch ``x`` ``(B, n_in)``, ``y`` ``(B,)``; the loss (0-dim
        device tensor). ``x`` and ``y`` must already be on the parameters' device."""
        self.update()  # a split step left pending (forward_backward without update)
        if self.mode == "eager":
            loss = self.forward_backward(x, y)
            self.update()
        elif self.mode == "compiled":
            loss = self._compiled_step(x, y)
        else:
            loss = self._graph_step(x, y)
        self.optimizer._opt_called = True  # what LR schedulers check: the optimizer stepped
        self.last_loss = loss
        return loss

    def forward_backward(self, x: Tensor, y: Tensor,
                         after_backward: Callable[[Tensor], object] | None = None) -> Tensor:
        """The first half of an eager step, whatever the mode: forward and backward (Python
        hooks run), then ``after_backward(loss)``; ``.grad`` holds this batch's gradients
        (under 16-mixed: scaled by ``loss_scale`` during ``after_backward``, unscaled after).
        ``update()`` finishes the step."""
        self.update()
        static = self._grads if self._graph is not None else None
        self.optimizer.zero_grad(set_to_none=True)
        hook = after_backward
        if static is not None:  # graph mode: keep .grad in the graph's buffers
            def hook(loss: Tensor) -> None:
                self._restore_grads(static)
                if after_backward is not None:
                    after_backward(loss)
        loss = self._forward_backward(x, y, hook)
        self._pending_update = True
        self.last_loss = loss
        return loss

    def update(self) -> None:
        """Apply the update of a ``forward_backward`` (a no-op when none is pending)."""
        if not self._pending_update:
            return
        self._pending_update = False
        if self.mode == "eager" and self.loss_scale is None:
            self.optimizer.step()  # the written-out update itself
        else:
            self._sync_lr()
            self._device_update()

    def _compiled_step(self, x: Tensor, y: Tensor) -> Tensor:
        self._sync_lr()
        if self._compiled is None:
            if self._warm < 1 or not self._state_ready():  # the first step creates the
                self._warm += 1                            # velocity: eagerly
                self.forward_backward(x, y)
                self.update()
                return self.last_loss
            self._shape = self._shapes(x, y)
        if self._shapes(x, y) != self._shape:
            self.forward_backward(x, y)  # the last, smaller batch: eagerly, not recompiled
            self.update()
            return self.last_loss
        self.optimizer.zero_grad(set_to_none=True)
        try:  # two graphs: forward + loss (AOTAutograd compiles its backward), the update
            if self._compiled is None:
                self._compiled = [torch.compile(f, backend=self.compile_backend, dynamic=False)
                                  for f in (self._loss, self._device_update)]
            loss = self._forward_backward(x, y, loss_fn=self._compiled[0])
            self._compiled[1]()
            return loss
        except Exception as err:  # compiling failed (before the update ran)
            self._fall_back(f"torch.compile failed: {one_line(err)}")
            self.forward_backward(x, y)
            self.update()
            return self.last_loss
