"""Names for what :func:`~neuronlab.gradcheck.check_function` reports: a Function's inputs by
their parameter names (``forward``'s after ``ctx``, or the reference's), the dtypes by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from itertools import takewhile
from typing import Any

import torch

from .precision import DTYPE_NAMES


def parameters(fn: Callable | None, required: bool = False) -> list[str]:
    """The positional parameters of ``fn`` — of a custom Function's ``forward`` after ``ctx``
    (``fn`` its ``.apply`` or the class); ``required``: only those without a default."""
    owner = getattr(fn, "__self__", fn)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        fn = owner.forward
        # forward(ctx, x, …), unless the class splits off setup_context: forward(x, …)
        base = torch.autograd.function._SingleLevelFunction.setup_context
        skip = 1 if owner.setup_context is base else 0
    else:
        skip = 0
    try:
        params = list(inspect.signature(fn).parameters.values())[skip:]
    except (TypeError, ValueError):
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = takewhile(lambda p: p.kind in positional, params)
    return [p.name for p in names if not required or p.default is inspect.Parameter.empty]


def input_names(fn: Callable, n: int, reference: Callable | None = None) -> tuple[str, list[str]]:
    """``fn``'s name, and its first ``n`` inputs' names: ``fn``'s parameters, else the
    reference's (``input{i}`` if neither names them)."""
    owner = getattr(fn, "__self__", None)
    is_function = isinstance(owner, type) and issubclass(owner, torch.autograd.Function)
    name = f"{owner.__name__}.apply" if is_function else getattr(fn, "__qualname__", repr(fn))
    names = parameters(fn)[:n]
    if len(names) < n and reference is not None and len(parameters(reference)) > len(names):
        names = parameters(reference)[:n]
    return name, names + [f"input{i}" for i in range(len(names), n)]


def dtype_names(dtypes: Any) -> list[str]:
    names = []
    for d in [dtypes] if isinstance(dtypes, (str, torch.dtype)) else list(dtypes):
        key = str(d).removeprefix("torch.")
        if key not in DTYPE_NAMES:
            raise ValueError(f"dtypes: {d!r} is not one of: {', '.join(DTYPE_NAMES)}")
        names.append(key)
    return list(dict.fromkeys(names))
