"""A Function checked in the precision it trains in: float32, bfloat16, float16.

For each dtype and each sample, the Function runs on the inputs *rounded to the dtype* (and on
an upstream gradient ``v`` rounded to it); its output and every input's gradient are judged,
entry by entry, against the reference computed in float64 from the *same rounded* inputs and
``v`` — so the only error left is the Function's own rounding, and the bound is::

    bound = max(c · u · (|r| + S + 2⁻⁴ · max(|r| + S)) + tiny,  k · |reference in dtype − r|)

- ``r``: the float64 reference; ``u``: the dtype's unit roundoff (float32 2⁻²⁴, bfloat16 2⁻⁸,
  float16 2⁻¹¹); ``c = 16`` as in :mod:`.rounding`; ``tiny``: the dtype's smallest normal
  number (a subnormal result has fewer digits; a flush to zero is not a finding).
- ``2⁻⁴ · max(|r| + S)``, the largest over the tensor: an entry 16× smaller than the tensor's
  largest is judged on that absolute scale (norm-wise), as :mod:`.rounding` floors a tensor at
  a fraction of the model's largest term. Formulas that cancel in a tail (``1 + erf(x)`` at
  ``x = −8``, ``1 − a²`` near ``|a| = 1``) lose relative digits there that no training sees;
  above the floor, every entry is judged on its own.
- ``S``: the size of what the value is summed from, measured rather than derived: how much the
  float64 reference moves when every input, ``v`` *and every intermediate result of every op
  it runs* (forward and backward, by a ``TorchDispatchMode``) is moved by a relative ``h``
  (random signs, ``h = 2⁻²⁰``), divided by ``h`` — Monte Carlo arithmetic on the reference's
  own algorithm, the largest of two draws. A correctly rounded elementwise result is within
  ``u·|r|``; a correct sum (float32 inner math, rounded once) within ``u·|r| + u₃₂·Σ|terms|``,
  and ``Σ|terms|`` is what ``S`` sees when terms cancel (for ``n`` terms, their random-walk
  size). ``S`` is the reference's: a Function whose own algorithm sums more loosely (a sum
  accumulated in bfloat16) is not excused by it.
- ``k · |reference in the dtype − r|`` (``k = 4``): a Function as accurate as torch's own op
  in that dtype passes, even where torch rounds intermediates (torch's half kernels).

Always a failure, whatever the bound: NaN or ±inf where the reference (rounded to the dtype) is
finite — an overflow, an inf/inf — unless torch's own op in that dtype gives the same non-finite
value there (a float32 sum of ±3.4e38 overflows in any float32 accumulator), and a value other
than the reference's ±inf where it is infinite. Entries where the float64 reference is NaN are
not judged (it is not defined there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .bound import (
    PERTURBATION,
    PROBES,
    REFERENCE_FACTOR,
    Jitter,
    finite_difference,
    judge,
    signs,
)
from .finite_differences import flatten_outputs
from .grading import F64, text_table
from .probe import BackwardProbe
from .rounding import ROUNDING_FACTOR
from .samples import Sample

DTYPE_NAMES = {"float64": torch.float64, "float32": torch.float32,
               "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class PrecisionRow:
    """One tensor (an output, or an input's gradient) in one dtype, over every sample."""

    dtype: str
    name: str  # "output", or the input's name
    ratio: float = 0.0  # worst |error| / bound over the entries of every sample (≤ 1 passes)
    sample: str = ""  # the sample where it was worst
    index: tuple[int, ...] = ()  # its worst entry
    got: float = math.nan
    want: float = math.nan  # the float64 reference at that entry
    bound: float = math.nan
    samples: int = 0  # samples judged
    failed: int = 0  # of which over the bound
    ratios: list[float] = field(default_factory=list)  # each sample's worst error/bound
    problem: str = ""  # "" or why it fails, in one line

    @property
    def ok(self) -> bool:
        return not self.problem and self.ratio <= 1


@dataclass
class PrecisionResult:
    """What :func:`check_precision` found; ``rows`` per dtype and tensor, ``errors`` else."""

    rows: list[PrecisionRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # samples the reference refuses too

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.ok for r in self.rows)

    def lines(self) -> list[str]:
        if not self.rows and not self.errors:
            return []
        rows = [(r.dtype, r.name, f"{r.ratio:.3g}", f"{r.failed}/{r.samples}",
                 "ok" if r.ok else "FAIL") for r in self.rows]
        out = [f"in each dtype, against c·u·(|ref| + S) (c={ROUNDING_FACTOR:g}) or "
               f"{REFERENCE_FACTOR:g}× the reference's own error in that dtype:",
               text_table(("dtype", "tensor", "worst error/bound", "samples over", "result"),
                          rows)]
        out += [f"problem: {r.problem}" for r in self.rows if r.problem]
        out += [f"error: {e}" for e in self.errors]
        if self.skipped:
            out.append(f"note: {len(self.skipped)} sample(s) skipped, the reference raises on "
                       f"them too: {'; '.join(sorted(set(self.skipped)))}")
        return out


def _prepare(args: Sequence[Any], checked: Sequence[int], dtype: torch.dtype,
             perturb: torch.Generator | None = None) -> list[Any]:
    """Floating tensors in ``dtype``, fresh leaves (the checked ones requiring grad); with
    ``perturb``: every checked value moved by a relative ±h."""
    out = list(args)
    for i, a in enumerate(args):
        if isinstance(a, Tensor) and a.is_floating_point():
            t = a.detach()
            t = t.to(dtype) if t.dtype != dtype else t.clone()
            if perturb is not None and i in checked:
                t = t * (1 + PERTURBATION * signs(t.shape, perturb, t.device))
            out[i] = t.requires_grad_(i in checked)
    return out


def _evaluate(fn: Callable, args: list[Any], checked: Sequence[int], vs: list[Tensor] | None,
              seed: int) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """``fn``'s floating outputs, the gradients of ``Σ v·out`` wrt the checked inputs, and v
    (drawn in float64 from ``seed`` and rounded to each output's dtype when not given)."""
    outs = [o for o in flatten_outputs(fn(*args)) if o.is_floating_point()]
    if vs is None:
        gen = torch.Generator().manual_seed(seed)
        vs = [((torch.rand(o.shape, generator=gen, dtype=F64) + 0.5)
               * signs(o.shape, gen)).to(device=o.device, dtype=o.dtype) for o in outs]
    leaves = [args[i] for i in checked]
    pairs = [(o, v.to(o.dtype)) for o, v in zip(outs, vs, strict=True) if o.requires_grad]
    grads = [None] * len(leaves)
    if pairs and leaves:
        grads = list(torch.autograd.grad([o for o, _ in pairs], leaves, [v for _, v in pairs],
                                         allow_unused=True))
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]
    return [o.detach() for o in outs], [g.detach() for g in grads], vs


