"""Inputs that find bugs in an elementwise Function, in the dtype it is checked in.

:func:`elementwise_samples` gives, for a Function of ``n`` tensors, samples of values across
the dtype's range: ordinary ``randn`` values, 0-dim, empty, non-contiguous and broadcast
(stride-0 or a smaller second operand) tensors, tiny (subnormal) values, values near overflow
(and just past ``log(max)``, where an ``exp`` overflows), a sweep of magnitudes over the whole
range, ±inf and NaN, and a long row of positive values (a sum accumulated in the dtype stalls on
it). Where ``torch.testing._internal`` imports (the ``dev`` extra), torch's own elementwise
generators (small, large and extremal values, the ones its OpInfo tests use) are added.

Each :class:`Sample` has a name, a seed and ``make(dtype)``: the tensors built in that dtype,
so a failure is replayed with ``sample.make(torch.float16)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

F64 = torch.float64
LONG = 4096  # entries of the long positive row: float16/bfloat16 sums stall well before


@dataclass
class Sample:
    """One set of inputs: ``make(dtype)`` builds them (not requiring grad)."""

    name: str
    seed: int
    make: Callable[[torch.dtype], tuple[Any, ...]]

    def describe(self, dtype: torch.dtype = F64) -> str:
        """``randn seed=0: x (4, 5), w (5,) non-contiguous`` style: enough to replay it."""
        parts = []
        for t in self.make(dtype):
            if isinstance(t, Tensor):
                layout = "" if t.is_contiguous() else " non-contiguous"
                layout = " stride-0" if 0 in t.stride() and t.numel() > 1 else layout
                parts.append(f"{tuple(t.shape)}{layout}")
            else:
                parts.append(repr(t))
        return f"{self.name} (seed={self.seed}): {', '.join(parts)}"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _values(values: Callable[[torch.dtype], Iterable[float]], n: int) -> Callable:
    """``n`` tensors of the same values (chosen for the dtype), each input's in another
    (seeded) order."""

    def make(dt: torch.dtype) -> tuple[Tensor, ...]:
        base = torch.tensor(list(values(dt)), dtype=F64)
        perms = [torch.arange(base.numel())] + [
            torch.randperm(base.numel(), generator=_gen(k)) for k in range(1, n)]
        return tuple(base[p].to(dt) for p in perms)  # each input's in another order

    return make


def _randn(shape: tuple[int, ...], seed: int, n: int) -> Callable:
    def make(dt: torch.dtype) -> tuple[Tensor, ...]:
        g = _gen(seed)
        return tuple(torch.randn(shape, generator=g, dtype=F64).to(dt) for _ in range(n))

    return make


def _large(dtype: torch.dtype) -> list[float]:
    fi = torch.finfo(dtype)
    big = [fi.max, fi.max / 2, fi.max / 16, math.sqrt(fi.max), 1e4 if fi.max > 1e5 else 1e3]
    return [s * v for v in big for s in (1.0, -1.0)]


def _past_exp(dtype: torch.dtype) -> list[float]:
    """Around log(max), where exp overflows, and log(tiny), where it underflows."""
    lm, lt = math.log(torch.finfo(dtype).max), math.log(torch.finfo(dtype).tiny)
    return [s * v for v in (lm - 0.5, lm + 0.5, 2 * lm, lt - 0.5, lt + 0.5)
            for s in (1.0, -1.0)]


def _tiny(dtype: torch.dtype) -> list[float]:
    fi = torch.finfo(dtype)
    tiny = [fi.tiny, 2 * fi.tiny, fi.tiny / 2, fi.tiny * fi.eps, math.sqrt(fi.tiny)]
    return [s * v for v in tiny for s in (1.0, -1.0)]


def _sweep(dtype: torch.dtype, steps: int = 64) -> list[float]:
    fi = torch.finfo(dtype)
    lo, hi = math.log2(fi.tiny), math.log2(fi.max)
    mags = [2.0 ** (lo + (hi - lo) * k / (steps - 1)) for k in range(steps - 1)] + [fi.max]
    return [s * m for m in mags for s in (1.0, -1.0)]


def _layout(kind: str, seed: int, n: int) -> Callable:
    def make(dt: torch.dtype) -> tuple[Tensor, ...]:
        g = _gen(seed)
        if kind == "non-contiguous":
            return tuple(torch.randn(5, 4, generator=g, dtype=F64).to(dt).t() for _ in range(n))
        first = torch.randn(1, 5, generator=g, dtype=F64).to(dt)
        if n == 1:  # one input: a stride-0 (expanded) tensor
            return (first.expand(4, 5),)
        rest = [torch.randn(5, generator=g, dtype=F64).to(dt) for _ in range(n - 1)]
        return (torch.randn(4, 5, generator=g, dtype=F64).to(dt), *rest)

    return make


def _long(seed: int, n: int) -> Callable:
    def make(dt: torch.dtype) -> tuple[Tensor, ...]:
        g = _gen(seed)
        return tuple((torch.rand(LONG, generator=g, dtype=F64) + 0.5).to(dt) for _ in range(n))

    return make


class _Op:  # the one attribute torch's binary generators read from an OpInfo
    @staticmethod
    def sample_kwargs(device, dtype, x):
        return {}, {}


def torch_samples(n: int) -> list[Sample]:
    """torch's own elementwise small/large/extremal value tensors ([] where not importable);
    torch's pairs are cycled over ``n`` inputs."""
    try:
        from torch.testing._internal import common_methods_invocations as cmi
    except Exception:  # torch.testing._internal needs expecttest (the dev extra)
        return []
    samples = []
    for kind, count in (("small_value", 1), ("large_value", 1), ("extremal_value", 2)):
        gen = getattr(cmi, f"generate_elementwise_binary_{kind}_tensors", None)
        for k in range(count if gen is not None else 0):

            def make(dt, gen=gen, k=k):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)  # make_tensor draws from the global generator
                    found = list(gen(_Op(), device="cpu", dtype=dt))[k]
                pair = (found.input, *found.args)
                return tuple(pair[j % 2] for j in range(n))

            samples.append(Sample(f"torch {kind.replace('_', ' ')}s #{k}", 0, make))
    return samples


