"""check_function: one op's backward against finite differences and a reference."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any

import torch
from torch import Tensor

from ._common import (
    _F64,
    _ORDER,
    KINK_TOL,
    _amax,
    _same,
    _table,
    grade,
    relative_error,
)

# ---- check_function --------------------------------------------------------------------


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

    @property
    def grade(self) -> str:
        if self.errors or not self.inputs:
            return "error"
        fwd = "good" if self.forward_rel_error is None else grade(self.forward_rel_error)
        return max([fwd] + [r.grade for r in self.inputs], key=_ORDER.index)

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
        lines = [head, _table(("#", "input", "shape", "max abs err", "rel err FD",
                               "rel err ref", "kinks", "grade"), rows)]
        lines += [f"problem: input {r.index} ({r.name}): {p}" for r in self.inputs
                  for p in r.problems]
        return "\n".join(lines + [f"error: {e}" for e in self.errors]
                         + [f"warning: {w}" for w in self.warnings])


class _BackwardProbe:
    """Wraps each custom Function's backward node in a graph to see what it returned *before*
    the engine reduced/cast it, and whether it wrote into its grad_output."""

    def __init__(self, leaves: dict[int, str]) -> None:
        self.leaves = leaves  # id(leaf tensor) -> its label
        self.problems: list[tuple[str | None, str]] = []  # (label of the input or None, msg)
        self.current: Any = None  # the node whose backward ran last

    def install(self, outputs: Sequence[Tensor]) -> None:
        stack, seen = [o.grad_fn for o in outputs], set()
        while stack:
            node = stack.pop()
            if node is not None and id(node) not in seen:
                seen.add(id(node))
                if hasattr(node, "_forward_cls"):  # a Python custom Function's node (its ctx)
                    self._wrap(node)
                stack.extend(n for n, _ in node.next_functions)

    def label(self, node: Any, k: int) -> str | None:
        nxt = node.next_functions[k][0] if k < len(node.next_functions) else None
        return self.leaves.get(id(getattr(nxt, "variable", None)))

    def note(self, label: str | None, msg: str) -> None:
        if (label, msg) not in self.problems:
            self.problems.append((label, msg))

    def _wrap(self, node: Any) -> None:
        original, raw = node.apply, []

        def apply(*grads):  # the engine calls node.apply(*grad_outputs)
            self.current = node
            before = [g.clone() if isinstance(g, Tensor) else g for g in grads]
            result = original(*grads)
            for k, (g, b) in enumerate(zip(grads, before, strict=True)):
                if isinstance(g, Tensor) and not _same(g, b):
                    self.note(None, f"{node.name()} modified its grad_output {k} in place")
            raw[:] = [r for r in (result if isinstance(result, tuple) else (result,))
                      if r is not None]
            return result

        def compare(grad_inputs, grad_outputs):  # grad_inputs: after the engine's sum_to/cast
            given = [(k, g) for k, g in enumerate(grad_inputs) if g is not None]
            for (k, g), r in zip(given, raw, strict=False):
                for what, got, want in (("shape", tuple(r.shape), tuple(g.shape)),
                                        ("dtype", r.dtype, g.dtype),
                                        ("device", r.device, g.device)):
                    if got != want:
                        hint = " (a broadcast dimension not reduced?)" if what == "shape" else ""
                        self.note(self.label(node, k), f"{node.name()} returned gradient {k} "
                                  f"with {what} {got}, expected {want}{hint}")

        node.apply = apply
        node.register_hook(compare)


def _flatten(out: Any) -> list[Tensor]:
    return [t for t in (out if isinstance(out, (tuple, list)) else (out,))
            if isinstance(t, Tensor)]


def _to_float64(x: Any) -> Any:
    if isinstance(x, Tensor) and x.is_floating_point():
        return x.detach().to(_F64).clone().requires_grad_(x.requires_grad)
    return x


def _names(fn: Callable, n: int) -> tuple[str, list[str]]:
    """``fn``'s name, and its first ``n`` positional parameters' (``input{i}`` if unknown)."""
    owner = getattr(fn, "__self__", None)
    is_function = isinstance(owner, type) and issubclass(owner, torch.autograd.Function)
    name = f"{owner.__name__}.apply" if is_function else getattr(fn, "__qualname__", repr(fn))
    try:
        params = inspect.signature(owner.forward if is_function else fn).parameters.values()
    except (TypeError, ValueError):
        params = []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in takewhile(lambda p: p.kind in positional, params)][:n]
    return name, names + [f"input{i}" for i in range(len(names), n)]


def _upstream(outs: Sequence[Tensor], seed: int) -> list[Tensor]:
    """v: magnitudes in [0.5, 1.5), random signs — no entry near 0 hides an error, and no
    coincidence with inputs drawn by ``randn`` from the same seed."""
    gen = torch.Generator().manual_seed(seed)
    return [((torch.rand(o.shape, generator=gen, dtype=_F64) + 0.5)
             * (torch.randint(0, 2, o.shape, generator=gen) * 2 - 1)).to(o) for o in outs]


def _vjp(outs, leaves, vs) -> tuple[list[Tensor], list[Tensor]]:
    """Jᵀv for each leaf (zeros where unused), and the copies of v that backward was given."""
    given = [v.clone() for v in vs]
    grads = torch.autograd.grad(outs, leaves, given, retain_graph=True, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]
    return grads, given


def _finite_differences(fn, args, i, keep, vs, f0, eps):
    """v·(f(x + eps·e_j) − f(x − eps·e_j)) / 2eps for every entry j of ``args[i]``; also the
    jump between the one-sided slopes (large at a kink) and FD's rounding noise, per entry."""
    base = args[i].detach()
    fd, jump, noise = (torch.zeros(base.numel(), dtype=_F64) for _ in range(3))
    for j in range(base.numel()):
        fs = []
        for delta in (eps, -eps):
            x = base.clone(memory_format=torch.contiguous_format)
            x.view(-1)[j] += delta
            fs.append([_flatten(fn(*args[:i], x, *args[i + 1:]))[k] for k in keep])
        terms = list(zip(vs, fs[0], f0, fs[1], strict=True))
        fd[j] = sum((v * (p - m)).sum() for v, p, _, m in terms).item() / (2 * eps)
        jump[j] = abs(sum((v * (p - 2 * o + m)).sum() for v, p, o, m in terms).item()) / eps
        noise[j] = sum((v.abs() * (p.abs() + m.abs()) * (p != m)).sum()
                       for v, p, _, m in terms).item() * torch.finfo(_F64).eps / eps
    return fd.view(base.shape), jump.view(base.shape), noise.view(base.shape)


