# pytest tests/test_explain.py
"""neuronlab-explain: every number the text claims, manual against autograd in float64.

The library functions (`neuronlab.explain.chain`, `neuronlab.explain.loss`) return rows; here
torch is the oracle for each of them, and the CLI is checked to print them and exit 0.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from neuronlab.cli.explain import build_parser, main
from neuronlab.explain import (
    LN_C_DATASETS,
    ChainReport,
    GradRow,
    chain_rule_dot,
    chain_rule_neuron,
    draw_chain_rule,
    ln_c_claim,
    loss_claims,
    node_example,
    read_weights,
)

F64 = torch.float64


@pytest.fixture(scope="module")
def report() -> ChainReport:
    return chain_rule_neuron(seed=0)


def _assert_rows_agree(rows: list[GradRow]) -> None:
    manual = torch.tensor([row.manual for row in rows], dtype=F64)
    auto = torch.tensor([row.autograd for row in rows], dtype=F64)
    assert_close(manual, auto, rtol=0, atol=1e-10)
    assert all(row.ok for row in rows)


def test_chain_backward_matches_autograd(report: ChainReport) -> None:
    _assert_rows_agree(report.backward + report.fused)
    assert report.ok
    n = len(report.features)
    nodes = {row.node for row in report.backward}
    assert {f"w{i}" for i in range(n)} | {f"x{i}" for i in range(n)} | {"b", "z", "a"} <= nodes
    for row in report.backward:  # every step is local derivative × upstream gradient
        assert row.manual == pytest.approx(row.local * row.upstream, rel=1e-15, abs=0)


def test_chain_is_the_cats_neuron(report: ChainReport) -> None:
    assert report.features == ["tail", "two_eyes", "horn", "whiskers", "pointy_ears"]
    x, w = torch.tensor(report.x, dtype=F64), torch.tensor(report.w, dtype=F64)
    z = (x * w).sum() + report.b
    a = torch.sigmoid(z)
    loss = F.binary_cross_entropy(a, torch.tensor(report.y, dtype=F64))
    got = torch.tensor([report.value(k) for k in ("z", "a", "L")], dtype=F64)
    assert_close(got, torch.stack([z, a, loss]), rtol=0, atol=1e-12)
    # the fused form: ∂L/∂z = a − y
    assert report.grad("z") == pytest.approx(report.value("a") - report.y, abs=1e-12)
    assert_close(torch.tensor([report.grad(f"w{i}") for i in range(5)], dtype=F64),
                 report.grad("z") * x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed, example", [(1, 3), (2, 17)])
def test_chain_other_seeds_and_examples(seed: int, example: int) -> None:
    assert chain_rule_neuron(seed=seed, example=example).ok


def test_chain_rejects_a_missing_example() -> None:
    with pytest.raises(ValueError, match="example=5000"):
        chain_rule_neuron(example=5000)


def test_node_example_matches_autograd() -> None:
    node = node_example(x=2.0, y=-1.5)
    _assert_rows_agree(node.rows)
    z = 2.0 * -1.5 + math.sin(2.0)
    grads = {row.node: row.manual for row in node.rows}
    assert grads["x"] == pytest.approx(2 * z * (-1.5 + math.cos(2.0)), rel=1e-14)
    assert grads["y"] == pytest.approx(2 * z * 2.0, rel=1e-14)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_cross_entropy_of_equal_logits_is_ln_c(n_classes: int) -> None:
    claim = ln_c_claim(n_classes)
    assert claim.formula_value == math.log(n_classes)
    assert abs(claim.autograd_value - math.log(n_classes)) <= 1e-12
    assert claim.ok and LN_C_DATASETS[n_classes] in claim.claim


def test_ln_c_rejects_other_class_counts() -> None:
    with pytest.raises(ValueError, match="n_classes=4"):
        ln_c_claim(4)


def test_loss_gradient_claims_match_autograd() -> None:
    claims = loss_claims(batch=32, seed=0)
    assert len(claims) == 7
    for claim in claims:
        assert claim.max_diff <= 1e-10, claim
        assert claim.formula_value == pytest.approx(claim.autograd_value, abs=1e-12), claim
    ce_zero = claims[3]  # equal logits: (1/C − 1)/N at the true class
    assert ce_zero.formula_value == pytest.approx((0.1 - 1) / 32, abs=1e-15)


def test_picture_is_written(tmp_path, report: ChainReport) -> None:
    paths = draw_chain_rule(report, tmp_path / "img")
    png = tmp_path / "img" / "chain_rule.png"
    assert paths[0] == png
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size < 150_000


def test_dot_source_has_every_edge(report: ChainReport) -> None:
    src = chain_rule_dot(report)
    for edge in ("x0 -> p0", "w4 -> p4", "p2 -> z", "b -> z", "z -> a", "a -> L", "y -> L"):
        assert edge in src


def test_cli_chain_prints_and_draws(tmp_path, monkeypatch, capsys, report) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["chain"]) == 0
    out = capsys.readouterr().out
    for text in ("tail", "a(1−a)", "a − y", f"{report.grad('w0'):+.10f}", "PASS"):
        assert text in out
    assert "FAIL" not in out
    assert (tmp_path / "outputs" / "explain" / "chain_rule.png").is_file()  # not docs/img
    assert "wrote outputs/explain/chain_rule.png" in out


def test_cli_loss_and_node(capsys) -> None:
    assert main(["loss"]) == 0
    out = capsys.readouterr().out
    assert "+2.3025850930" in out and "+0.6931471806" in out and "FAIL" not in out
    assert main(["node"]) == 0
    out = capsys.readouterr().out
    assert "x·y + sin(x)" in out and f"{node_example().rows[1].manual:+.10f}" in out


def test_cli_defaults_to_chain() -> None:
    args = build_parser().parse_args([])
    assert (args.command, args.seed, args.out) == ("chain", 0, "outputs/explain")


def test_cli_exits_1_when_a_number_disagrees(tmp_path, monkeypatch, report) -> None:
    bad_row = dataclasses.replace(report.backward[-1], autograd=report.backward[-1].manual + 1e-6)
    bad = dataclasses.replace(report, backward=[*report.backward[:-1], bad_row])
    monkeypatch.setattr("neuronlab.cli.explain.chain_rule_neuron", lambda **_: bad)
    assert main(["chain", "--out", str(tmp_path)]) == 1


def test_read_weights_is_unchanged() -> None:
    rows = read_weights({"tail": 2.0, "two_eyes": 0.1, "horn": -3.0})
    assert [r[2].split(":")[0] for r in rows] == ["large positive", "small", "large negative"]
