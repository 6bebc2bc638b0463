"""Lighter dispatch for the hand-written Functions.

``torch.autograd.Function.apply`` binds its arguments to ``forward``'s signature on every call
(``inspect.signature`` + ``bind`` + ``apply_defaults``): about 4 µs of the 8 µs a small op's
``apply`` costs on the CPU, and an MLP step makes a handful of such calls. The binding only
fills in defaults and keyword arguments; called with every argument by position, as this
package always calls them, it returns the arguments unchanged. ``ChainRuleFunction.apply``
therefore goes straight to torch's C++ ``apply`` for a positional call and keeps torch's own
path (binding included) for keyword calls and under functorch transforms (``vmap``, ``grad``,
...). ``torch.compile`` traces a Function through its ``forward``/``backward``, not through
``apply``, so it sees the same Function either way.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.autograd import Function

try:  # what torch's apply does first: a tensor leaked out of a finished vmap/grad, unwrapped
    from torch._functorch.utils import unwrap_dead_wrappers
except ImportError:  # pragma: no cover - a torch without it has no such wrappers to unwrap

    def unwrap_dead_wrappers(args: tuple) -> tuple:
        return args


class ChainRuleFunction(Function):
    """Base of every hand-written Function here: ``Function`` with a lighter ``apply``."""

    _n_args = -1  # forward's parameter count; -1 (no forward of its own yet): torch's path

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        forward = cls.__dict__.get("forward")
        if isinstance(forward, staticmethod):  # torch's slow path then skips rebuilding it
            forward.__func__.__signature__ = inspect.signature(forward.__func__)
            cls._n_args = len(forward.__func__.__signature__.parameters)

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != cls._n_args or torch._C._are_functorch_transforms_active():
            return super().apply(*args, **kwargs)
        # torch's C++ apply, without re-binding the arguments
        return super(Function, cls).apply(*unwrap_dead_wrappers(args))
