"""What the checkers share: relative error, grades, plain-text tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

GOOD, ACCEPTABLE = 1e-7, 1e-4
KINK_TOL = 1e-3  # one-sided slopes that differ by more than this × the gradient's scale
F64 = torch.float64
TINY = torch.finfo(F64).tiny
GRADES = ("good", "acceptable", "wrong", "error")  # best first


def max_abs(t: Tensor) -> float:
    """``‖t‖∞`` as a Python float (0.0 for an empty tensor)."""
    return t.detach().abs().max().item() if t.numel() else 0.0


def same_values(a: Tensor, b: Tensor) -> bool:
    """Same shape and the same entries, NaN equal to NaN."""
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


def relative_error(a: Tensor, b: Tensor, floor: float = 0.0) -> float:
    """``‖a − b‖∞ / max(‖a‖∞, ‖b‖∞, floor, tiny)``, in float64 (0.0 for empty tensors)."""
    a, b = a.detach().to(F64), b.detach().to(device=a.device, dtype=F64)
    return max_abs(a - b) / max(max_abs(a), max_abs(b), floor, TINY)


def grade(rel: float) -> str:
    """``good`` (≤ 1e-7), ``acceptable`` (≤ 1e-4) or ``wrong`` (above, or not finite)."""
    if not math.isfinite(rel) or rel > ACCEPTABLE:
        return "wrong"
    return "good" if rel <= GOOD else "acceptable"


def worst_grade(grades: Sequence[str]) -> str:
    """The worst of ``grades`` in the order good < acceptable < wrong < error."""
    return max(grades, key=GRADES.index)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)
