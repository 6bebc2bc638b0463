"""The check suite behind ``neuronlab-check``: is every hand-written backward right, here?

For every op in ``neuronlab.functional.OPS``, in float64: ``torch.autograd.gradcheck`` and
``gradgradcheck`` (batched too) of the manual Function, and :func:`check_function` against
finite differences and the plain-torch reference; in each dtype (float64, float32, bfloat16,
float16): :func:`check_function`'s bound on the generated inputs (:func:`op_samples`, the
rounded inputs against the float64 reference, :mod:`.precision`) and manual vs autograd values
and gradients. Then a whole MLP on a real batch (scikit-learn's digits), manual vs autograd.

"manual vs autograd" is the measured difference as a multiple of what is allowed (≤ 1
passes): for one op on random inputs, the relative error over the dtype's tolerance
(:func:`default_tolerance`); for the MLP, each gradient's difference over its rounding bound
c·u·(size of the terms it is summed from), the rule :func:`compare_gradients` and the training
audit use (:mod:`neuronlab.gradcheck.rounding`).

``run_checks(...)`` builds the rows, runs them and returns a :class:`SuiteResult`; the command
line (``neuronlab.cli.check``) only parses, prints and sets the exit status.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..errors import unknown_choice
from ..functional import OPS
from ..modules import MLP
from .function import check_function
from .grading import relative_error
from .model import compare_gradients, default_tolerance
from .rounding import ROUNDING_FACTOR
from .samples import Sample, elementwise_samples

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16,
          "float16": torch.float16}
DEFAULT_DTYPES = ("float64", "float32")
OP_SHAPES = ((4, 5), (1, 7), (64, 33), (3,))  # non-elementwise ops: spec.sample at these
DEVICES = ("cpu", "cuda")
SHAPE = (4, 5)  # (batch, features): small, so finite differences and gradcheck are quick
MLP_SIZES = [64, 32, 32, 10]


@dataclass
class CheckRow:
    """One op (or the MLP) on one device in one dtype; ``None`` marks a check not run here."""

    op: str
    device: str
    dtype: str
    gradcheck: bool | None = None
    gradgradcheck: bool | None = None
    grade: str | None = None  # check_function's grade: good | acceptable | wrong | error
    error: float = math.nan  # manual vs autograd, as a multiple of what is allowed (≤ 1 passes)
    allowed: str = ""  # what is allowed, in words
    details: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[bool]:
        """One entry per check this row ran: passed or not."""
        rows = [self.gradcheck, self.gradgradcheck]
        rows.append(None if self.grade is None else self.grade in ("good", "acceptable"))
        rows.append(None if not self.allowed else self.error <= 1)
        return [r for r in rows if r is not None]

    @property
    def passed(self) -> bool:
        return all(self.results)


@dataclass
class SuiteResult:
    """What :func:`run_checks` found: one :class:`CheckRow` per op (or MLP), device and dtype."""

    rows: list[CheckRow]
    seconds: float = 0.0  # wall-clock time of the run

    @property
    def results(self) -> list[bool]:
        """Every single check of every row: passed or not."""
        return [ok for row in self.rows for ok in row.results]

    @property
    def checks(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> int:
        return self.results.count(False)

    @property
    def passed(self) -> int:
        return self.checks - self.failed

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        """One line: ``neuronlab-check: 52 checks, 52 passed, 0 failed (1.6 s)``."""
        return (f"neuronlab-check: {self.checks} checks, {self.passed} passed, "
                f"{self.failed} failed ({self.seconds:.1f} s)")


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _torch_check(check, spec, inputs, row: CheckRow, what: str) -> bool:
    try:
        return bool(check(spec.manual, inputs, check_batched_grad=True))
    except Exception as e:  # GradcheckError, or anything the op raised
        row.details.append(f"{what}: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
        return False


def _manual_vs_autograd(spec, dtype: torch.dtype, device: str) -> float:
    """Worst relative difference, manual vs reference, of the output and every gradient."""
    inputs = spec.sample(SHAPE, dtype, device, _generator(1))
    twins = [x.detach().clone().requires_grad_(x.requires_grad) if x.is_floating_point() else x
             for x in inputs]
    out, ref = spec.manual(*inputs), spec.reference(*twins)
    v = torch.randn(out.shape, generator=_generator(2), dtype=torch.float64).to(out)
    grads = torch.autograd.grad(out, [x for x in inputs if x.requires_grad], v)
    ref_grads = torch.autograd.grad(ref, [x for x in twins if x.requires_grad], v)
    return max([relative_error(out, ref)]
               + [relative_error(a, b) for a, b in zip(grads, ref_grads, strict=True)])


def op_samples(spec, torch_generators: bool = False) -> list[Sample]:
    """The generated inputs an op is checked on in each dtype: the elementwise samples
    (:func:`~neuronlab.gradcheck.samples.elementwise_samples`, torch's own too with
    ``torch_generators``: its import takes seconds) for an activation, else the op's own
    sampler at :data:`OP_SHAPES` (one seed each). torch's OpInfo inputs for every op are
    ``tests/test_opinfo.py``'s."""
    if spec.kind == "activation":
        return elementwise_samples(1, torch_generators=torch_generators)
    return [Sample(f"{spec.name} sample", k,
                   lambda dt, shape=shape, k=k: spec.sample(shape, dt, "cpu", _generator(k)))
            for k, shape in enumerate(OP_SHAPES)]


