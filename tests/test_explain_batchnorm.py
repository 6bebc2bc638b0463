# pytest tests/test_explain_batchnorm.py
"""``neuronlab-explain batchnorm``: BatchNorm's backward node by node and as one formula
(Bessel's variance, as in backprop ninja, and torch's biased one) equal autograd's in float64;
leaving out the mean term is visibly wrong; the command prints both and exits 0."""

from __future__ import annotations

import pytest

from neuronlab import functional
from neuronlab.cli.explain import main
from neuronlab.explain.batchnorm import NodeRow, batchnorm_chain


@pytest.mark.parametrize("bessel", [True, False])
@pytest.mark.parametrize("n", [2, 3, 32])
def test_node_by_node_and_one_formula_equal_autograd(bessel, n):
    report = batchnorm_chain(n=n, features=3, bessel=bessel, seed=n)
    assert report.ok, [(r.node, r.diff) for r in report.nodes + report.formulas]
    assert [r.node for r in report.nodes][-1] == "x" and len(report.nodes) == 9
    assert report.without_mean_term > 1e-3  # the mean term matters
    if not bessel and hasattr(functional, "batch_norm"):
        assert {r.formula for r in report.formulas} >= {
            "neuronlab.functional.batch_norm's backward"}


def test_a_wrong_node_fails():
    """The check can fail: ∂x without the path through μ (∂d alone) is not autograd's ∂x."""
    report = batchnorm_chain(n=8, features=2)
    dd = next(r for r in report.nodes if r.node.startswith("bndiff d"))
    dx = report.nodes[-1]
    assert not NodeRow("x", "∂d only", dd.manual, dx.autograd).ok
    assert dx.ok


def test_one_row_is_refused():
    with pytest.raises(ValueError, match="n=1 must be ≥ 2"):
        batchnorm_chain(n=1)


@pytest.mark.parametrize("flag", [[], ["--biased"]])
def test_the_command_prints_both_and_passes(capsys, flag):
    assert main(["batchnorm", *flag]) == 0
    out = capsys.readouterr().out
    assert "node by node" in out and "one formula" in out and "without the mean term" in out
    assert "FAIL" not in out and out.count("PASS") >= 11
