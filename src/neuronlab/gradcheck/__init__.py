"""Verification: is a backward pass right?

- :func:`check_function` — one op: its vector-Jacobian product Jᵀv (backprop of a seeded
  random upstream gradient ``v``) against central finite differences and, optionally, autograd
  through a plain-torch ``reference``; with ``dtypes=`` also in float32/bfloat16/float16, on
  the inputs rounded to each (or generated ones, :mod:`.samples`), against the float64
  reference within a rounding bound (:mod:`.precision`). It also watches each custom
  Function's *raw* backward output, because torch's engine silently sums an unreduced
  broadcast dimension and casts a wrong dtype (the final gradient then looks right), and
  whether a backward writes into its ``grad_output``.
- :func:`compare_gradients` — a whole model: each parameter's gradient through the manual
  Functions vs through autograd, same parameters, same batch. A model's gradient is a sum whose
  terms cancel near a minimum, so its difference is judged against a *rounding bound*,
  ``c·u·(size of the terms it is summed from)`` (:mod:`.rounding`); the training audit and
  ``neuronlab-check``'s MLP row use the same rule.
- :func:`run_checks` — the suite behind ``neuronlab-check``: every op in ``OPS`` and an MLP,
  one :class:`CheckRow` each, in a :class:`SuiteResult`.

Relative error, for single ops, is norm-wise per tensor:
``rel(a, b) = ‖a − b‖∞ / max(‖a‖∞, ‖b‖∞, floor)`` — 0 when both are 0, ≥ 1 when one is 0 and
the other not, never inflated by tiny entries. Against finite differences the floor is 1e5 ×
FD's own rounding noise (≈ ε_mach·Σ|v|·|f|/eps), so a gradient too small for FD to resolve is
not flagged; an exact op in float64 with eps=1e-6 scores ~1e-10 or below.
Grades: ``good`` (rel ≤ 1e-7), ``acceptable`` (≤ 1e-4, typical near kinks), ``wrong``.
"""


from .function import FunctionReport, InputReport, check_function
from .grading import ACCEPTABLE, GOOD, grade, relative_error
from .model import GradientReport, ParameterRow, compare_gradients, default_tolerance
from .precision import PrecisionResult, PrecisionRow, check_precision
from .rounding import ROUNDING_FACTOR, gradient_terms, unit_roundoff
from .samples import Sample, elementwise_samples
from .suite import CheckRow, SuiteResult, run_checks

__all__ = [
    "ACCEPTABLE",
    "CheckRow",
    "GOOD",
    "FunctionReport",
    "GradientReport",
    "InputReport",
    "ParameterRow",
    "PrecisionResult",
    "PrecisionRow",
    "ROUNDING_FACTOR",
    "Sample",
    "SuiteResult",
    "check_function",
    "check_precision",
    "compare_gradients",
    "default_tolerance",
    "elementwise_samples",
    "grade",
    "gradient_terms",
    "relative_error",
    "run_checks",
    "unit_roundoff",
]
