"""Lighter dispatch for the hand-written Functions.

``torch.autograd.Function.apply`` binds its arguments to ``forward``'s signature on every call,
and ``inspect.signature`` rebuilds that signature each time: about 10 µs a call, most of a
small op's overhead on the CPU (an MLP step makes six such calls forward). ``inspect`` returns
a function's ``__signature__`` as is when one is set, so computing it once, here, removes the
cost while the binding itself stays torch's.
"""

from __future__ import annotations

import inspect
from typing import TypeVar

import torch

F = TypeVar("F", bound=type[torch.autograd.Function])


def cache_signature(cls: F) -> F:
    """Class decorator: store ``cls.forward``'s signature once (subclasses share it)."""
    forward = cls.forward
    forward.__signature__ = inspect.signature(forward)
    return cls