def _check_op(name: str, dtypes: Sequence[str], device: str) -> list[CheckRow]:
    spec = OPS[name]
    rows = []
    for dtype in dtypes:
        tolerance = default_tolerance(DTYPES[dtype], device)
        row = CheckRow(name, device, dtype, allowed=f"rel ≤ {tolerance:.0e}")
        inputs = spec.sample(SHAPE, torch.float64, device, _generator())
        if dtype == "float64":  # gradcheck needs float64
            row.gradcheck = _torch_check(torch.autograd.gradcheck, spec, inputs, row,
                                         "gradcheck")
            row.gradgradcheck = _torch_check(torch.autograd.gradgradcheck, spec, inputs, row,
                                             "gradgradcheck")
        # float64 finite differences, and in this dtype the generated inputs within the bound
        report = check_function(spec.manual, *inputs, reference=spec.reference, dtypes=[dtype],
                                samples=op_samples(spec) if device == "cpu" else None)
        row.grade = report.grade
        if not report.ok:
            row.details.append(str(report))
        try:
            max_rel = _manual_vs_autograd(spec, DTYPES[dtype], device)
        except Exception as e:
            max_rel = math.inf
            row.details.append(f"manual vs autograd: {type(e).__name__}: {e}")
        row.error = max_rel / tolerance
        if not row.error <= 1:
            row.details.append(f"manual vs autograd differ by {max_rel:.2e} (relative), "
                               f"{row.error:.3g}× the tolerance {tolerance:.0e}")
        rows.append(row)
    return rows


def _digits(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` of scikit-learn's bundled 8×8 digits, each pixel standardized."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x[:n], dtype=torch.float64)  # (n, 64)
    std = x.std(0)
    x = (x - x.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
    return x, torch.as_tensor(y[:n], dtype=torch.int64)


def _check_mlp(dtypes: Sequence[str], devices: Sequence[str]) -> list[CheckRow]:
    x, y = _digits()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = MLP(MLP_SIZES, activation="tanh")
    rows = []
    for device in devices:
        for dtype in dtypes:
            model = copy.deepcopy(net).to(device=device, dtype=DTYPES[dtype])
            report = compare_gradients(model, x, y, loss="cross_entropy")
            row = CheckRow("mlp " + "-".join(map(str, MLP_SIZES)) + " digits", device, dtype,
                           error=max(report.worst, report.loss_error) / report.tolerance,
                           allowed=f"{ROUNDING_FACTOR:g}·u·terms")
            if not report.ok:
                row.details.append(str(report))
            rows.append(row)
    return rows


def run_checks(ops: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
               devices: Sequence[str] | None = None, mlp: bool = True) -> SuiteResult:
    """Run every check; one :class:`CheckRow` per op (or MLP), device and dtype.

    Args:
        ops: names from ``OPS``; default all.
        dtypes: any of ``DTYPES`` (float64, float32, bfloat16, float16); default float64 and
            float32.
        devices: ``"cpu"`` and/or ``"cuda"``; default cpu, plus cuda when available.
        mlp: also compare manual and autograd gradients of an MLP on the digits.

    Raises ``ValueError`` for a name not in those lists, or cuda asked for without CUDA.
    """
    ops = list(dict.fromkeys(OPS if ops is None else ops))
    dtypes = list(dict.fromkeys(DEFAULT_DTYPES if dtypes is None else dtypes))
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    devices = list(dict.fromkeys(devices))
    for key, values, allowed in (("op", ops, OPS), ("dtype", dtypes, DTYPES),
                                 ("device", devices, DEVICES)):
        for value in values:
            if value not in allowed:
                raise unknown_choice(key, value, allowed)
    if "cuda" in devices and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for, but CUDA is not available here")
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a thread pool only adds overhead (much, if busy)
    try:
        rows = [row for device in devices for name in ops
                for row in _check_op(name, dtypes, device)]
        rows += _check_mlp(dtypes, devices) if mlp else []
    finally:
        torch.set_num_threads(threads)
    return SuiteResult(rows, time.perf_counter() - start)