def elementwise_samples(n: int, seed: int = 0, torch_generators: bool = True) -> list[Sample]:
    """The samples for an elementwise Function of ``n`` tensors; the extreme values are chosen
    for the dtype ``make`` is called with (its tiny, its max, its ``log(max)``).
    ``torch_generators``: add torch's own (:func:`torch_samples`; importing
    ``torch.testing._internal`` takes seconds)."""
    if n < 1:
        raise ValueError(f"n={n} must be ≥ 1 (the Function's tensor inputs)")
    s = seed
    samples = [
        Sample("randn", s, _randn((4, 5), s, n)),
        Sample("0-dim", s + 1, _randn((), s + 1, n)),
        Sample("empty", s, _randn((0, 3), s, n)),
        Sample("non-contiguous", s + 2, _layout("non-contiguous", s + 2, n)),
        Sample("broadcast", s + 3, _layout("broadcast", s + 3, n)),
        Sample("near overflow in the dtype", s, _values(_large, n)),
        Sample("around log(max) and log(tiny) of the dtype", s, _values(_past_exp, n)),
        Sample("tiny and subnormal in the dtype", s, _values(_tiny, n)),
        Sample("magnitudes across the dtype", s, _values(_sweep, n)),
        Sample("±inf, nan, ±0", s,
               _values(lambda dt: [math.inf, -math.inf, math.nan, 0.0, -0.0, 1.0], n)),
        Sample(f"long row of {LONG} positive values", s + 4, _long(s + 4, n)),
    ]
    return samples + (torch_samples(n) if torch_generators else [])


def as_samples(samples: Any, seed: int = 0) -> list[Sample]:
    """A user's ``samples=``: a list of input tuples (or :class:`Sample`), or a callable
    ``samples(dtype)`` returning one (so its values can depend on the dtype)."""
    def tup(x: Any) -> tuple[Any, ...]:
        return tuple(x) if isinstance(x, (tuple, list)) else (x,)

    if callable(samples):
        try:
            count = len(list(samples(F64)))
        except Exception as e:
            raise TypeError(f"samples(torch.float64) raised {type(e).__name__}: {e}; samples "
                            "must be a list of input tuples or samples(dtype) returning one") \
                from e
        return [Sample(f"samples(dtype)[{k}]", seed,
                       lambda dt, k=k: tup(list(samples(dt))[k])) for k in range(count)]
    if isinstance(samples, (str, bytes)) or not isinstance(samples, Iterable):
        raise TypeError(f"samples={samples!r} must be a list of input tuples or a callable "
                        "samples(dtype) returning one")
    return [s if isinstance(s, Sample) else Sample(f"samples[{k}]", seed, lambda dt, s=s: tup(s))
            for k, s in enumerate(samples)]