def check_precision(fn: Callable, samples: Sequence[Sample], reference: Callable,
                    dtypes: Sequence[str], names: Sequence[str], probe: BackwardProbe,
                    seed: int = 0, reference_in_dtype: bool = True) -> PrecisionResult:
    """Each sample in each dtype: ``fn``'s output and gradients against the float64
    ``reference`` on the same rounded inputs.

    Args:
        names: the inputs' names, by position.
        probe: sees each custom Function's raw backward (a gradient of the wrong dtype/shape).
        seed: seeds ``v`` (sample ``n`` uses ``seed + n``).
        reference_in_dtype: also run ``reference`` in each dtype, allowing k× its own error
            (False when the reference is ``fn`` itself in float64).

    A sample's gradients are judged for its floating tensors that require grad (all of its
    floating tensors when none does)."""
    result = PrecisionResult()
    rows: dict[tuple[str, str], PrecisionRow] = {}
    for dname in dtypes:
        dtype = DTYPE_NAMES[dname]
        for n, sample in enumerate(samples):
            _one(fn, sample, reference, dtype, dname, names, probe, seed + n, rows, result,
                 reference_in_dtype)
        if samples and not any(key[0] == dname for key in rows) and not result.errors:
            result.errors.append(f"{dname}: no sample was judged (the reference raises on "
                                 "every one): pass inputs or samples= that it takes")
    result.rows = list(rows.values())
    return result


