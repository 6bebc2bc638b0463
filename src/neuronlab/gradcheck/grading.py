"""Shared pieces of the checkers: relative error, grades, plain-text tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

GOOD, ACCEPTABLE = 1e-7, 1e-4
KINK_TOL = 1e-3  # one-sided slopes that differ by more than this × the gradient's scale
_F64 = torch.float64
_TINY = torch.finfo(_F64).tiny
_ORDER = ("good", "acceptable", "wrong", "error")


def _amax(t: Tensor) -> float:
    return t.detach().abs().max().item() if t.numel() else 0.0


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


def relative_error(a: Tensor, b: Tensor, floor: float = 0.0) -> float:
    """``‖a − b‖∞ / max(‖a‖∞, ‖b‖∞, floor, tiny)``, in float64 (0.0 for empty tensors)."""
    a, b = a.detach().to(_F64), b.detach().to(device=a.device, dtype=_F64)
    return _amax(a - b) / max(_amax(a), _amax(b), floor, _TINY)


def grade(rel: float) -> str:
    """``good`` (≤ 1e-7), ``acceptable`` (≤ 1e-4) or ``wrong`` (above, or not finite)."""
    if not math.isfinite(rel) or rel > ACCEPTABLE:
        return "wrong"
    return "good" if rel <= GOOD else "acceptable"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)
