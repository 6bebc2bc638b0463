"""check_function: one op's backward against finite differences and a reference."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .finite_differences import finite_differences, flatten_outputs, upstream_gradients, vjp
from .grading import (
    F64,
    KINK_TOL,
    grade,
    max_abs,
    relative_error,
    same_values,
    text_table,
    worst_grade,
)
from .precision import PrecisionResult, check_precision
from .probe import BackwardProbe
from .samples import Sample, as_samples, elementwise_samples
from .signature import dtype_names, input_names, parameters


@dataclass
class InputReport:
    """One checked input: its analytic gradient against FD (and the reference)."""

    index: int
    name: str
    shape: tuple[int, ...]
    max_abs_error: float = math.nan  # max |analytic − FD| over the entries not at a kink
    fd_rel_error: float = math.nan
    reference_rel_error: float | None = None
    max_rel_error: float = math.nan  # the graded number: the worse of FD and reference
    worst_entry: tuple[int, ...] | None = None  # where |analytic − FD| is largest
    worst_values: tuple[float, float] = (math.nan, math.nan)  # (backward, FD) there
    kinks: int = 0  # entries within eps of a kink: left out of the FD comparison
    grade: str = "error"  # good | acceptable | wrong | error (a problem below, or a raise)
    problems: list[str] = field(default_factory=list)


@dataclass
class FunctionReport:
    """What :func:`check_function` found; ``str(report)`` is a readable table."""

    name: str
    eps: float
    inputs: list[InputReport] = field(default_factory=list)
    forward_rel_error: float | None = None  # output vs the reference's output
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    precision: PrecisionResult | None = None  # the dtypes' checks, when dtypes were asked for
    samples: list[str] = field(default_factory=list)  # the samples checked, replayable

    @property
    def grade(self) -> str:
        if self.errors or not self.inputs:
            return "error"
        fwd = "good" if self.forward_rel_error is None else grade(self.forward_rel_error)
        low = "good" if self.precision is None or self.precision.ok else "wrong"
        return worst_grade([fwd, low] + [r.grade for r in self.inputs])

    @property
    def ok(self) -> bool:
        return self.grade in ("good", "acceptable")

    @property
    def worst_relative(self) -> float:
        return max((r.max_rel_error for r in self.inputs), default=math.nan)

    def __str__(self) -> str:
        fwd = self.forward_rel_error
        head = (f"check_function({self.name}): {'OK' if self.ok else 'FAILED'} ({self.grade}; "
                f"float64, eps={self.eps:g}"
                + ("" if fwd is None else f", output vs reference {fwd:.1e}") + ")")
        rows = [(r.index, r.name, r.shape, f"{r.max_abs_error:.1e}", f"{r.fd_rel_error:.1e}",
                 "-" if r.reference_rel_error is None else f"{r.reference_rel_error:.1e}",
                 r.kinks, r.grade) for r in self.inputs]
        lines = [head, text_table(("#", "input", "shape", "max abs err", "rel err FD",
                                   "rel err ref", "kinks", "grade"), rows)]
        lines += [f"problem: input {r.index} ({r.name}): {p}" for r in self.inputs
                  for p in r.problems]
        lines += [f"problem: input {r.index} ({r.name}): ∂L/∂{r.name} is {r.grade}; worst "
                  f"entry {list(r.worst_entry)}: backward {r.worst_values[0]:.6g}, finite "
                  f"differences {r.worst_values[1]:.6g}" for r in self.inputs
                  if r.grade == "wrong" and r.worst_entry is not None and not r.problems]
        lines += [] if self.precision is None else self.precision.lines()
        lines += [f"sample: {s}" for s in self.samples] if not self.ok else []
        return "\n".join(lines + [f"error: {e}" for e in self.errors]
                         + [f"warning: {w}" for w in self.warnings])


def _to_float64(x: Any) -> Any:
    if isinstance(x, Tensor) and x.is_floating_point():
        return x.detach().to(F64).clone().requires_grad_(x.requires_grad)
    return x


@torch.enable_grad()
def check_function(fn: Callable[..., Any], *inputs: Any,
                   reference: Callable[..., Any] | None = None, eps: float = 1e-6,
                   seed: int = 0, dtypes: Any = (), samples: Any = None) -> FunctionReport:
    """Check ``fn``'s backward on ``inputs``, in float64, and in each of ``dtypes``.

    Args:
        fn: any function of tensors: ``linear``, a custom ``Function.apply``, a user's function.
        *inputs: its positional arguments. Floating tensors that require grad are checked, as
            float64 copies; anything else (class-index targets, floats) passes through. None
            given: generated ones (:func:`~neuronlab.gradcheck.samples.elementwise_samples`,
            for an elementwise ``fn`` of as many tensors as its ``forward`` names).
        reference: plain-torch code computing the same; its output and its autograd gradient
            (same ``v``) are compared too.
        eps: the finite-difference step.
        seed: seeds the random upstream gradient ``v`` (one per floating output).
        dtypes: ``"float32"``, ``"bfloat16"``, ``"float16"`` (``"float64"`` too): ``fn`` runs
            on the inputs rounded to each, its output and gradients judged against the float64
            reference on the same rounded inputs (:mod:`.precision`; without a ``reference``,
            ``fn`` itself in float64, as checked by finite differences).
        samples: more inputs for the dtypes' checks: a list of input tuples, or a callable
            ``samples(dtype)`` returning one. The float64 check uses ``inputs`` (or, when none
            are given, the first sample).

    Returns:
        A :class:`FunctionReport`. ``.ok`` is False when an input grades ``wrong``, a backward
        returned a gradient of the wrong shape/dtype/device, modified its grad_output in place
        or gave a different result the second time, a dtype's check failed, or anything raised.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if reference is not None and not callable(reference):
        raise TypeError(f"reference must be callable or None, got {type(reference).__name__}")
    if not eps > 0:
        raise ValueError(f"eps={eps!r} must be > 0")
    low = dtype_names(dtypes)
    extra = [] if samples is None else as_samples(samples, seed)
    if not inputs:
        if not extra:
            n = len(parameters(fn, True)) or len(parameters(reference, True))
            if not n:
                raise ValueError("no inputs given, and neither fn nor reference names its "
                                 "parameters: pass inputs or samples=")
            extra = elementwise_samples(n, seed)
        first = extra[0].make(F64)
        mark = not any(getattr(t, "requires_grad", False) for t in first)
        inputs = tuple(t.detach().requires_grad_(True) if mark and isinstance(t, Tensor)
                       and t.is_floating_point() else t for t in first)
        ours = extra
    else:
        ours = [Sample("your inputs", seed, lambda dt: inputs)] + extra
    args = [_to_float64(x) for x in inputs]
    checked = [i for i, x in enumerate(args) if isinstance(x, Tensor) and x.requires_grad]
    name, names = input_names(fn, len(args), reference)
    report = FunctionReport(name, eps)
    report.inputs = [InputReport(i, names[i], tuple(args[i].shape)) for i in checked]
    rows = {f"input {r.index} ({r.name})": r for r in report.inputs}
    try:
        if not checked:
            raise ValueError("no input is a floating tensor that requires grad")
        outs_all = flatten_outputs(fn(*args))
        keep = [k for k, o in enumerate(outs_all) if o.is_floating_point() and o.requires_grad]
        if not keep:
            raise ValueError("no output depends on a checked input")
    except Exception as e:  # a raising fn is a finding, not a crash
        report.errors.append(f"forward: {type(e).__name__}: {e}")
        return report
    outs = [outs_all[k] for k in keep]
    report.warnings += [f"output {k} is {outs_all[k].dtype}, not float64: FD will be imprecise"
                        for k in keep if outs_all[k].dtype != F64]
    vs = upstream_gradients(outs, seed)
    leaves = [args[i] for i in checked]
    probe = BackwardProbe({id(x): label for x, label in zip(leaves, rows, strict=True)})
    probe.install(outs)
    try:
        analytic, given = vjp(outs, leaves, vs)
        in_place = any("in place" in msg for _, msg in probe.problems)
        if not in_place and not all(same_values(g, v) for g, v in zip(given, vs, strict=True)):
            probe.note(None, "backward modified the upstream gradient (grad_output) in place")
        again, _ = vjp(outs, leaves, vs)
        for label, a, b in zip(rows, analytic, again, strict=True):
            if not torch.allclose(a, b, rtol=1e-10, atol=0, equal_nan=True):
                probe.note(label, "a second backward call gave a different gradient")
    except Exception as e:
        node, m = probe.current, re.search(r"at index (\d+)", str(e))
        analytic = None
        probe.note(probe.label(node, int(m.group(1))) if node is not None and m else None,
                   f"backward: {type(e).__name__}: {str(e).splitlines()[0]}")
    if any(isinstance(inputs[i], Tensor) and inputs[i].dtype != F64 for i in checked):
        _native_dtype_problems(fn, inputs, checked, list(rows), probe)
    if low:
        report.precision = check_precision(fn, ours, reference or fn, low, names, probe,
                                           seed, reference_in_dtype=reference is not None)
        report.samples = [s.describe() for s in ours]
    for who, msg in probe.problems:
        (rows[who].problems if who in rows else report.errors).append(msg)
    if analytic is None:
        return report
    ref_grads = _reference(reference, inputs, checked, keep, vs, outs, report)
    with torch.no_grad():
        f0 = [o.detach() for o in outs]
        for n, (i, row) in enumerate(zip(checked, report.inputs, strict=True)):
            try:
                fd = finite_differences(fn, args, i, keep, vs, f0, eps)
            except Exception as e:
                row.problems.append(f"finite differences: {type(e).__name__}: {e}")
                continue
            _grade_input(row, analytic[n], *fd, None if ref_grads is None else ref_grads[n],
                         report)
    return report