def _one(fn, sample, reference, dtype, dname, names, probe, seed, rows, result, in_dtype):
    raw = sample.make(dtype)
    floats = [i for i, a in enumerate(raw) if isinstance(a, Tensor) and a.is_floating_point()]
    idx = [i for i in floats if raw[i].requires_grad] or floats
    where = sample.describe(dtype)
    try:
        r_outs, r_grads, _ = _evaluate(reference, _prepare(raw, idx, F64), idx, None, seed)
    except Exception as e:
        result.skipped.append(f"{sample.name}: {type(e).__name__}")
        return
    args = _prepare(raw, idx, dtype)
    probe.leaves.update({id(args[i]): f"input {i} ({names[i]})" for i in idx})
    try:
        outs = [o for o in flatten_outputs(fn(*args)) if o.is_floating_point()]
        probe.install([o for o in outs if o.requires_grad])
        gen = torch.Generator().manual_seed(seed)
        vs = [((torch.rand(o.shape, generator=gen, dtype=F64) + 0.5) * signs(o.shape, gen))
              .to(device=o.device, dtype=o.dtype) for o in outs]
        outs, grads, _ = _evaluate(lambda *a: outs, args, idx, vs, seed)
    except Exception as e:
        result.errors.append(f"{dname}: {type(e).__name__}: {str(e).splitlines()[0]} "
                             f"(the reference runs) on {where}")
        return
    v64 = [v.to(F64) for v in vs]
    r_outs, r_grads, _ = _evaluate(reference, _prepare(raw, idx, F64), idx, v64, seed)
    sizes = [torch.zeros_like(t) for t in r_outs + r_grads]
    for p in range(PROBES):
        gen = torch.Generator().manual_seed(1000 + p)
        moved = [v * (1 + PERTURBATION * signs(v.shape, gen, v.device)) for v in v64]
        with Jitter(gen):
            p_outs, p_grads, _ = _evaluate(reference, _prepare(raw, idx, F64, gen), idx, moved,
                                           seed)
        sizes = [torch.maximum(s, finite_difference(a, b) / PERTURBATION)
                 for s, a, b in zip(sizes, p_outs + p_grads, r_outs + r_grads, strict=True)]
    try:
        if not in_dtype:
            raise NotImplementedError
        l_outs, l_grads, _ = _evaluate(reference, _prepare(raw, idx, dtype), idx, vs, seed)
        lows = l_outs + l_grads
    except Exception:  # the reference has no kernel in this dtype: judged on c·u alone
        lows = [None] * len(sizes)
    labels = ["output" if len(outs) == 1 else f"output {k}" for k in range(len(outs))]
    labels += [names[i] for i in idx]
    for label, got, ref, size, low in zip(labels, outs + grads, r_outs + r_grads, sizes, lows,
                                          strict=True):
        row = rows.setdefault((dname, label), PrecisionRow(dname, label))
        row.samples += 1
        if label.startswith("output") and got.dtype != dtype:
            row.problem = row.problem or (f"{dname} {label}: dtype {got.dtype} for "
                                          f"{dtype} inputs, on {where}")
            continue
        if got.shape != ref.shape:
            row.problem = row.problem or (f"{dname} {label}: shape {tuple(got.shape)}, the "
                                          f"reference's is {tuple(ref.shape)}, on {where}")
            continue
        j = judge(got, ref, size, None if low is None or low.shape != ref.shape else low, dtype)
        row.failed += j.ratio > 1
        row.ratios.append(j.ratio)
        if j.ratio > row.ratio or not row.sample:
            row.ratio, row.sample, row.index = j.ratio, where, j.index
            row.got, row.want, row.bound = j.got, j.want, j.bound
            if j.ratio > 1:
                what = ("not finite where the reference is" if j.nonfinite and
                        math.isfinite(j.want) else f"{j.ratio:.3g}× the bound {j.bound:.3g}")
                tensor = label if label.startswith("output") else f"∂L/∂{label}"
                at = "".join(f", {names[i]}={float(raw[i].detach()[j.index]):.6g}"
                             for i in idx if raw[i].shape == got.shape and got.numel())
                row.problem = (f"{dname} {tensor} at index {list(j.index)}{at}: got "
                               f"{j.got:.6g}, reference {j.want:.6g} ({what}); on {where}")
