"""The CUDA-graph half of :class:`~neuronlab.training.step.TrainStep`: warm up on a side
stream, capture the whole step once into static buffers, replay it (PyTorch's "whole network
capture" recipe), and capture again when what the graph baked in (tensor addresses, momentum,
weight decay) changes."""

from __future__ import annotations

import torch
from torch import Tensor


def one_line(err: BaseException) -> str:
    """An exception as one short line, for a fallback warning."""
    first = next((line for line in str(err).splitlines() if line.strip()), "")
    return f"{type(err).__name__}: {first}"[:300]


class GraphCapture:
    """Mixed into ``TrainStep``, which provides ``optimizer``, ``params``, ``device``,
    ``warmup_steps``, ``_body``, ``_sync_lr``, ``forward_backward``, ``update``,
    ``_fall_back`` and ``last_loss``."""

    @staticmethod
    def _shapes(x: Tensor, y: Tensor) -> tuple:
        return (x.shape, x.dtype, x.device, y.shape, y.dtype, y.device)

    def _state_ready(self) -> bool:
        return all(g["momentum"] == 0 or all("velocity" in self.optimizer.state[p]
                                             for p in g["params"] if p.grad is not None)
                   for g in self.optimizer.param_groups)

    def _signature(self) -> tuple:
        """What the graph baked in: tensor addresses and the non-lr hyperparameters."""
        state = self.optimizer.state
        return tuple(
            (tuple(p.data_ptr() for p in g["params"]),
             tuple(state[p]["velocity"].data_ptr() for p in g["params"] if "velocity" in state[p]),
             g["momentum"], g["weight_decay"], g["dampening"], g["nesterov"])
            for g in self.optimizer.param_groups)

    def _restore_grads(self, static: list[Tensor | None]) -> None:
        for p, g in zip(self.params, static, strict=True):
            if g is not None and p.grad is not None and p.grad is not g:
                g.copy_(p.grad)
                p.grad = g

    def _graph_step(self, x: Tensor, y: Tensor) -> Tensor:
        self._sync_lr()
        if self._graph is not None and self._signature() != self._captured:
            self._graph = None  # params moved, state reloaded, momentum changed: capture again
            self._warm = self.warmup_steps
        if self._graph is None:
            if self._warm < self.warmup_steps or not self._state_ready():
                self._warm += 1
                return self._side_stream_step(x, y)
            try:
                self._capture(x, y)
            except Exception as err:  # an op that syncs or cannot be captured
                self._fall_back(f"CUDA graph capture failed: {one_line(err)}")
                self.forward_backward(x, y)
                self.update()
                return self.last_loss
        elif self._shapes(x, y) != self._shape:
            self.forward_backward(x, y)  # the last, smaller batch: eagerly, grads kept static
            self.update()
            return self.last_loss
        self._static_x.copy_(x, non_blocking=True)
        self._static_y.copy_(y, non_blocking=True)
        self._graph.replay()
        for p, g in zip(self.params, self._grads, strict=True):
            if p.grad is not g:  # someone set .grad to None: point it at the graph's buffer
                p.grad = g
        return self._static_loss.clone()  # the caller's tensor survives the next replay

    def _side_stream_step(self, x: Tensor, y: Tensor) -> Tensor:
        """A warm-up step (a real one) on a side stream, as PyTorch's capture recipe does."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._body(x, y)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        return loss

    def _capture(self, x: Tensor, y: Tensor) -> None:
        self._static_x, self._static_y = x.clone(), y.clone()
        self._shape = self._shapes(x, y)
        self.optimizer.zero_grad(set_to_none=True)  # backward allocates .grad in the graph
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_loss = self._body(self._static_x, self._static_y)
        self._graph, self._grads = graph, [p.grad for p in self.params]
        self._captured = self._signature()
