"""Which function a module's forward calls: neuronlab's hand-written op (``manual``) or
torch's own (``autograd``), by the op's ``torch.nn.functional`` name.

The manual ops of the layers past the MLP (``conv1d``, ``max_pool2d``, ``batch_norm``, …) are
called with ``torch.nn.functional``'s signature, so one call site serves both switches.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.nn import functional as torch_functional

from .. import functional


def op(name: str, backprop: str) -> Callable:
    """``neuronlab.functional.<name>`` for ``"manual"``, ``torch.nn.functional.<name>`` else."""
    if backprop != "manual":
        return getattr(torch_functional, name)
    fn = getattr(functional, name, None)
    if fn is None:
        raise NotImplementedError(
            f"neuronlab.functional.{name} is not available in this build; use "
            "backprop='autograd' for this layer")
    return fn
