"""PyTorch's own test inputs against our ops: a peer's suite as the oracle.

For every op in ``OPS``, its entry in torch's OpInfo database (``OpSpec.opinfo``) supplies the
samples: ``reference_inputs`` (0-dim, empty, non-contiguous, broadcast, huge, tiny, NaN and
inf values; an op without them falls back to its ``sample_inputs``). Each sample is called on our
op and on torch's, and ends as one of:

- ``passed``: same output and same first-order gradients (for a random upstream gradient), to
  ``torch.testing.assert_close``'s default tolerances for the dtype. Below float64, where
  torch's own kernel rounds intermediates (in half precision; or a float32 cancellation, as
  layer norm's gradient over one element), "the same" may instead be the float64 torch op on
  the same inputs, rounded to the dtype: the result of float32 inner math rounded once, which
  is our contract (the detail says ``FLOAT64_ORACLE``);
- ``refused``: our op raised a ``TypeError``/``ValueError`` (an argument we do not support,
  named in the message);
- ``failed``: anything else (a different value, another exception).

``gradcheck_samples`` picks the float64 samples that finite differences can judge (finite,
moderate, away from kinks), for ``gradcheck``/``gradgradcheck``.

Needs ``torch.testing._internal`` and so ``expecttest`` (the ``dev`` extra); it is imported on
first use, never by ``neuronlab.functional`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .registry import OpSpec

OUTCOMES = ("passed", "failed", "refused")

# Where an op is not differentiable (finite differences straddling it are meaningless).
_KINKS: dict[str, Callable[[dict], list[float]]] = {
    "relu": lambda kwargs: [0.0],
    "leaky_relu": lambda kwargs: [0.0],
    "softplus": lambda kwargs: [kwargs.get("threshold", 20.0) / kwargs.get("beta", 1.0)],
}


@dataclass
class SampleResult:
    """One OpInfo sample on one op and dtype."""

    op: str
    dtype: torch.dtype
    index: int
    outcome: str  # one of OUTCOMES
    detail: str = ""
    description: str = ""


@dataclass
class OpReport:
    """The counts for one op over the dtypes checked."""

    op: str
    counts: dict[torch.dtype, dict[str, int]] = field(default_factory=dict)
    results: list[SampleResult] = field(default_factory=list)

    def add(self, result: SampleResult) -> None:
        self.results.append(result)
        per = self.counts.setdefault(result.dtype, dict.fromkeys(OUTCOMES, 0))
        per[result.outcome] += 1


def opinfo_for(spec: OpSpec):
    """The OpInfo entry (variant '') that ``spec.opinfo`` names."""
    from torch.testing._internal.common_methods_invocations import op_db

    for op in op_db:
        if op.name == spec.opinfo and op.variant_test_name == "":
            return op
    raise ValueError(f"{spec.name}: opinfo={spec.opinfo!r} is not an OpInfo name in op_db")


def reference_samples(spec: OpSpec, dtype: torch.dtype, device: str = "cpu") -> list:
    """The op's ``reference_inputs`` (or ``sample_inputs`` where it has none), requiring grad."""
    return list(opinfo_for(spec).reference_inputs(device, dtype, requires_grad=True))


def _tensors(sample) -> Iterator[Tensor]:
    for value in (sample.input, *sample.args, *sample.kwargs.values()):
        if isinstance(value, Tensor):
            yield value


def _differentiable(sample) -> list[Tensor]:
    return [t for t in _tensors(sample) if t.requires_grad and t.is_floating_point()]


def _twin(sample):
    """The sample with fresh leaves (same values, same requires_grad): one for each side."""
    def copy(v):
        if isinstance(v, Tensor):
            return v.detach().clone().requires_grad_(v.requires_grad)
        return v

    return sample.transform(copy)


def _call_all(fn, sample):
    return sample.output_process_fn_grad(fn(sample.input, *sample.args, **sample.kwargs))


def _call(fn, sample):
    """The output gradients flow through: the first of a tuple (max pooling's indices and
    other integer outputs are compared by ``_same_extras``)."""
    out = _call_all(fn, sample)
    return out[0] if isinstance(out, tuple) else out


