# pytest tests/test_check_cli.py
"""neuronlab-check: the library suite (``neuronlab.gradcheck.suite``) passes on every op; the CLI
prints a summary and exits 0, 1 on a broken op (a plant of ``tests/planted.py``), 2 on a bad
argument."""

from __future__ import annotations

import re

import pytest
import torch
from planted import PLANTS

from neuronlab.cli.check import main
from neuronlab.functional import OPS
from neuronlab.gradcheck import run_checks

SUMMARY = re.compile(r"neuronlab-check: (\d+) checks, (\d+) passed, (\d+) failed \([\d.]+ s\)")


def test_one_op_exits_0_and_prints_the_summary(capsys):
    assert main(["--op", "sigmoid", "--dtype", "float64", "--device", "cpu", "--no-mlp"]) == 0
    out = capsys.readouterr().out
    assert "sigmoid" in out and "PASS" in out
    # gradcheck, gradgradcheck, check_function, manual vs autograd
    assert SUMMARY.search(out).groups() == ("4", "4", "0")


def test_run_checks_all_ops_pass():
    result = run_checks(devices=["cpu"])
    rows = result.rows
    assert {r.op for r in rows} >= set(OPS)
    assert len(rows) == 2 * len(OPS) + 2  # two dtypes, plus the MLP in each
    failed = [(r.op, r.dtype, r.details) for r in rows if not r.passed]
    assert not failed and result.ok
    f64 = [r for r in rows if r.dtype == "float64" and r.op in OPS]
    assert all(r.gradcheck and r.gradgradcheck and r.grade == "good" for r in f64)
    # float64: 4 checks per op, float32: check_function's bound and manual vs autograd, the
    # MLP: 1 per dtype
    assert result.checks == result.passed == 4 * len(OPS) + 2 * len(OPS) + 2


def test_unknown_op_exits_2_listing_the_ops(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--op", "sigmoyd"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "sigmoyd" in err and "did you mean 'sigmoid'" in err
    assert all(name in err for name in OPS)


def test_run_checks_rejects_unknown_names():
    with pytest.raises(ValueError, match="dtype='float8' is not one of"):
        run_checks(["tanh"], ["float8"], ["cpu"], mlp=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--op", "tanh", "--device", "cuda"])
    assert exc.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_broken_op_exits_1(monkeypatch, capsys):
    PLANTS["sigmoid derivative 1% off"].install(monkeypatch)
    code = main(["--op", "sigmoid", "--op", "tanh", "--device", "cpu", "--no-mlp"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out and "sigmoid (cpu, float64):" in out
    # every sigmoid check fails (4 in float64, 2 in float32); all 6 of tanh's pass
    assert SUMMARY.search(out).groups() == ("12", "6", "6")


def test_broken_mlp_fails(monkeypatch):
    PLANTS["tanh derivative 1 - a"].install(monkeypatch)
    rows = run_checks(["linear"], ["float64"], ["cpu"], mlp=True).rows
    assert rows[0].passed and not rows[-1].passed
    assert "layers.0.weight" in rows[-1].details[0]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_checks_pass():
    rows = run_checks(["linear", "gelu", "cross_entropy"], devices=["cuda"]).rows
    assert all(r.passed for r in rows), [(r.op, r.dtype, r.details) for r in rows]


def test_dtype_takes_several_values_at_once_or_repeated(capsys):
    assert main(["--op", "tanh", "--dtype", "float64", "bfloat16", "--device", "cpu",
                 "--no-mlp"]) == 0
    at_once = capsys.readouterr().out
    assert main(["--op", "tanh", "--dtype", "float64", "--dtype", "bfloat16", "--device", "cpu",
                 "--no-mlp"]) == 0
    repeated = capsys.readouterr().out
    for out in (at_once, repeated):
        assert "bfloat16" in out and "float64" in out
