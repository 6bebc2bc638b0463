# pytest tests/test_reliability.py -m "slow or not slow"   (without -m: the fast ones)
"""Bad data, divergence, interruption and determinism: a run loses nothing and says why."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from neuronlab.config import ConfigError, compose
from neuronlab.data import Dataset, from_tensors
from neuronlab.training import LearnTask
from neuronlab.training.run import build, train

FAST = ["callbacks.progress_bar=null", "trainer.max_epochs=2"]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


# ---- bad data: named before training -------------------------------------------------------------


def _two_class(n: int = 60, n_features: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, n_features, generator=g)  # (N, F)
    return x, (x[:, 0] > 0).long()  # (N,)


def _dataset(x, y, n_classes: int = 2) -> Dataset:
    """A Dataset built directly, so nothing is checked yet (``from_tensors`` checks at once)."""
    n_features = x.shape[1] if x.ndim == 2 else 1
    return Dataset(name="my_data", x=x, y=y, feature_names=[f"x{i}" for i in range(n_features)],
                   class_names=[str(c) for c in range(n_classes)], n_classes=n_classes)


def _bad_data() -> dict[str, tuple[Dataset, str]]:
    x, y = _two_class()
    nan, inf = x.clone(), x.clone()
    nan[3, 1] = float("nan")
    inf[7, 0] = float("inf")
    big, negative = y.clone(), y.clone()
    big[5] = 2
    negative[0] = -1
    return {
        "nan feature": (_dataset(nan, y), "1 feature value is NaN or infinite (first at row 3, "
                                          "column 'x1')"),
        "inf feature": (_dataset(inf, y), "NaN or infinite (first at row 7, column 'x0')"),
        "label too big": (_dataset(x, big), "1 label is outside the allowed range [0, 2)"),
        "negative label": (_dataset(x, negative), "values [-1], first at row 0"),
        "float labels": (_dataset(x, y.float()), "labels must be integer class indices"),
        "no rows": (_dataset(x[:0], y[:0]), "the data set is empty (0 rows)"),
        "one-dim features": (_dataset(x[:, 0], y), "features must have shape (N, n_features)"),
        "empty split": (_dataset(x[:2], y[:2]), "the val split is empty (n_samples=2"),
    }


@pytest.mark.parametrize("case", list(_bad_data()))
def test_bad_data_is_named_before_training(tmp_path, case):
    dataset, expected = _bad_data()[case]
    with pytest.raises(ConfigError) as info:
        train(compose(FAST, output_dir=tmp_path / "run"), dataset=dataset)
    assert "data 'my_data'" in str(info.value) and expected in str(info.value)
    assert not (tmp_path / "run").exists()


def test_from_tensors_checks_at_once_and_a_good_dataset_trains(tmp_path):
    x, y = _two_class()
    with pytest.raises(ValueError, match=r"data 'mine': \d+ labels are outside the allowed"):
        from_tensors("mine", x, torch.where(y == 1, 5, 0), n_classes=2)
    record = train(compose(FAST, output_dir=tmp_path), dataset=from_tensors("mine", x, y))
    assert record["status"] == "ok" and record["metrics"]["test/acc"] > 0.7
    assert set(record["feature_weights"]) == {"x0", "x1"}


def test_a_model_given_the_wrong_number_of_features_names_both_sizes(tmp_path):
    datamodule, task, _ = build(compose([], output_dir=tmp_path))  # the cat features
    n = datamodule.n_features
    x, y = _two_class(n_features=n + 1)
    with pytest.raises(ValueError, match=rf"n_in={n}, got input of shape \(60, {n + 1}\)"):
        task.output_and_loss((x, y))


# ---- divergence ----------------------------------------------------------------------------------

DIVERGED = re.compile(r"^diverged at step (\d+) \(loss=(\S+)\); lower optimizer\.lr \(now (\S+)\)$")


def test_nan_loss_stops_at_that_step_with_status_and_message(tmp_path):
    record = train(compose([*FAST, "data=moons", "model=mlp", "optimizer.lr=1e30",
                            "callbacks.divergence.max_loss=1e38"], output_dir=tmp_path))
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["status"] == record["status"] == "diverged"
    m = DIVERGED.match(stored["message"])
    assert m, stored["message"]
    assert m.group(2) == "nan" and m.group(3) == "1e+30"
    assert stored["steps"] == int(m.group(1))  # stopped at that step, not later


def test_divergence_keeps_the_last_finite_checkpoint(tmp_path):
    # the rate ramps up (lr·(k+1)/10⁴: 1, 2, 3, …) until the loss explodes in a later epoch
    record = train(compose([*FAST, "trainer.max_epochs=20", "data=moons", "model=mlp",
                            "optimizer.lr=1e4", "scheduler=warmup_cosine",
                            "scheduler.warmup_steps=10000"], output_dir=tmp_path))
    assert record["status"] == "diverged", record["message"]
    step = int(DIVERGED.match(record["message"]).group(1))
    assert record["epochs"] >= 1, "diverged in the first epoch: no checkpoint to keep yet"
    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert 0 < ckpt["global_step"] < step  # written before the divergence
    for name, w in ckpt["state_dict"].items():
        assert torch.isfinite(w).all(), name


# ---- interruption: Ctrl-C saves, resume finishes -------------------------------------------------


def _ctrl_c_at(monkeypatch, step: int) -> None:
    """Press Ctrl-C (a real SIGINT to this process) during the training step ``step``."""
    original = LearnTask.training_step

    def training_step(self, batch, batch_idx):
        if self.trainer.global_step == step:
            signal.raise_signal(signal.SIGINT)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(LearnTask, "training_step", training_step)


def test_ctrl_c_saves_stops_and_resume_finishes(tmp_path, monkeypatch):
    common = [*FAST, "data=moons", "model=mlp", "trainer.max_epochs=3"]
    handler = signal.getsignal(signal.SIGINT)
    _ctrl_c_at(monkeypatch, step=15)  # mid-epoch: moons has 11 batches per epoch
    record = train(compose(common, output_dir=tmp_path))
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C works again afterwards
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["status"] == record["status"] == "interrupted"
    assert stored["steps"] == 16  # the step under way finished, then it stopped
    assert stored["message"].startswith("interrupted (SIGINT) at step 16; state saved to ")
    assert f"hydra.run.dir={tmp_path} ckpt_path=last" in stored["message"]
    saved = torch.load(tmp_path / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert saved["global_step"] == 16

    monkeypatch.undo()
    # mid-epoch: the resumed epoch skips the batches it already trained, in the same order,
    # so the run ends bit-identical to an unbroken one
    resumed = train(compose([*common, "ckpt_path=last"], output_dir=tmp_path))
    assert resumed["status"] == "ok" and resumed["steps"] == 33
    full = train(compose(common, output_dir=tmp_path / "unbroken"))
    for key, value in full["task"].net.state_dict().items():
        assert torch.equal(value, resumed["task"].net.state_dict()[key]), key
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "ok"
    assert not (tmp_path / "checkpoints" / "interrupted.ckpt").exists()  # superseded


def test_ctrl_c_during_validation_stops_at_the_epoch_end_and_resumes_bit_identical(
    tmp_path, monkeypatch
):
    common = [*FAST, "data=moons", "model=mlp", "trainer.max_epochs=3", "optimizer.momentum=0.9"]
    full = train(compose(common, output_dir=tmp_path / "full"))
    original = LearnTask.validation_step

    def validation_step(self, batch, batch_idx):
        if self.trainer.current_epoch == 1 and batch_idx == 0:
            signal.raise_signal(signal.SIGINT)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(LearnTask, "validation_step", validation_step)
    part = train(compose(common, output_dir=tmp_path / "part"))
    assert part["status"] == "interrupted" and part["steps"] == 22  # the end of epoch 1
    monkeypatch.undo()
    resumed = train(compose([*common, "ckpt_path=last"], output_dir=tmp_path / "part"))
    assert resumed["steps"] == full["steps"]
    a, b = full["task"].net.state_dict(), resumed["task"].net.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---- determinism ---------------------------------------------------------------------------------


def test_same_seed_same_config_same_metrics_and_weights(tmp_path):
    overrides = [*FAST, "data=moons", "model=mlp", "optimizer=adam"]
    a = train(compose(overrides, output_dir=tmp_path / "a"))
    b = train(compose(overrides, output_dir=tmp_path / "b"))
    assert a["metrics"] == b["metrics"] and a["steps"] == b["steps"]
    wa = _weights(tmp_path / "a" / "checkpoints" / "last.ckpt")
    wb = _weights(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ---- as a user meets them: processes killed, interrupted, swept (slow) ---------------------------

MOONS = ["data=moons", "model=mlp", "data.batch_size=8", "callbacks.progress_bar=null"]
MOONS_16 = [*MOONS[:2], "data.batch_size=16", *MOONS[3:]]
STEPS_PER_EPOCH = 88  # moons: 700 samples, 70 % to train, batches of 8


def _start(run_dir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    env = {k: v for k, v in (env or os.environ).items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        [sys.executable, "-m", "neuronlab.cli.train", *args, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=run_dir.parent, env=env,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert proc.poll() is None, f"the run ended early: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signalled_run_saves_says_how_to_resume_and_resumes(tmp_path, sig):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc = _start(run_dir, *MOONS, "trainer.max_epochs=100")
    _wait_for(run_dir / "checkpoints" / "last.ckpt", proc)  # training is under way
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in out and "Traceback" not in err
    # the resume command on one line, whatever the console's width: copy-paste runs it
    assert any(line.startswith("interrupted") and line.endswith("ckpt_path=last")
               for line in out.splitlines()), out[-2000:]
    stored = json.loads((run_dir / "metrics.json").read_text())
    assert stored["status"] == "interrupted", stored
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert stored["message"].startswith(f"interrupted ({name}) at step ")
    assert f"resume with: neuronlab-train {' '.join(MOONS)} trainer.max_epochs=100 " \
           f"hydra.run.dir={run_dir} ckpt_path=last" in stored["message"]
    saved = torch.load(run_dir / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert saved["global_step"] == stored["steps"] > 0

    epochs = saved["epoch"] + 1  # finish the epoch under way
    resumed = train(compose([*MOONS, f"trainer.max_epochs={epochs}", "ckpt_path=last"],
                            output_dir=run_dir))
    assert resumed["status"] == "ok"
    assert resumed["steps"] == epochs * STEPS_PER_EPOCH


# a run whose best epoch (by val/loss) is early: few noisy samples, overfitting
OVERFIT = ["data=moons", "model=mlp", "data.n_samples=150", "data.noise=0.4", "data.batch_size=16",
           "optimizer.lr=0.3", "optimizer.momentum=0.9", "trainer.max_epochs=12",
           "callbacks.progress_bar=null", "torch_threads=1"]


@pytest.mark.slow
def test_sigkill_after_the_best_epoch_then_resume_from_last_is_bit_identical(tmp_path):
    full = train(compose(OVERFIT, output_dir=tmp_path / "full"))
    assert full["status"] == "ok", full["message"]
    per_epoch = full["steps"] // 12
    (best,) = (tmp_path / "full" / "checkpoints").glob("best-epoch*.ckpt")
    best_epoch = int(best.stem.removeprefix("best-epoch"))
    assert best_epoch < 6, best.name  # the case that matters: the best epoch is not the last
    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    killer = ["+callbacks.killer._target_=kill_at_epoch.KillAtEpoch", "+callbacks.killer.epoch=7"]
    proc = _start(run_dir, *OVERFIT, *killer, env=env)
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 7 * per_epoch  # the end of the last finished epoch (6)
    assert (run_dir / "checkpoints" / best.name).is_file()  # the best one, kept apart

    proc = _start(run_dir, *OVERFIT, "ckpt_path=last")  # as a user resumes it
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["status"] == "ok" and resumed["steps"] == full["steps"]
    a = _weights(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = _weights(run_dir / "checkpoints" / "last.ckpt")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["metrics"] == full["metrics"]  # tested on the same best checkpoint


@pytest.mark.slow
def test_in_a_sweep_a_diverged_run_does_not_stop_the_others(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [sys.executable, "-m", "neuronlab.cli.train", "-m", "optimizer.lr=1e4,0.1",
         "data=digits", "model=mlp", "trainer.max_epochs=2", "callbacks.progress_bar=null",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = {json.loads(p.read_text())["config"]["optimizer"]["lr"]: json.loads(p.read_text())
            for p in (tmp_path / "sweep").glob("*/metrics.json")}
    assert set(runs) == {1e4, 0.1}
    assert runs[1e4]["status"] == "diverged"  # the first job …
    assert DIVERGED.match(runs[1e4]["message"])
    assert runs[0.1]["status"] == "ok"  # … and the second ran all the same


def test_divergence_read_every_n_steps_still_names_the_first_bad_step():
    """Losses wait on the device between reads; the read finds the first bad one exactly."""
    from types import SimpleNamespace

    from neuronlab.training import DivergenceGuard
    from neuronlab.training.divergence import Diverged

    guard = DivergenceGuard(max_loss=1e6, check_every_n_steps=10)
    trainer = SimpleNamespace(global_step=0, world_size=1, optimizers=[])
    losses = {13: float("nan"), 15: 1e7}
    for step in range(1, 21):
        trainer.global_step = step
        loss = torch.tensor(losses.get(step, 0.5), dtype=torch.float64)
        if step < 20:
            guard.on_train_batch_end(trainer, None, {"loss": loss}, None, 0)  # no read yet
            continue
        with pytest.raises(Diverged) as caught:
            guard.on_train_batch_end(trainer, None, {"loss": loss}, None, 0)
    assert caught.value.step == 13 and math.isnan(caught.value.loss)
    guard.check(trainer)  # read: nothing new since, so no second alarm