def _same_extras(fn, torch_op, sample) -> str:
    """'' if the outputs after the first (e.g. argmax indices) equal torch's, else why not."""
    with torch.no_grad():
        ours, theirs = _call_all(fn, _twin(sample)), _call_all(torch_op, _twin(sample))
    if not isinstance(theirs, tuple):
        return ""
    for i, (a, b) in enumerate(zip(ours[1:], theirs[1:], strict=True), start=1):
        if not (isinstance(a, Tensor) and a.dtype == b.dtype and torch.equal(a, b)):
            return f"output {i} differs from torch's"
    return ""


def _upstream(out: Tensor, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)


def _forward_and_grads(fn, sample, v: Tensor | None):
    """``fn`` on ``sample``: its output and the gradients of ``v · output`` (``v=None``: the
    output only) with respect to the sample's differentiable tensors."""
    out = _call(fn, sample)
    wrt = _differentiable(sample)
    if v is None or not wrt or not out.requires_grad:
        return out, ()
    grads = torch.autograd.grad(out, wrt, v.to(out.dtype), allow_unused=True,
                                materialize_grads=True)
    return out, grads


def _close(actual, expected, dtype: torch.dtype, what: str) -> str:
    """'' if close (``assert_close``'s defaults for ``dtype``), else why not."""
    if actual.dtype == expected.dtype and torch.equal(actual, expected):
        return ""  # the common case, and fast on a million elements (NaNs take the long way)
    try:
        torch.testing.assert_close(actual.to(dtype), expected.to(dtype), equal_nan=True)
    except AssertionError as e:
        return f"{what}: {e}"
    return ""


def _compare(out, grads, ref_out, ref_grads, dtype: torch.dtype, same_dtype: bool) -> str:
    """'' if ours matches the reference, output and every gradient, else the first mismatch.
    ``same_dtype``: the reference ran in our dtype, so each dtype must be the same too."""
    if same_dtype:
        for i, (ours, ref) in enumerate(zip((out, *grads), (ref_out, *ref_grads), strict=True)):
            if ours.dtype != ref.dtype:
                what = "forward" if i == 0 else f"gradient of differentiable input {i - 1}"
                return f"{what}: dtype {ours.dtype}, torch's is {ref.dtype}"
    why = _close(out, ref_out, dtype, "forward")
    for i, (g, ref) in enumerate(zip(grads, ref_grads, strict=True)):
        why = why or _close(g, ref, dtype, f"gradient of differentiable input {i}")
    return why


def _in_float64(sample):
    """The sample with its floating tensors in float64 (same values; the truth's inputs)."""
    def up(v):
        if isinstance(v, Tensor) and v.is_floating_point():
            return v.detach().double().requires_grad_(v.requires_grad)
        return v

    return sample.transform(up)


def check_sample(spec: OpSpec, sample, *, seed: int = 0) -> tuple[str, str]:
    """``(outcome, detail)`` for one sample: forward and first-order gradients vs torch.

    Below float64 a sample where torch's own kernel rounds intermediates (in half precision,
    or a cancellation in float32: layer norm of one element, whose gradient is exactly 0) so
    its result is off by more than ours passes if ours is close to the *float64* torch op on
    the same inputs, rounded to the dtype; ``detail`` says so.
    """
    dtype = sample.input.dtype
    torch_op = opinfo_for(spec).op
    try:
        ref_out = _call(torch_op, _twin(sample))
    except Exception as e:  # torch itself refuses: not a sample to judge us on
        return "refused", f"torch raises too: {type(e).__name__}: {e}"
    v = _upstream(ref_out, seed)
    try:
        out, grads = _forward_and_grads(spec.function, _twin(sample), v)
    except (TypeError, ValueError) as e:
        return "refused", f"{type(e).__name__}: {e}"
    except Exception as e:
        return "failed", f"raised {type(e).__name__}: {e}"
    _, ref_grads = _forward_and_grads(torch_op, _twin(sample), v)
    why = _compare(out, grads, ref_out, ref_grads, dtype, same_dtype=True)
    if extras := _same_extras(spec.function, torch_op, sample):
        return "failed", extras
    if not why:
        return "passed", ""
    if dtype == torch.float64:
        return "failed", why
    truth_out, truth_grads = _forward_and_grads(torch_op, _in_float64(sample), v)
    if _compare(out, grads, truth_out, truth_grads, dtype, same_dtype=False):
        return "failed", why
    return "passed", f"{FLOAT64_ORACLE}; vs torch's {dtype}: {why}"


