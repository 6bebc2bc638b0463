"""The switches every dense module has: ``backprop`` (manual | autograd), ``granularity``
(op | layer | network) and ``fused`` (the old name of ``granularity="layer"``), and the entry
that lets the loss join the network loop (``logits_and_loss``). See ``modules.dense``. And
``op``: which function a layer past the MLP calls, neuronlab's or torch's."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as torch_functional
from torch.nn.modules import module as _torch_module

from .. import functional
from ..errors import require_bool, unknown_choice
from ..functional import check_backprop, get_loss
from ..functional.loop_pass import LoopPass, network_cross_entropy_pass
from ..functional.network import network, network_cross_entropy

GRANULARITIES = ("op", "layer", "network")


def check_granularity(value: str) -> str:
    if value not in GRANULARITIES:
        raise unknown_choice("granularity", value, GRANULARITIES)
    return value


class _Switchable(nn.Module):
    """``backprop``, ``granularity`` and ``fused`` are plain attributes, checked when set."""

    _granularity = "op"  # the default for a module pickled before ``granularity`` existed
    _squeezed = False  # whether the output drops its unit axis (a ``Neuron``)

    def __setstate__(self, state: dict) -> None:
        if state.pop("_fused", False) and "_granularity" not in state:  # pickled with ``fused``
            state["_granularity"] = "layer"
        super().__setstate__(state)

    @property
    def backprop(self) -> str:
        return self._backprop

    @backprop.setter
    def backprop(self, value: str) -> None:
        self._backprop = check_backprop(value)

    @property
    def granularity(self) -> str:
        return self._granularity

    @granularity.setter
    def granularity(self, value: str) -> None:
        self._granularity = check_granularity(value)

    @property
    def fused(self) -> bool:
        """The old switch: ``True`` is ``granularity="layer"``, ``False`` ``"op"``."""
        return self._granularity == "layer"

    @fused.setter
    def fused(self, value: bool) -> None:
        self.granularity = "layer" if require_bool("fused", value) else "op"

    def _chain(self) -> Sequence[nn.Module]:
        """The layers the network loop runs, first to last."""
        return (self,)

    def _loops(self) -> bool:
        """Whether this module runs as the network loop (manual, ``granularity="network"``)."""
        return self._granularity == "network" and self._backprop == "manual"

    def _loop_input(self, x: Tensor) -> Tensor:
        """The input as the loop's first layer takes it (a CNN: each row as its image)."""
        return x

    def _loop(self, x: Tensor, logits: bool) -> Tensor:
        """The whole network as one Function; then the layers' forward hooks, if any, with each
        layer's input and output (the last layer's only when it ran whole)."""
        x, chain = self._loop_input(x), self._chain()
        out, ys = network(x, chain, logits=logits)
        _run_forward_hooks(chain, x, ys, len(ys) - 1 if logits else len(ys))
        return out

    def logits_and_loss(self, x: Tensor, target: Tensor, loss: str) -> tuple[Tensor, Tensor]:
        """The logits and the loss ``loss`` (a name from ``LOSSES`` that takes logits) of
        ``target``. At ``granularity="network"`` (manual) the cross-entropy against class
        indices joins the loop: one Function from the input to the loss, whose backward starts
        from the loss's own δ = (p − onehot(y))/N. Otherwise the logits, then the loss's own
        Function (or torch's); the same values and gradients either way."""
        if (loss == "cross_entropy" and self._loops() and not self._squeezed
                and x.dim() == 2 and target.dim() == 1 and not target.is_floating_point()):
            x, chain = self._loop_input(x), self._chain()
            value, logits, ys = network_cross_entropy(x, target, chain)
            _run_forward_hooks(chain, x, ys, len(ys) - 1)
            return logits, value
        out = self.pre_activation(x)
        return out, get_loss(loss, self._backprop)(out, target)

    def loop_pass(self, x: Tensor, target: Tensor, loss: str = "cross_entropy"
                  ) -> tuple[Tensor, Tensor, LoopPass] | None:
        """``logits_and_loss`` without the autograd graph, where a training step needs nothing
        of it but the parameters' gradients: the logits, the loss and the ``LoopPass`` whose
        ``backward()`` runs the textbook loop into ``.grad`` (the same bits as
        ``loss.backward()``). ``None`` where the graph is needed or the loop does not run: not
        ``granularity="network"`` with the cross-entropy; grad mode off; autocast; anomaly
        detection; an input that wants a gradient; any module or tensor hook (a hook may
        register on the outputs' graph, which there is none of here); a parameter that is not
        a leaf (a parametrization); under ``torch.compile`` or a functorch transform."""
        if not (loss == "cross_entropy" and self._loops() and not self._squeezed
                and x.dim() == 2 and target.dim() == 1 and not target.is_floating_point()):
            return None
        if (not torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type)
                or torch.is_anomaly_enabled() or x.requires_grad
                or torch.compiler.is_compiling()
                or torch._C._are_functorch_transforms_active()):
            return None
        x, chain = self._loop_input(x), self._chain()
        modules = [m if isinstance(m, nn.Module) else m.of for m in chain  # a step: its layer
                   if isinstance(m, nn.Module) or isinstance(getattr(m, "of", None), nn.Module)]
        if self._forward_hooks or self._forward_pre_hooks or _hooked(modules):
            return None
        if not any(p.requires_grad for m in modules for p in m.parameters()):
            return None  # nothing to train: loss.backward() says so
        value, logits, _, pending = network_cross_entropy_pass(x, target, chain)
        return logits, value, pending