def _native_dtype_problems(fn, inputs, checked, labels, probe: BackwardProbe) -> None:
    """One backward in the inputs' own dtypes (no finite differences): a gradient of the wrong
    dtype, which the float64 copies would hide, shows here (in ``probe``)."""
    args = list(inputs)
    for i in checked:
        args[i] = inputs[i].detach().clone().requires_grad_(True)
    leaves = [args[i] for i in checked]
    probe.leaves.update({id(x): label for x, label in zip(leaves, labels, strict=True)})
    try:
        outs = [o for o in flatten_outputs(fn(*args)) if o.is_floating_point() and o.requires_grad]
        probe.install(outs)
        torch.autograd.grad(outs, leaves, [torch.ones_like(o) for o in outs], allow_unused=True)
    except Exception as e:
        probe.note(None, f"backward in the inputs' dtype: {type(e).__name__}: "
                         f"{str(e).splitlines()[0]}")


def _reference(reference, inputs, checked, keep, vs, outs, report) -> list[Tensor] | None:
    if reference is None:
        return None
    ref_args = [_to_float64(x) for x in inputs]
    try:
        ref_outs = [flatten_outputs(reference(*ref_args))[k] for k in keep]
        report.forward_rel_error = max(relative_error(o, r)
                                       for o, r in zip(outs, ref_outs, strict=True))
        return vjp(ref_outs, [ref_args[i] for i in checked], vs)[0]
    except Exception as e:
        report.errors.append(f"reference: {type(e).__name__}: {e}")
        return None