@torch.enable_grad()
def check_function(fn: Callable[..., Any], *inputs: Any,
                   reference: Callable[..., Any] | None = None, eps: float = 1e-6,
                   seed: int = 0) -> FunctionReport:
    """Check ``fn``'s backward on ``inputs``, in float64.

    Args:
        fn: any function of tensors: ``linear``, a custom ``Function.apply``, a user's function.
        *inputs: its positional arguments. Floating tensors that require grad are checked, as
            float64 copies; anything else (class-index targets, floats) passes through.
        reference: plain-torch code computing the same; its output and its autograd gradient
            (same ``v``) are compared too.
        eps: the finite-difference step.
        seed: seeds the random upstream gradient ``v`` (one per floating output).

    Returns:
        A :class:`FunctionReport`. ``.ok`` is False when an input grades ``wrong``, a backward
        returned a gradient of the wrong shape/dtype/device, modified its grad_output in place
        or gave a different result the second time, or anything raised.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if reference is not None and not callable(reference):
        raise TypeError(f"reference must be callable or None, got {type(reference).__name__}")
    if not eps > 0:
        raise ValueError(f"eps={eps!r} must be > 0")
    args = [_to_float64(x) for x in inputs]
    checked = [i for i, x in enumerate(args) if isinstance(x, Tensor) and x.requires_grad]
    name, names = _names(fn, len(args))
    report = FunctionReport(name, eps)
    report.inputs = [InputReport(i, names[i], tuple(args[i].shape)) for i in checked]
    rows = {f"input {r.index} ({r.name})": r for r in report.inputs}
    try:
        if not checked:
            raise ValueError("no input is a floating tensor that requires grad")
        outs_all = _flatten(fn(*args))
        keep = [k for k, o in enumerate(outs_all) if o.is_floating_point() and o.requires_grad]
        if not keep:
            raise ValueError("no output depends on a checked input")
    except Exception as e:  # a raising fn is a finding, not a crash
        report.errors.append(f"forward: {type(e).__name__}: {e}")
        return report
    outs = [outs_all[k] for k in keep]
    report.warnings += [f"output {k} is {outs_all[k].dtype}, not float64: FD will be imprecise"
                        for k in keep if outs_all[k].dtype != _F64]
    vs = _upstream(outs, seed)
    leaves = [args[i] for i in checked]
    probe = _BackwardProbe({id(x): label for x, label in zip(leaves, rows, strict=True)})
    probe.install(outs)
    try:
        analytic, given = _vjp(outs, leaves, vs)
        in_place = any("in place" in msg for _, msg in probe.problems)
        if not in_place and not all(_same(g, v) for g, v in zip(given, vs, strict=True)):
            probe.note(None, "backward modified the upstream gradient (grad_output) in place")
        again, _ = _vjp(outs, leaves, vs)
        for label, a, b in zip(rows, analytic, again, strict=True):
            if not torch.allclose(a, b, rtol=1e-10, atol=0, equal_nan=True):
                probe.note(label, "a second backward call gave a different gradient")
    except Exception as e:
        node, m = probe.current, re.search(r"at index (\d+)", str(e))
        analytic = None
        probe.note(probe.label(node, int(m.group(1))) if node is not None and m else None,
                   f"backward: {type(e).__name__}: {str(e).splitlines()[0]}")
    if any(isinstance(inputs[i], Tensor) and inputs[i].dtype != _F64 for i in checked):
        for problem in _native_dtype_problems(fn, inputs, checked, list(rows)):
            probe.note(*problem)
    for who, msg in probe.problems:
        (rows[who].problems if who in rows else report.errors).append(msg)
    if analytic is None:
        return report
    ref_grads = _reference(reference, inputs, checked, keep, vs, outs, report)
    with torch.no_grad():
        f0 = [o.detach() for o in outs]
        for n, (i, row) in enumerate(zip(checked, report.inputs, strict=True)):
            try:
                fd = _finite_differences(fn, args, i, keep, vs, f0, eps)
            except Exception as e:
                row.problems.append(f"finite differences: {type(e).__name__}: {e}")
                continue
            _grade_input(row, analytic[n], *fd, None if ref_grads is None else ref_grads[n],
                         report)
    return report


def _native_dtype_problems(fn, inputs, checked, labels) -> list[tuple[str | None, str]]:
    """One backward in the inputs' own dtypes (no finite differences): a gradient of the wrong
    dtype, which the float64 copies would hide, shows here."""
    args = list(inputs)
    for i in checked:
        args[i] = inputs[i].detach().clone().requires_grad_(True)
    leaves = [args[i] for i in checked]
    probe = _BackwardProbe({id(x): label for x, label in zip(leaves, labels, strict=True)})
    try:
        outs = [o for o in _flatten(fn(*args)) if o.is_floating_point() and o.requires_grad]
        probe.install(outs)
        torch.autograd.grad(outs, leaves, [torch.ones_like(o) for o in outs], allow_unused=True)
    except Exception as e:
        probe.note(None, f"backward in the inputs' dtype: {type(e).__name__}: "
                         f"{str(e).splitlines()[0]}")
    return probe.problems


def _reference(reference, inputs, checked, keep, vs, outs, report) -> list[Tensor] | None:
    if reference is None:
        return None
    ref_args = [_to_float64(x) for x in inputs]
    try:
        ref_outs = [_flatten(reference(*ref_args))[k] for k in keep]
        report.forward_rel_error = max(relative_error(o, r)
                                       for o, r in zip(outs, ref_outs, strict=True))
        return _vjp(ref_outs, [ref_args[i] for i in checked], vs)[0]
    except Exception as e:
        report.errors.append(f"reference: {type(e).__name__}: {e}")
        return None


def _grade_input(row: InputReport, a: Tensor, fd: Tensor, jump: Tensor, noise: Tensor,
                 ref: Tensor | None, report: FunctionReport) -> None:
    a = a.detach().to(device="cpu", dtype=_F64)
    kink = jump > KINK_TOL * max(_amax(a), _amax(fd)) + 100 * noise
    row.kinks, smooth = int(kink.sum()), ~kink
    if row.kinks:
        report.warnings.append(f"input {row.index} ({row.name}) has {row.kinks} entries within "
                               "eps of a kink, left out of the finite-difference comparison")
    diff = torch.where(kink, 0.0, (a - fd).abs())
    row.max_abs_error = _amax(diff)
    if diff.numel():
        row.worst_entry = tuple(int(k) for k in torch.unravel_index(diff.argmax(), diff.shape))
    row.fd_rel_error = relative_error(a[smooth], fd[smooth], floor=1e5 * _amax(noise))
    if ref is not None:
        row.reference_rel_error = relative_error(a, ref.cpu())
    row.max_rel_error = max(row.fd_rel_error, row.reference_rel_error or 0.0)
    row.grade = "error" if row.problems else grade(row.max_rel_error)
    if row.grade == "acceptable" and not row.kinks:
        row.grade = "wrong"  # 'acceptable' is for entries near a kink; a smooth input is exact