class _Stack(_Switchable):
    """A network past the MLP (``CNN``, ``ResMLP``): ``backprop`` set on it is set on every
    layer, and its logits are the last layer's weighted sum of ``features(x)``, which each
    network defines (``layers[-1]`` the output layer)."""

    @_Switchable.backprop.setter
    def backprop(self, value: str) -> None:
        _Switchable.backprop.fset(self, value)
        for m in self.modules():
            if m is not self and isinstance(m, _Switchable):
                m.backprop = value

    def features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def pre_activation(self, x: Tensor) -> Tensor:
        """The logits ``(B, n_out)``: the network loop where it runs (``_loops``)."""
        if self._loops():
            return self._loop(x, logits=True)
        return self.layers[-1].pre_activation(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        if self._loops():
            return self._loop(x, logits=False)
        return self.layers[-1](self.features(x))


def _hooked(modules: Sequence[nn.Module]) -> bool:
    """Whether any hook listens to ``modules`` (the loop's layers, their submodules and
    parameters) or to every module; or a parametrization computes a weight."""
    if any(getattr(_torch_module, name) for name in _GLOBAL_HOOKS):
        return True
    for layer in modules:
        for m in layer.modules() if layer._modules else (layer,):
            if (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                    or m._backward_pre_hooks or "parametrizations" in m._modules):
                return True
            for p in m._parameters.values():
                if p is not None and (p._backward_hooks or p._post_accumulate_grad_hooks):
                    return True
    return False


_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks",
                 "_global_backward_hooks", "_global_backward_pre_hooks")


def _run_forward_hooks(layers: Sequence[nn.Module], x: Tensor, ys: Sequence[Tensor],
                       n: int) -> None:
    """The forward hooks of the first ``n`` layers, called with each one's input and output
    (as the network loop ran them; return values ignored)."""
    for i, layer in enumerate(layers):  # (slicing a ModuleList would build a new module)
        if i == n:
            break
        if layer._forward_hooks:
            for hook in tuple(layer._forward_hooks.values()):
                hook(layer, (x if i == 0 else ys[i - 1],), ys[i])



def op(name: str, backprop: str) -> Callable:
    """Which function a layer past the MLP calls, by its ``torch.nn.functional`` name:
    ``neuronlab.functional.<name>`` (the hand-written op) for ``"manual"``, torch's own
    otherwise. The manual ops share torch's signatures, so one call site serves both."""
    if backprop != "manual":
        return getattr(torch_functional, name)
    fn = getattr(functional, name, None)
    if fn is None:
        raise NotImplementedError(
            f"neuronlab.functional.{name} is not available in this build; use "
            "backprop='autograd' for this layer")
    return fn