def _grade_input(row: InputReport, a: Tensor, fd: Tensor, jump: Tensor, noise: Tensor,
                 ref: Tensor | None, report: FunctionReport) -> None:
    a = a.detach().to(device="cpu", dtype=F64)
    kink = jump > KINK_TOL * max(max_abs(a), max_abs(fd)) + 100 * noise
    row.kinks, smooth = int(kink.sum()), ~kink
    if row.kinks:
        report.warnings.append(f"input {row.index} ({row.name}) has {row.kinks} entries within "
                               "eps of a kink, left out of the finite-difference comparison")
    diff = torch.where(kink, 0.0, (a - fd).abs())
    row.max_abs_error = max_abs(diff)
    if diff.numel():
        row.worst_entry = tuple(int(k) for k in torch.unravel_index(diff.argmax(), diff.shape))
        row.worst_values = (float(a[row.worst_entry]), float(fd[row.worst_entry]))
    row.fd_rel_error = relative_error(a[smooth], fd[smooth], floor=1e5 * max_abs(noise))
    if ref is not None:
        row.reference_rel_error = relative_error(a, ref.cpu())
    row.max_rel_error = max(row.fd_rel_error, row.reference_rel_error or 0.0)
    row.grade = "error" if row.problems else grade(row.max_rel_error)
    if row.grade == "acceptable" and not row.kinks:
        row.grade = "wrong"  # 'acceptable' is for entries near a kink; a smooth input is exact
