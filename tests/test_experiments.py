# pytest tests/test_experiments.py
"""The text's claims as experiments (``slow``), and the machinery behind them (fast): the sweep
report on a fake sweep folder, the learning-rate suggestion on a synthetic curve, the
callbacks, and the layer rule of ``experiments/`` and ``explain/``. The init sweep's tests
are in ``test_init_sweep.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from neuronlab.config import compose  # noqa: E402
from neuronlab.experiments.lr_range import range_test, smooth_losses, suggest_lr  # noqa: E402
from neuronlab.experiments.lr_sweep import read_lr_sweep  # noqa: E402
from neuronlab.experiments.report import build_report  # noqa: E402
from neuronlab.training.run import train  # noqa: E402

# ---- the report, on a fake sweep folder --------------------------------------------------


def _fake_run(sweep: Path, lr: float, status: str, losses: list[float]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = sweep / f"optimizer.lr={lr}"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={lr}\n")
    if status != "unfinished":
        metrics = {"test/loss": losses[-1], "test/acc": 0.9} if status == "ok" else {}
        message = f"diverged at step {len(losses)} (loss=1e+07); lower optimizer.lr"
        record = {"status": status, "message": None if status == "ok" else message,
                  "steps": len(losses), "seconds": 0.1, "metrics": metrics, "seed": 0,
                  "config": {"optimizer": {"name": "sgd", "lr": lr}, "model": {"kind": "mlp"}}}
        (run / "metrics.json").write_text(json.dumps(record))
    writer = SummaryWriter(str(run / "tb"))
    for step, loss in enumerate(losses):
        writer.add_scalar("train/loss_step", loss, step)
    if status == "ok":
        writer.add_scalar("train/loss_epoch", losses[-1], len(losses))
    writer.close()


@pytest.fixture
def fake_sweep(tmp_path: Path) -> Path:
    _fake_run(tmp_path, 0.001, "ok", [0.7, 0.69, 0.68, 0.67])
    _fake_run(tmp_path, 0.1, "ok", [0.7, 0.4, 0.2, 0.1])
    _fake_run(tmp_path, 10.0, "diverged", [0.7, 50.0, 1e5])
    _fake_run(tmp_path, 1.0, "unfinished", [0.7, 0.3])
    return tmp_path


def test_report_keeps_diverged_and_unfinished_runs(fake_sweep):
    report = build_report(fake_sweep)
    assert report.counts() == {"ok": 2, "diverged": 1, "unfinished": 1}
    assert report.swept == ["optimizer.lr"]
    by_lr = {row[0]: row for row in report.rows}
    assert set(by_lr) == {"0.001", "0.1", "1.0", "10.0"}
    status = report.header.index("status")
    assert by_lr["10.0"][status].startswith("diverged at step 3")
    assert by_lr["1.0"][status] == "unfinished"
    verdict = report.header.index("verdict")
    assert [by_lr[k][verdict] for k in ("0.001", "0.1", "10.0")] == ["slow", "converged",
                                                                     "diverged"]
    train_loss = report.header.index("train loss")
    assert by_lr["0.1"][train_loss] == "0.1" and by_lr["10.0"][train_loss] == "—"
    names = {p.name for p in report.files}
    assert {"report.md", "loss_curves.png", "final_vs_optimizer_lr.png"} <= names
    md = (fake_sweep / "report.md").read_text()
    assert "diverged at step 3" in md and "| 10.0 |" in md
    for png in fake_sweep.glob("*.png"):
        assert 0 < png.stat().st_size < 150_000


def test_report_cli_prints_the_table(fake_sweep, capsys, tmp_path_factory):
    from neuronlab.cli.report import main

    main([str(fake_sweep)])
    out = capsys.readouterr().out
    assert "diverged" in out and "unfinished" in out and "report.md" in out
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path_factory.mktemp("empty"))])
    assert exit_info.value.code == 2


# ---- the learning-rate suggestion, on a synthetic curve ---------------------------------


def _synthetic_range_test(spike_at: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Flat at 0.7, a descent centred at lr = 10^-1.5, a blow-up above lr ≈ 3, an early spike."""
    lrs = np.logspace(-5, 1, 200)
    x = np.log10(lrs)
    loss = 0.7 - 0.55 / (1 + np.exp(-(x + 1.5) / 0.3)) + np.exp((x - 0.6) * 6)
    loss += 0.01 * np.random.default_rng(0).standard_normal(lrs.shape)
    loss[spike_at] = 3.0
    return lrs, loss


def test_suggestion_ignores_an_early_spike():
    lrs, loss = _synthetic_range_test()
    ours = suggest_lr(lrs, loss)
    steepest = suggest_lr(lrs, loss, method="steepest")
    centre = 10**-1.5
    assert centre / 2 < ours.lr < centre * 2
    assert centre / 2 < steepest.lr < centre * 2
    assert ours.stop < len(lrs)  # the blow-up ends the search
    # Lightning's formula, d loss / d lr on exponential spacing after 10 skipped points, is
    # pulled to the spike: the steepest "descent" is the fall just after it, at lr ≈ 1e-4
    lightning = lrs[10:-1][np.argmin(np.gradient(loss[10:-1], lrs[10:-1]))]
    assert lightning < 1e-3


def test_smoothing_removes_isolated_spikes_without_lag():
    values = np.r_[np.ones(20), np.zeros(20)]
    values[5] = 10.0
    smoothed = smooth_losses(values, window=5)
    assert smoothed.max() == pytest.approx(1.0)
    assert smoothed[19] > 0.5 > smoothed[20]  # the step stays where it was: centered, no lag


