# pytest tests/test_training.py
"""train(cfg) end to end on configs composed like the command line composes them."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from neuronlab.config import compose
from neuronlab.paths import config_dir
from neuronlab.training.run import train

FAST = ["trainer.max_epochs=2", "callbacks.progress_bar=null"]


def run(tmp_path: Path, *overrides: str) -> dict:
    return train(compose([*FAST, *overrides], output_dir=tmp_path))


def test_default_run_learns_the_cat_weights(tmp_path):
    record = train(compose(["callbacks.progress_bar=null"], output_dir=tmp_path))
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["status"] == "ok" and record["status"] == "ok"
    w = stored["feature_weights"]
    assert w["tail"] > 0 and w["horn"] < 0
    assert abs(w["two_eyes"]) < 0.25 * min(abs(w["tail"]), abs(w["horn"]))
    assert stored["metrics"]["test/acc"] > 0.85
    assert stored["steps"] > 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("backprop", ["manual", "autograd"])
@pytest.mark.parametrize(
    "data", ["cats", "xor", "moons", "circles", "spirals", "digits", "breast_cancer", "iris"]
)
def test_every_dataset_trains_in_both_modes(tmp_path, data, backprop):
    model = "neuron" if data == "cats" else "mlp"
    record = run(tmp_path, f"data={data}", f"model={model}", f"model.backprop={backprop}",
                 "trainer.max_epochs=3", "trainer.max_steps=3", "optimizer.lr=0.05")
    assert record["status"] == "ok"
    assert record["steps"] == 3
    assert math.isfinite(record["metrics"]["test/loss"])
    # three steps moved every weight matrix away from its initial draw
    task = record["task"]
    fresh = type(task)(**task.hparams).net.state_dict()
    for name, value in task.net.state_dict().items():
        if name.endswith("weight") or name == "w":
            assert not torch.equal(value, fresh[name]), name


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml")
                  if not p.stem.startswith("_"))


@pytest.mark.parametrize(
    "group,option",
    [(g, o) for g in ("data", "model", "init", "optimizer", "scheduler", "trainer", "logger",
                      "callbacks", "experiment") for o in _options(g)],
)
@pytest.mark.slow  # 40 options × compose + build (~9 s)
def test_every_config_option_composes_and_builds(tmp_path, group, option):
    from neuronlab.training.run import build

    if group == "trainer" and option == "gpu" and not torch.cuda.is_available():
        pytest.skip("trainer=gpu needs a GPU")
    overrides = [f"{group}={option}"]
    if group == "data" and option != "cats":
        overrides.append("model=mlp")
    if group == "model" and option == "embedmlp":  # tokens: the digits' raw levels
        overrides += ["data=digits", "data.standardize=false"]
    if group == "trainer" and option == "ddp":
        overrides.append("trainer.devices=1")  # build only; the DDP run is its own slow test
    cfg = compose(overrides, output_dir=tmp_path)
    from omegaconf import OmegaConf

    datamodule, task, trainer = build(OmegaConf.to_container(cfg, resolve=True))
    x, y = next(iter(datamodule.train_dataloader()))
    out, loss = task.output_and_loss((x, y))  # the built network fits the data it is given
    assert out.shape[0] == x.shape[0] and torch.isfinite(loss)
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.slow  # an experiment's number (~2 s)
def test_digits_mlp_reaches_95_percent(tmp_path):
    record = run(tmp_path, "data=digits", "model=mlp", "trainer.max_epochs=30",
                 "optimizer.lr=0.1")
    assert record["status"] == "ok"
    assert record["metrics"]["test/acc"] >= 0.95


def test_tensorboard_events_hold_scalars_histograms_and_audit(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tmp_path, "data=moons", "model=mlp", "callbacks.gradient_audit.every_n_steps=5",
        "callbacks.gradient_flow.every_n_steps=5")
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = set(tags["scalars"])
    for tag in ("train/loss", "train/loss_epoch", "val/loss", "val/acc", "test/acc", "lr",
                "grad_audit/worst", "flow/layer0/grad_norm", "flow/layer0/dead",
                "flow/layer2/update_ratio"):
        assert tag in scalars, f"{tag} missing from {sorted(scalars)}"
    assert any(t.startswith("grad_audit/layers.0.weight") for t in scalars)
    assert "weights/layer0" in tags["histograms"] and "grads/layer1" in tags["histograms"]
    worst = [e.value for e in acc.Scalars("grad_audit/worst")]
    assert worst and max(worst) < 1  # multiples of the rounding bound: 1 is the alarm line


def _final_weights(record: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in record["task"].net.state_dict().items()}


def test_resume_from_epoch_checkpoint_matches_uninterrupted_run(tmp_path):
    common = ["data=moons", "model=mlp", "callbacks.model_checkpoint.save_top_k=-1",
              "optimizer.momentum=0.9"]
    full = run(tmp_path / "full", *common, "trainer.max_epochs=4")
    run(tmp_path / "part", *common, "trainer.max_epochs=2")
    ckpt = tmp_path / "part" / "checkpoints" / "best-epoch001.ckpt"
    assert ckpt.is_file()
    resumed = run(tmp_path / "resumed", *common, "trainer.max_epochs=4", f"ckpt_path={ckpt}")
    assert resumed["steps"] == full["steps"]
    a, b = _final_weights(full), _final_weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_finished_run_folder_is_not_run_again(tmp_path):
    first = run(tmp_path, "trainer.max_steps=2")
    again = run(tmp_path, "trainer.max_steps=2")
    assert first["status"] == "ok" and again.get("skipped") is True


def test_divergence_ends_the_run_with_a_clear_status(tmp_path):
    record = run(tmp_path, "data=digits", "model=mlp", "optimizer.lr=1e4", "trainer.max_epochs=3")
    assert record["status"] == "diverged"
    assert record["message"].startswith("diverged at step ")
    assert "lower optimizer.lr (now 10000)" in record["message"]
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["status"] == "diverged"


def test_small_data_logs_every_epoch_without_lightning_warnings(tmp_path):
    """moons in batches of 128: 6 batches an epoch, fewer than log_every_n_steps=10, so the
    interval shrinks to an epoch."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = run(tmp_path, "data=moons", "model=mlp", "data.batch_size=128",
                     "trainer.max_epochs=3")
    assert record["trainer"].log_every_n_steps == record["steps"] // 3
    assert not [w for w in caught if "logging interval" in str(w.message)]