FLOAT64_ORACLE = "matches torch in float64 rounded once (torch's kernel in this dtype differs)"


def describe_sample(sample) -> str:
    def one(v):
        if isinstance(v, Tensor):
            nc = "" if v.is_contiguous() else " non-contiguous"
            return f"{str(v.dtype).removeprefix('torch.')}{tuple(v.shape)}{nc}"
        return repr(v)

    args = [one(sample.input), *map(one, sample.args)]
    args += [f"{k}={one(v)}" for k, v in sample.kwargs.items()]
    return f"({', '.join(args)})"


def check_op(spec: OpSpec, dtypes, device: str = "cpu", at_most: int | None = None) -> OpReport:
    """Every reference sample of ``spec`` in each dtype: the report with the counts.
    ``at_most``: an evenly spaced subset of that many (max pooling has ~1000 samples)."""
    report = OpReport(spec.name)
    for dtype in dtypes:
        samples = reference_samples(spec, dtype, device)
        step = 1 if at_most is None else max(1, math.ceil(len(samples) / at_most))
        for index, sample in list(enumerate(samples))[::step]:
            outcome, detail = check_sample(spec, sample, seed=index)
            report.add(SampleResult(spec.name, dtype, index, outcome, detail,
                                    describe_sample(sample)))
    return report


def _judgeable(spec: OpSpec, sample, max_numel: int) -> bool:
    """Finite differences can judge it: finite, moderate values, away from kinks, small."""
    tensors = [t for t in _tensors(sample) if t.is_floating_point()]
    if sum(t.numel() for t in tensors) > max_numel:
        return False
    if not all(t.numel() == 0 or (t.isfinite().all() and t.abs().max() <= 1e3) for t in tensors):
        return False
    kinks = _KINKS.get(spec.name, lambda kwargs: [])(sample.kwargs)
    x = sample.input.detach()
    return all(math.isinf(k) or x.numel() == 0 or (x - k).abs().min() > 1e-3 for k in kinks)


def gradcheck_samples(spec: OpSpec, *, exhaustive: bool = False,
                      max_numel: int = 4096, at_most: int | None = None) -> list:
    """float64 samples for gradcheck: torch's ``sample_inputs`` (what its own gradient tests
    use); ``exhaustive``: the ``reference_inputs`` (which hold them). Only those finite
    differences can judge and that do not need an argument our op refuses; ``at_most``: an
    evenly spaced subset of that many samples first."""
    op = opinfo_for(spec)
    inputs = op.reference_inputs if exhaustive else op.sample_inputs
    samples = list(inputs("cpu", torch.float64, requires_grad=True))
    if at_most is not None:
        samples = samples[::max(1, math.ceil(len(samples) / at_most))]
    chosen = []
    for sample in samples:
        if not _differentiable(sample) or not _judgeable(spec, sample, max_numel):
            continue
        try:
            _call(spec.function, _twin(sample))
        except (TypeError, ValueError):
            continue  # refused: counted by check_op
        chosen.append(sample)
    return chosen


def as_function(spec: OpSpec, sample) -> tuple[Callable[..., Tensor], tuple[Tensor, ...]]:
    """``(fn, inputs)``: our op as a function of the sample's differentiable tensors only."""
    sample = _twin(sample)
    wrt = _differentiable(sample)
    ids = [id(t) for t in wrt]

    def fn(*xs):
        swap = dict(zip(ids, xs, strict=True))
        s = sample.transform(lambda v: swap.get(id(v), v) if isinstance(v, Tensor) else v)
        return _call(spec.function, s)

    return fn, tuple(wrt)
