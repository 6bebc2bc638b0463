# pytest tests/test_point6.py
"""Small things a new user saw (issue 9, point 6), each pinned by a test: a missing sweep folder
for ``neuronlab-lr-find``, where ``neuronlab-explain chain`` writes, the neuron's feature
table on other data sets, the lr sweep's loss curves (colours, divergence marks), text
contrast in the init heat map, and a sweep's summary table.

The pictures are checked through their artists: ``Figure.savefig`` is replaced by a recorder,
so the tests read what would have been drawn."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from neuronlab.experiments.sweep import read_sweep  # noqa: E402


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """The figures the code under test would have saved (nothing is written)."""
    figures: list[Figure] = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    return figures


# ---- a. neuronlab-lr-find --sweep <missing folder> -----------------------------------------


@pytest.mark.parametrize("make", [False, True], ids=["missing", "empty"])
def test_lr_find_with_a_bad_sweep_folder_is_one_line_exit_2(tmp_path, capsys, make):
    from neuronlab.cli.lr_find import main

    folder = tmp_path / "no_such_sweep"
    if make:
        folder.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["--sweep", str(folder), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("neuronlab-lr-find: error:") and str(folder) in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # no range test was run


# ---- b. neuronlab-explain chain writes where the user says, by default not the source tree -


def test_explain_chain_writes_into_outputs_and_says_where(tmp_path, monkeypatch, capsys):
    from neuronlab.cli.explain import build_parser, main

    assert build_parser().parse_args(["chain"]).out == "outputs/explain"
    monkeypatch.chdir(tmp_path)
    assert main(["chain"]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "outputs" / "explain" / "chain_rule.png"
    assert png.is_file()
    assert not (tmp_path / "docs").exists()
    assert "outputs/explain/chain_rule.png" in out


def test_explain_chain_out_is_honoured(tmp_path, capsys):
    from neuronlab.cli.explain import main

    assert main(["chain", "--out", str(tmp_path / "docs" / "img")]) == 0
    assert (tmp_path / "docs" / "img" / "chain_rule.png").is_file()
    out = capsys.readouterr().out
    assert f"wrote {(tmp_path / 'docs' / 'img' / 'chain_rule.png').resolve()}" in out


# ---- c. the neuron's feature table, data-set-aware ----------------------------------------


def test_read_weights_cats_still_reads_as_before():
    from neuronlab.explain import read_weights

    rows = read_weights({"tail": 4.4, "two_eyes": -0.28, "horn": -4.4})
    assert [r[2].split(":")[0] for r in rows] == ["large positive", "small", "large negative"]
    rows = read_weights({"tail": 4.4, "two_eyes": -0.28, "horn": -4.4},
                        class_names=["not_cat", "cat"])
    assert "FOR 'cat'" in rows[0][2] and "AGAINST 'cat'" in rows[2][2]


def test_read_weights_names_the_data_sets_classes():
    from neuronlab.explain import read_weights

    rows = read_weights({"worst area": -1.345, "fractal dimension error": 0.724,
                         "mean radius": -0.647, "texture error": -0.026},
                        class_names=["malignant", "benign"])
    text = " ".join(r[2] for r in rows)
    assert "cat" not in text
    reading = {name: r for name, _, r in rows}
    assert reading["worst area"] == "large negative: evidence AGAINST 'benign'"
    assert reading["fractal dimension error"].startswith("large positive")
    assert reading["mean radius"].startswith("moderate negative")
    assert reading["texture error"].startswith("small")
    generic = " ".join(r for _, _, r in read_weights({"x0": 2.0, "x1": -2.0}))
    assert "cat" not in generic and "class 1" in generic


def test_read_weights_tiny_weights_are_small_even_when_they_are_the_largest():
    from neuronlab.explain import read_weights

    rows = read_weights({"x0": -0.153, "x1": -0.104}, class_names=["same_sign", "different_sign"])
    assert [r[2].split(":")[0] for r in rows] == ["small", "small"]


def test_read_weights_rejects_a_class_list_that_is_not_binary():
    from neuronlab.explain import read_weights

    with pytest.raises(ValueError, match="class_names"):
        read_weights({"x0": 1.0}, class_names=["a", "b", "c"])


# ---- d. the lr sweep's loss curves ---------------------------------------------------------


def _fake_run(sweep: Path, lr: float, losses: list[float], diverged_at: int | None = None):
    """A run folder as ``train`` leaves it. A diverged run logs the losses of the steps before
    the bad one (logged step s = the loss after s updates) and reports the bad step counted from
    1, as the DivergenceGuard does: losses logged at 0..k-1, bad loss at k, "step k+1"."""
    from torch.utils.tensorboard import SummaryWriter

    run = sweep / f"optimizer.lr={lr}"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        f"- experiment=lr_sweep\n- optimizer.lr={lr}\n- torch_threads=1\n")
    status = "ok" if diverged_at is None else "diverged"
    metrics = ({"val/loss": losses[-1] * 1.1, "test/loss": losses[-1], "test/acc": 1 - losses[-1]}
               if status == "ok" else {"train/loss": 2.2e7})
    record = {"status": status, "steps": len(losses) if diverged_at is None else diverged_at,
              "message": None if status == "ok" else
              f"diverged at step {diverged_at} (loss=2.2e+07); lower optimizer.lr (now {lr})",
              "seconds": 0.1, "metrics": metrics, "seed": 0,
              "config": {"optimizer": {"name": "sgd", "lr": lr}, "model": {"kind": "mlp"}}}
    (run / "metrics.json").write_text(json.dumps(record))
    writer = SummaryWriter(str(run / "tb"))
    for step, loss in enumerate(losses):
        writer.add_scalar("train/loss", loss, step)
    writer.close()


RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0]


@pytest.fixture(scope="module")
def lr_sweep(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("lr_sweep")
    steps = np.arange(12)
    for lr in RATES[:9]:
        _fake_run(sweep, lr, list(0.7 * np.exp(-min(lr, 1.0) * 0.3 * steps)))
    _fake_run(sweep, 3.0, [0.7, 0.3, 36.0, 179.0, 26.0, 36116.0, 80.0, 9e4], diverged_at=9)
    _fake_run(sweep, 10.0, [0.7, 0.47, 31.3, 13240.0, 20301.0], diverged_at=6)
    return sweep


def test_divergence_marks_sit_at_the_step_the_console_reports(lr_sweep, drawn):
    from neuronlab.experiments.plots import plot_loss_curves

    runs = read_sweep(lr_sweep)
    assert plot_loss_curves(runs, ["optimizer.lr"], lr_sweep / "loss_curves.png")
    ax = drawn[-1].axes[0]
    marks = sorted(float(line.get_xdata()[0]) for line in ax.get_lines()
                   if line.get_marker() == "x")
    assert marks == [6.0, 9.0]  # "diverged at step 6" (lr 10), "step 9" (lr 3)
    # and each mark follows its curve: the curve's last point is the step before
    ends = sorted(float(line.get_xdata()[-1]) for line in ax.get_lines()
                  if line.get_marker() != "x" and len(line.get_xdata()) in (5, 8))
    assert ends == [5.0, 8.0]


def _luminance(color) -> float:
    """WCAG relative luminance of a matplotlib colour."""
    rgb = np.array(to_rgba(color)[:3])
    lin = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return float(lin @ [0.2126, 0.7152, 0.0722])


def test_loss_curves_neighbours_differ_in_style_and_colours_follow_the_rate(lr_sweep, drawn):
    from neuronlab.experiments.plots import plot_loss_curves

    runs = read_sweep(lr_sweep)
    plot_loss_curves(runs, ["optimizer.lr"], lr_sweep / "loss_curves.png")
    ax = drawn[-1].axes[0]
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]
    assert len(curves) == len(RATES)  # in sweep order: by rate
    for a, b in zip(curves, curves[1:], strict=False):  # neighbours: another dash pattern
        assert a.get_linestyle() != b.get_linestyle()
    lum = [_luminance(c.get_color()) for c in curves]
    assert all(np.diff(lum) > 0) or all(np.diff(lum) < 0)  # ordered lightness by rate
    labels = {t.get_text() for t in ax.texts}  # direct labels at the curves' ends
    assert {"0.0001", "1", "10 (diverged)"} <= labels


# ---- e. init_final_loss.png: readable text on every cell -----------------------------------


def _contrast(a, b) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_init_heat_map_text_is_readable_on_its_cell(tmp_path, drawn):
    from neuronlab.experiments.init_plots import plot_final_loss
    from neuronlab.experiments.init_sweep import Cell, InitSweep

    means = {0.1: 0.693, 0.5: 0.45, 1.0: 0.25, 2.0: 0.107, 10.0: 1.6}
    cells = []
    for scheme in ("lecun", "kaiming"):
        for dist in ("normal", "uniform"):
            for scale, m in means.items():
                cell = Cell("tanh", scheme, dist, scale, losses=[m] * 3)
                if scale == 2.0 and dist == "normal":  # a dark cell with divergences
                    cell = Cell("tanh", scheme, dist, scale, losses=[m], diverged=2)
                if scale == 10.0 and scheme == "kaiming":  # no loss at all: grey cell
                    cell = Cell("tanh", scheme, dist, scale, diverged=3)
                cells.append(cell)
    plot_final_loss(InitSweep([], cells, [], {}), tmp_path / "init_final_loss.png")
    ax = drawn[-1].axes[0]
    image = ax.images[0]
    grid = np.ma.masked_invalid(image.get_array())
    assert len(ax.texts) == len(cells)
    for text in ax.texts:
        j, i = (int(round(v)) for v in text.get_position())
        value = grid[i, j]
        background = ax.get_facecolor() if np.ma.is_masked(value) else image.to_rgba(value)
        assert _contrast(text.get_color(), background) >= 4.5, (text.get_text(), i, j)


# ---- f. a sweep's summary -------------------------------------------------------------------


def test_sweep_summary_is_one_row_per_run_best_first(lr_sweep):
    from rich.console import Console
    from rich.table import Table

    from neuronlab.experiments.report import sweep_summary

    table = sweep_summary(lr_sweep)
    assert isinstance(table, Table)
    assert table.row_count == len(RATES)
    headers = [str(c.header) for c in table.columns]
    assert headers[:2] == ["overrides", "status"]
    assert {"val/loss", "test/acc"} <= set(headers)
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    lines = [ln for ln in text.splitlines() if "optimizer.lr=" in ln]
    assert len(lines) == len(RATES)
    assert "experiment=" not in text and "torch_threads" not in text  # shared by every run
    assert lines[0].split()[1].startswith("optimizer.lr=1")  # lowest val/loss first
    assert "diverged" in lines[-1] and "diverged" in lines[-2]  # runs without a result last
    assert "11 runs (9 ok, 2 diverged)" in text


def test_report_cli_prints_a_rich_table(lr_sweep, capsys):
    from neuronlab.cli.report import main

    main([str(lr_sweep)])
    out = capsys.readouterr().out
    assert "┏" in out and "┃ optimizer.lr ┃" in out.replace("  ", " ")
    assert "diverged" in out and "11 runs (9 ok, 2 diverged)" in out