@pytest.mark.slow  # a process start or a compile: seconds
def test_a_compiled_whole_step_trains_like_the_eager_loop(tmp_path):
    """train_step=compiled: forward, hand-written backward and the update compiled (a
    TrainStep under Lightning's manual optimization); eager is Lightning's own loop."""
    common = ["data=moons", "model=mlp", "trainer.max_epochs=3", "optimizer.momentum=0.9",
              "scheduler=cosine"]
    eager = run(tmp_path / "eager", *common, "train_step=eager")
    compiled = run(tmp_path / "compiled", *common, "train_step=compiled")
    assert compiled["status"] == "ok" and compiled["steps"] == eager["steps"]
    assert compiled["task"].train_step.mode == "compiled"
    a, b = _final_weights(eager), _final_weights(compiled)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    assert compiled["metrics"]["test/loss"] == pytest.approx(eager["metrics"]["test/loss"],
                                                             rel=1e-3)


def test_train_step_auto_is_eager_on_the_cpu_and_says_what_a_graph_needs():
    from neuronlab.config import ConfigError, validate_config

    assert validate_config(compose([])).train_step == "eager"
    with pytest.raises(ConfigError, match="train_step='compiled' needs optimizer.name=sgd"):
        validate_config(compose(["optimizer=adam", "train_step=compiled"]))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="train_step='graph' needs a CUDA GPU"):
            validate_config(compose(["train_step=graph"]))


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_on_a_gpu_the_step_is_one_cuda_graph_and_trains_like_eager(tmp_path, precision):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    common = ["trainer=gpu", f"trainer.precision={precision}", "data=digits", "model=mlp",
              "optimizer.lr=0.1", "trainer.max_epochs=5"]
    graphed = run(tmp_path / "graph", *common)  # train_step=auto → graph on a GPU
    assert graphed["status"] == "ok", graphed["message"]
    assert graphed["task"].train_step.mode == "graph"
    eager = run(tmp_path / "eager", *common, "train_step=eager")
    assert abs(graphed["metrics"]["test/loss"] - eager["metrics"]["test/loss"]) < 0.05