def test_suggestion_rejects_bad_input():
    with pytest.raises(ValueError, match="method='valley' is not one of"):
        suggest_lr([1e-3, 1e-2], [1.0, 0.5], method="valley")
    with pytest.raises(ValueError, match="increasing"):
        suggest_lr([1e-2, 1e-3], [1.0, 0.5])
    with pytest.raises(ValueError, match="odd"):
        smooth_losses(np.ones(5), window=4)
    assert suggest_lr(np.logspace(-5, 0, 50), np.full(50, 0.7)).lr is None  # never falls


# ---- callbacks --------------------------------------------------------------------------


def test_experiment_callbacks_write_their_files(tmp_path):
    quiet = ["~logger", "callbacks.lr_monitor=null", "callbacks.model_checkpoint=null"]
    record = train(compose(["experiment=cat_neuron", "trainer.max_steps=10", *quiet],
                           output_dir=tmp_path))
    assert record["status"] == "ok"
    trace = json.loads((tmp_path / "weight_trace.json").read_text())
    assert trace["steps"] == [0, 5, 10]
    assert set(trace["weights"]) == {"tail", "two_eyes", "horn", "whiskers", "pointy_ears"}
    assert trace["weights"]["tail"][-1] == pytest.approx(record["feature_weights"]["tail"])
    fit = json.loads((tmp_path / "fit_metrics.json").read_text())
    assert fit["train/loss_epoch"] > 0


def test_same_seed_gives_the_same_initial_weights_at_every_rate(tmp_path):
    from neuronlab.experiments.callbacks import parameters_sha256
    from neuronlab.training.run import build

    def initial(lr: float) -> str:
        cfg = compose(["experiment=lr_sweep", f"optimizer.lr={lr}"], output_dir=tmp_path)
        _, task, _ = build(cfg)
        return parameters_sha256(task.net)

    assert initial(1e-4) == initial(10.0)
    other_seed = compose(["experiment=lr_sweep", "seed=1"], output_dir=tmp_path)
    assert parameters_sha256(build(other_seed)[1].net) != initial(1e-4)


# ---- the layer rules: experiments and explanations sit below config and the CLI --------------


def _imports(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports (anywhere in the file), relative imports resolved."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            name = ".".join(part for part in (base, node.module or "") if part)
            found |= {name} | {f"{name}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("package", ["experiments", "explain"])
def test_layer_4_imports_nothing_from_config_or_the_cli(package):
    import neuronlab

    folder = Path(neuronlab.__file__).parent / package
    for path in sorted(folder.glob("*.py")):
        upward = {name for name in _imports(path, f"neuronlab.{package}")
                  if name.startswith(("neuronlab.cli", "neuronlab.config"))}
        assert not upward, f"{path.name} imports {sorted(upward)}"


# ---- claim 1: a neuron learns which features matter --------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_cat_neuron_learns_which_features_matter(tmp_path, seed):
    record = train(compose(["experiment=cat_neuron", f"seed={seed}", "~logger",
                            "callbacks.lr_monitor=null"],
                           output_dir=tmp_path))
    weights = record["feature_weights"]
    assert record["status"] == "ok"
    assert weights["tail"] > 0 and weights["horn"] < 0
    smaller = min(abs(weights["tail"]), abs(weights["horn"]))
    assert abs(weights["two_eyes"]) < 0.25 * smaller, weights


# ---- claim 2: the learning rate is the step size ------------------------------------------

# the experiment's 11 rates, the largest first: a divergent run must not stop the sweep
RATES = "10,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,0.1,0.3,1,3"


def _sweep(sweep_dir: Path, rates: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["OMP_NUM_THREADS"] = "1"  # tiny networks: a second thread only fights over the cores
    return subprocess.run(
        [sys.executable, "-m", "neuronlab.cli.train", "-m", "experiment=lr_sweep",
         f"optimizer.lr={rates}", f"hydra.sweep.dir={sweep_dir}"],
        capture_output=True, text=True, cwd=sweep_dir.parent, env=env, timeout=600,
    )


@pytest.fixture(scope="module")
def lr_sweep_dir(tmp_path_factory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("lr") / "sweep"
    proc = _sweep(sweep_dir, RATES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir


@pytest.mark.slow
def test_lr_sweep_small_is_slow_middle_converges_large_diverges(lr_sweep_dir):
    sweep = read_lr_sweep(lr_sweep_dir)
    verdicts = sweep.verdicts()
    assert len(verdicts) == 11  # every run finished and wrote metrics.json, diverged or not
    assert len({r.init_sha256 for r in sweep.runs}) == 1  # one initial state for all rates
    assert len({round(r.initial, 6) for r in sweep.runs}) == 1  # so one initial loss
    smallest = sweep.runs[0]
    assert smallest.verdict == "slow" and smallest.final > 0.8 * smallest.initial
    assert verdicts[10.0] == verdicts[3.0] == "diverged"
    lo, hi = sweep.band
    assert 1e-4 < lo and hi < 3.0
    assert all(v == "converged" for lr, v in verdicts.items() if lo <= lr <= hi)  # one band
    assert all(v in ("slow", "partial") for lr, v in verdicts.items() if lr < lo)
    report = build_report(lr_sweep_dir)
    assert report.counts()["diverged"] == 2 and report.counts()["ok"] == 9


@pytest.mark.slow
def test_re_running_the_sweep_skips_finished_runs(lr_sweep_dir):
    proc = _sweep(lr_sweep_dir, "10,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("already finished, skipped") == 2


@pytest.mark.slow
def test_lr_find_suggestion_lies_in_the_band_the_sweep_found_converging(lr_sweep_dir, tmp_path):
    band = read_lr_sweep(lr_sweep_dir).band
    test = range_test(compose(["experiment=lr_sweep"], output_dir=tmp_path), steps=200)
    assert band[0] <= test.suggestion.lr <= band[1], (test.suggestion.lr, band)
