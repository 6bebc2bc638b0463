"""The bound of :mod:`.precision`, entry by entry: :func:`judge`; and how ``S`` is measured:
:class:`Jitter`, Monte Carlo arithmetic on the float64 reference (every op's result moved by a
relative ``±h``, as if rounded)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from .grading import F64
from .rounding import ROUNDING_FACTOR, unit_roundoff

REFERENCE_FACTOR = 4.0  # k: multiples of the reference's own error in the dtype
PERTURBATION = 2.0**-20  # h: the relative move of the inputs that measures S
PROBES = 2  # random-sign perturbations; S is the largest move seen
TENSOR_FLOOR = 2.0**-4  # of the tensor's largest |r| + S: below it, judged norm-wise


def signs(shape, gen: torch.Generator, device: Any = "cpu") -> Tensor:
    return (torch.randint(0, 2, shape, generator=gen).to(F64) * 2 - 1).to(device)


class Jitter(TorchDispatchMode):
    """Moves every float64 result of every op (forward and backward) by a relative ±h, as if
    each were rounded: what the reference then changes by is the size of what was summed at
    every step — the terms ``1`` and ``a²`` of a ``1 − a²`` too, not only its inputs'."""

    def __init__(self, gen: torch.Generator) -> None:
        super().__init__()
        self.gen = gen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        schema = func._schema
        if schema.is_mutable or any(r.alias_info is not None for r in schema.returns):
            return out  # in place or a view: moving it would break the aliasing

        def move(t):
            if isinstance(t, Tensor) and t.dtype == F64:
                return t * (1 + PERTURBATION * signs(t.shape, self.gen, t.device))
            return t

        return tree_map(move, out)


def finite_difference(a: Tensor, b: Tensor) -> Tensor:
    d = (a.to(F64) - b.to(F64)).abs()
    return torch.where(d.isfinite(), d, 0.0)


@dataclass
class _Judged:
    ratio: float
    index: tuple[int, ...]
    got: float
    want: float
    bound: float
    nonfinite: bool  # NaN/inf where the reference is finite, or another inf


def judge(got: Tensor, ref: Tensor, size: Tensor, ref_low: Tensor | None,
          dtype: torch.dtype) -> _Judged:
    """``got`` (in ``dtype``) against the float64 reference ``ref``: the worst entry's
    error/bound, with the bound of the module docstring (``size``: S; ``ref_low``: the
    reference run in ``dtype``, or None)."""
    got64, u = got.detach().to(F64), unit_roundoff(dtype)
    target = ref.to(dtype).to(F64)  # the reference rounded to the dtype
    scale = torch.where((ref.abs() + size).isfinite(), ref.abs() + size, 0.0)
    floor = TENSOR_FLOOR * scale.max() if scale.numel() else 0.0
    bound = ROUNDING_FACTOR * u * (scale + floor) + torch.finfo(dtype).tiny
    if ref_low is not None:
        bound = torch.maximum(bound, REFERENCE_FACTOR * finite_difference(ref_low, ref))
    err = torch.where(got64.isfinite() & ref.isfinite(), (got64 - ref).abs(), 0.0)
    ratio = torch.where(err == 0, 0.0, err / bound)
    undefined = ref.isnan()
    bad = (target.isfinite() & ~got64.isfinite()) | (
        ~target.isfinite() & ~undefined & (got64 != target) & ~(ratio <= 1))
    if ref_low is not None:  # torch's own op overflows there too: the dtype's limit, not a bug
        low = ref_low.detach().to(F64)
        bad &= ~((~low.isfinite()) & ((low == got64) | (low.isnan() & got64.isnan())))
    ratio = torch.where(bad, math.inf, torch.where(ratio.isnan(), 0.0, ratio))
    if not ratio.numel():
        return _Judged(0.0, (), math.nan, math.nan, math.nan, False)
    flat = int(ratio.reshape(-1).argmax())
    index = tuple(int(k) for k in torch.unravel_index(torch.tensor(flat), ratio.shape))
    return _Judged(float(ratio.reshape(-1)[flat]), index, float(got64.reshape(-1)[flat]),
                   float(ref.reshape(-1)[flat]), float(bound.reshape(-1)[flat]),
                   bool(bad.any()))