def test_train_loss_is_written_on_the_logged_steps_and_its_epoch_mean_is_exact(tmp_path):
    """``train/loss`` reaches Lightning only on the steps its loggers write; the epoch mean is
    summed on the device: it must equal the row-weighted mean of that epoch's step losses."""
    from neuronlab.experiments.sweep import read_scalars

    every = run(tmp_path / "every", "data=moons", "model=mlp", "data.batch_size=96",
                "trainer.max_epochs=3", "trainer.log_every_n_steps=1")
    curves = read_scalars(tmp_path / "every" / "tb")
    steps_per_epoch = every["steps"] // 3
    n_train = len(every["task"].trainer.datamodule.train_tensors[1])
    sizes = [96] * (steps_per_epoch - 1) + [n_train - 96 * (steps_per_epoch - 1)]
    assert 0 < sizes[-1] < 96  # a smaller last batch: the mean must weigh it by its rows
    step_losses = dict(zip(*curves["train/loss"], strict=True))
    assert sorted(step_losses) == list(range(every["steps"]))  # every step, once
    epoch_means = curves["train/loss_epoch"][1]
    assert len(epoch_means) == 3
    for epoch, mean in enumerate(epoch_means):
        losses = [step_losses[epoch * steps_per_epoch + i] for i in range(steps_per_epoch)]
        expected = sum(v * b for v, b in zip(losses, sizes, strict=True)) / sum(sizes)
        assert mean == pytest.approx(expected, rel=1e-5)

    sparse = run(tmp_path / "sparse", "data=moons", "model=mlp", "data.batch_size=96",
                 "trainer.max_epochs=3", "trainer.log_every_n_steps=4")
    logged = read_scalars(tmp_path / "sparse" / "tb")["train/loss"][0]
    assert logged == [s for s in range(sparse["steps"]) if (s + 1) % 4 == 0]
    assert sparse["metrics"]["train/loss_epoch"] == pytest.approx(
        every["metrics"]["train/loss_epoch"], rel=1e-6)  # same run, same epoch mean


