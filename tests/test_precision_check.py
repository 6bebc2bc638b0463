# pytest tests/test_precision_check.py
"""check_function in the precision you train in: planted low-precision bugs that float64
cannot see are caught in bfloat16/float16 (by check_function and by ``neuronlab-check
--function``), their correct twins pass; inputs are named by their real names; a dtype bug is
one line; the README's pytest example runs; every built-in op passes in every dtype."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import planted_precision as P
import pytest
import torch
import torch.nn.functional as F

from neuronlab.cli.check import load_callable, main
from neuronlab.functional import OPS
from neuronlab.gradcheck import check_function
from neuronlab.gradcheck.bound import judge
from neuronlab.gradcheck.samples import elementwise_samples
from neuronlab.gradcheck.suite import op_samples
from neuronlab.testing import assert_function_matches

ROOT = Path(__file__).resolve().parents[1]
LOW = ("bfloat16", "float16")
ALL = ("float64", "float32", "bfloat16", "float16")
CASES = {  # bug: (twin, reference, the dtypes where the bug must show)
    "SoftplusExpRatio": (P.Softplus, F.softplus, LOW),
    "LogSumExpNoMax": (P.LogSumExp, P.logsumexp, LOW),
    "LowPrecisionSum": (P.Sum, P.total, ("bfloat16",)),
}


def _x(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()


@pytest.mark.parametrize("bug", list(CASES))
def test_float64_finite_differences_cannot_see_the_bug(bug):
    twin, reference, _ = CASES[bug]
    report = check_function(getattr(P, bug).apply, _x(4, 5), reference=reference)
    assert report.ok, str(report)


@pytest.mark.parametrize("bug", list(CASES))
def test_low_precision_bug_is_caught_in_its_dtype(bug):
    _, reference, dtypes = CASES[bug]
    report = check_function(getattr(P, bug).apply, reference=reference, dtypes=LOW)
    assert not report.ok and "FAILED" in str(report), str(report)
    for dtype in dtypes:
        bad = [r for r in report.precision.rows if r.dtype == dtype and not r.ok]
        assert bad, str(report)
        assert all(r.problem.startswith(dtype) and "index" in r.problem and "on " in r.problem
                   for r in bad), str(report)


@pytest.mark.parametrize("bug", list(CASES))
def test_correct_twin_passes_in_every_dtype(bug):
    twin, reference, _ = CASES[bug]
    report = check_function(twin.apply, reference=reference, dtypes=ALL)
    assert report.ok, str(report)
    assert {r.dtype for r in report.precision.rows} == set(ALL)
    assert all(r.samples == len(elementwise_samples(1)) for r in report.precision.rows)


def test_softplus_bug_prints_the_nan_where_torch_is_finite():
    report = check_function(P.SoftplusExpRatio.apply, reference=F.softplus, dtypes=["float16"])
    (row,) = [r for r in report.precision.rows if r.name == "x"]
    assert math.isinf(row.ratio) and math.isnan(row.got) and math.isfinite(row.want)
    assert "not finite where the reference is" in row.problem
    assert "x=" in row.problem  # the input at the worst entry


def test_low_precision_sum_stalls_in_bfloat16():
    report = check_function(P.LowPrecisionSum.apply, reference=P.total, dtypes=["bfloat16"])
    (row,) = [r for r in report.precision.rows if r.name == "output"]
    assert row.ratio > 1 and row.got < 0.5 * row.want, str(report)  # stopped growing
    assert "long row" in row.sample


@pytest.mark.parametrize("bug", list(CASES))
def test_cli_function_exit_1_for_the_bug_0_for_the_twin(bug, capsys):
    twin, reference, _ = CASES[bug]
    ref = {F.softplus: "torch.nn.functional:softplus"}.get(reference,
                                                        f"planted_precision:{reference.__name__}")
    args = ["--reference", ref, "--dtype", "bfloat16", "--dtype", "float16"]
    assert main(["--function", f"planted_precision:{bug}", *args]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "problem: " in out and "sample: " in out  # replayable
    assert main(["--function", f"planted_precision:{twin.__name__}", *args]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--function", "no_such_module:X"], "cannot import no_such_module"),
    (["--function", "planted_precision:Nope"], "planted_precision has no Nope"),
    (["--function", "planted_precision"], "expected MODULE:NAME"),
    (["--function", "planted_precision:PLANTED"], "PLANTED is a dict, not callable"),
    (["--function", "planted_precision:Sum", "--reference", "x.py:f"], "no file x.py"),
])
def test_cli_function_usage_errors_exit_2_in_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_cli_loads_a_file_path_and_a_function_class():
    fn = load_callable(str(ROOT / "examples" / "swish.py") + ":Swish")
    assert fn.__self__.__name__ == "Swish"


# ---- names, worst entry, dtype message -----------------------------------------------------


def test_two_inputs_named_after_ctx_and_the_bug_reported_on_w():
    x, w = _x(4, 5), _x(4, 5, seed=1)
    report = check_function(P.Scale.apply, x, w, reference=P.scale)
    assert [(r.name, r.grade) for r in report.inputs] == [("x", "good"), ("w", "wrong")]
    text = str(report)
    assert "ctx" not in text
    assert "problem: input 1 (w): ∂L/∂w is wrong; worst entry" in text
    row = report.inputs[1]
    assert row.worst_values[0] == pytest.approx(2 * row.worst_values[1], rel=1e-6)


def test_setup_context_style_function_is_named_from_forward():
    class Mul(torch.autograd.Function):
        @staticmethod
        def forward(a, b):
            return a * b

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * a

    report = check_function(Mul.apply, _x(3), _x(3, seed=1), dtypes=["bfloat16"])
    assert [r.name for r in report.inputs] == ["a", "b"] and report.ok, str(report)


def test_a_wrong_gradient_dtype_is_one_line_naming_every_run():
    class AlwaysFloat32(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return (g * 2).float()

    x = torch.randn(3, dtype=torch.bfloat16, requires_grad=True)
    text = str(check_function(AlwaysFloat32.apply, x, reference=lambda x: 2 * x))
    lines = [line for line in text.splitlines() if "returned gradient 0 as torch.float32" in line]
    assert len(lines) == 1, text
    assert "torch.float64 and torch.bfloat16 input" in lines[0] and "expected" not in text


def test_user_samples_are_used_and_printed():
    seen = []

    def samples(dtype):
        seen.append(dtype)
        return [(torch.full((3,), 100.0, dtype=dtype),), (torch.zeros(2, 2, dtype=dtype),)]

    report = check_function(P.SoftplusExpRatio.apply, reference=F.softplus,
                            dtypes=["float16"], samples=samples)
    assert not report.ok and torch.float16 in seen
    assert "samples(dtype)[0] (seed=0): (3,)" in str(report)
    report = check_function(P.Softplus.apply, reference=F.softplus, dtypes=["float16"],
                            samples=[(torch.full((3,), 100.0),)])
    assert report.ok, str(report)


def test_cli_samples_for_a_function_with_a_float_argument(capsys):
    args = ["--function", "planted_precision:TimesConstant", "--reference",
            "planted_precision:times_constant", "--dtype", "bfloat16"]
    assert main([*args, "--samples", "planted_precision:scale_samples"]) == 0
    assert "bfloat16  x       0                  0/2" in capsys.readouterr().out
    assert main([*args, "--samples", "planted_precision:TimesConstant"]) == 2  # not samples


def test_no_sample_judged_is_an_error():
    def refuses(x, y):
        raise TypeError("no")

    report = check_function(refuses, reference=refuses, dtypes=["bfloat16"],
                            samples=[(torch.ones(2),)])
    assert not report.ok


def test_bad_dtypes_and_samples_are_refused():
    with pytest.raises(ValueError, match="dtypes: 'float8' is not one of"):
        check_function(torch.sin, _x(2), dtypes=["float8"])
    with pytest.raises(TypeError, match="samples=3 must be"):
        check_function(torch.sin, _x(2), dtypes=["float32"], samples=3)


# ---- the bound itself ----------------------------------------------------------------------


def test_judge_rounding_passes_a_wrong_digit_fails_overflow_always_fails():
    ref = torch.tensor([1.0, -3.0, 1e-3], dtype=torch.float64)
    size = torch.zeros(3, dtype=torch.float64)
    assert judge(ref.to(torch.bfloat16), ref, size, None, torch.bfloat16).ratio <= 0.1
    off = ref.clone()
    off[1] *= 1.1  # 10 %: dozens of bfloat16 ulps
    j = judge(off.to(torch.bfloat16), ref, size, None, torch.bfloat16)
    assert j.ratio > 1 and j.index == (1,)
    nan = ref.to(torch.bfloat16).clone()
    nan[2] = math.nan
    j = judge(nan, ref, size, None, torch.bfloat16)
    assert math.isinf(j.ratio) and j.nonfinite and j.index == (2,)
    # the reference overflows the dtype: inf is right, and so must it be
    big = torch.tensor([1e6], dtype=torch.float64)
    inf = torch.tensor([math.inf], dtype=torch.float16)
    assert judge(inf, big, torch.zeros(1, dtype=torch.float64), None, torch.float16).ratio == 0
    # NaN in the reference: not judged
    assert judge(torch.tensor([5.0]), torch.tensor([math.nan], dtype=torch.float64),
                 torch.zeros(1, dtype=torch.float64), None, torch.float32).ratio == 0


# ---- the README's example, the built-in ops -----------------------------------------------


def test_readme_example_tests_pass_in_process(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import test_swish

    test_swish.test_swish_matches_torch_in_float64_and_bfloat16()
    test_swish.test_the_textbook_backward_passes_finite_differences_and_fails_in_bfloat16()


@pytest.mark.slow
def test_readme_pytest_example_runs():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                           "-p", "no:cacheprovider", "test_swish.py"],
                          cwd=ROOT / "examples", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_assert_function_matches_fails_with_the_report():
    with pytest.raises(AssertionError, match=r"(?s)FAILED.*float16 ∂L/∂x"):
        assert_function_matches(P.SoftplusExpRatio, F.softplus, dtypes=["float16"])
    report = assert_function_matches(P.Softplus, F.softplus, dtypes=["float16"])
    assert report.ok


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("name", list(OPS))
def test_builtin_op_passes_in_every_dtype_on_generated_inputs(name, dtype):
    spec = OPS[name]
    inputs = spec.sample((4, 5), torch.float64, "cpu", torch.Generator().manual_seed(0))
    report = check_function(spec.manual, *inputs, reference=spec.reference, dtypes=[dtype],
                            samples=op_samples(spec, torch_generators=True))
    assert report.ok, str(report)
    assert all(r.ratio <= 0.5 for r in report.precision.rows), str(report)


def test_cli_bfloat16_and_float16_for_the_builtin_ops(capsys):
    assert main(["--op", "sigmoid", "--op", "linear", "--dtype", "bfloat16", "--dtype",
                 "float16", "--no-mlp", "--device", "cpu"]) == 0
    assert "0 failed" in capsys.readouterr().out
