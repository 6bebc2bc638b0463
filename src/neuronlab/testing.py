"""For your own test suite: your Function checked as neuronlab checks its own ops.

    # tests/test_swish.py
    from neuronlab.testing import assert_function_matches
    from mypkg.ops import Swish, swish_reference

    def test_swish():
        assert_function_matches(Swish, swish_reference, dtypes=("float64", "bfloat16"))

It runs :func:`neuronlab.gradcheck.check_function` (float64 finite differences and the
reference; in each dtype the generated inputs rounded to it, against the float64 reference
within the rounding bound of :mod:`neuronlab.gradcheck.precision`) and fails with the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .gradcheck import FunctionReport, check_function

__all__ = ["assert_function_matches"]

ALL_DTYPES = ("float64", "float32", "bfloat16", "float16")


def assert_function_matches(fn: Callable[..., Any] | type, reference: Callable[..., Any] | None,
                            *inputs: Any, dtypes: Sequence[str | torch.dtype] = ALL_DTYPES,
                            samples: Any = None, seed: int = 0) -> FunctionReport:
    """Raise ``AssertionError`` (its message: the report) unless ``fn`` passes.

    Args:
        fn: a ``torch.autograd.Function`` subclass (its ``apply`` is checked) or any function
            of tensors.
        reference: plain-torch code computing the same (None: ``fn`` against finite
            differences, and in each dtype against itself in float64).
        *inputs: inputs to check on; none: generated ones for an elementwise ``fn`` (see
            :mod:`neuronlab.gradcheck.samples`).
        dtypes: the dtypes to check in (default all four).
        samples: your own inputs for the dtypes' checks (see ``check_function``).
        seed: seeds the upstream gradient.

    Returns the report when it passes.
    """
    if isinstance(fn, type) and issubclass(fn, torch.autograd.Function):
        fn = fn.apply
    report = check_function(fn, *inputs, reference=reference, dtypes=dtypes, samples=samples,
                            seed=seed)
    if not report.ok:
        raise AssertionError(str(report))
    return report