def test_the_run_reports_training_throughput_without_validation_time(tmp_path):
    from neuronlab.experiments.sweep import read_scalars
    from neuronlab.training.throughput import TrainThroughput

    record = run(tmp_path, "data=moons", "model=mlp", "data.batch_size=96",
                 "trainer.max_epochs=3")
    meter = next(c for c in record["trainer"].callbacks if isinstance(c, TrainThroughput))
    n_train = len(record["task"].trainer.datamodule.train_tensors[1])
    assert meter.rows == 3 * n_train  # every trained row, once; no validation rows
    assert 0 < record["train_seconds"] < record["seconds"]
    assert record["train_samples_per_s"] == pytest.approx(meter.rows / meter.seconds)
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["train_samples_per_s"] == pytest.approx(record["train_samples_per_s"])
    steps, rates = read_scalars(tmp_path / "tb")["perf/train_samples_per_s"]
    assert len(rates) == 3 and all(r > 0 for r in rates)
    # at the step of the epoch's other scalars (train/loss_epoch, val/*)
    assert steps == read_scalars(tmp_path / "tb")["train/loss_epoch"][0]
    assert steps == [record["steps"] // 3 * (e + 1) - 1 for e in range(3)]
    last = record["train_samples_per_s_last_epoch"]
    assert last == pytest.approx(rates[-1]) and stored["train_samples_per_s_last_epoch"] == last
    # the audit's comparisons (steps 0 and 50 of 96-row batches) are checks, not training
    assert stored["audit_seconds"] == record["audit_seconds"] == round(meter.check_seconds, 3)
    assert meter.check_seconds > 0 and record["train_seconds"] == round(meter.seconds, 3)
    off = run(tmp_path / "off", "data=moons", "model=mlp", "callbacks.gradient_audit=null")
    assert off["audit_seconds"] == 0


@pytest.mark.filterwarnings("ignore:.*could not find the monitored key")  # 7 steps: no val yet
def test_the_final_train_loss_is_the_last_steps_even_between_logged_steps(tmp_path):
    """``train/loss`` goes to Lightning on logged steps, and on the last step of an epoch or
    of the run: the run's record ends with the last step's loss (here step 6, not logged)."""
    from neuronlab.experiments.sweep import read_scalars

    common = ["data=moons", "model=mlp", "data.batch_size=64", "trainer.max_steps=7"]
    sparse = run(tmp_path / "sparse", *common, "trainer.log_every_n_steps=10")
    run(tmp_path / "dense", *common, "trainer.log_every_n_steps=1")
    steps, values = read_scalars(tmp_path / "dense" / "tb")["train/loss"]
    assert steps[-1] == 6 and sparse["steps"] == 7
    assert sparse["metrics"]["train/loss"] == pytest.approx(values[-1], rel=1e-6)


def test_a_bf16_run_sums_its_epoch_loss_in_float32(tmp_path):
    from neuronlab.experiments.sweep import read_scalars

    record = run(tmp_path, "data=moons", "model=mlp", "data.batch_size=8",
                 "trainer.max_epochs=1", "trainer.log_every_n_steps=1",
                 "trainer.precision=bf16-true")
    _, losses = read_scalars(tmp_path / "tb")["train/loss"]
    n_train = len(record["task"].trainer.datamodule.train_tensors[1])
    sizes = [8] * (len(losses) - 1) + [n_train - 8 * (len(losses) - 1)]
    expected = sum(v * b for v, b in zip(losses, sizes, strict=True)) / n_train
    # a bfloat16 running sum is ~2 % off after ~90 steps; float32's error is ~1e-7
    assert record["metrics"]["train/loss_epoch"] == pytest.approx(expected, rel=1e-4)


def test_only_a_mid_epoch_checkpoint_carries_the_epochs_partial_loss(tmp_path):
    from neuronlab.training.checkpoint import load_checkpoint

    record = run(tmp_path, "data=moons", "model=mlp", "trainer.max_epochs=2")
    best = load_checkpoint(Path(record["trainer"].checkpoint_callback.best_model_path))
    assert "train_loss_epoch" not in best  # saved at validation end, after the last batch
    task = record["task"]
    task._epoch_loss, task._epoch_rows = torch.tensor(3.0), 12  # as in the middle of an epoch
    ckpt: dict = {}
    task.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch = False
    task.on_save_checkpoint(ckpt)
    assert ckpt["train_loss_epoch"]["rows"] == 12
    fresh = type(task)(**task.hparams)
    fresh.on_load_checkpoint(ckpt)
    assert fresh._epoch_rows == 12 and float(fresh._epoch_loss) == 3.0


@pytest.mark.cuda
def test_on_a_gpu_a_run_makes_no_host_sync_between_its_periodic_reads(tmp_path):
    """``neuronlab-train trainer=gpu`` (graph step, default callbacks): a step syncs only where
    something is due to read the device — the first steps (warm-up, capture), the steps
    Lightning writes to its loggers, the audit/flow steps (every 50), the divergence read
    (every 100), an epoch's last batch (validation, checkpoints). Every other step: 0."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from sync_counter import SyncCounter

    record = run(tmp_path, "trainer=gpu", "data=spirals", "data.n_samples=20000", "model=mlp",
                 "data.batch_size=128", "trainer.max_epochs=2", "trainer.log_every_n_steps=20",
                 "+callbacks.syncs._target_=sync_counter.SyncCounter")
    assert record["status"] == "ok" and record["task"].train_step.mode == "graph"
    counter = next(c for c in record["trainer"].callbacks if isinstance(c, SyncCounter))
    per_epoch = record["steps"] // 2
    due = {s for s in counter.per_step
           if s < 6 or s % 50 == 0 or (s + 1) % 20 == 0 or (s + 1) % 100 == 0
           or (s + 1) % per_epoch == 0}
    quiet = {s: n for s, n in counter.per_step.items() if s not in due}
    assert len(quiet) > 100
    assert not {s: n for s, n in quiet.items() if n}, "steps with host syncs (step: count)"
