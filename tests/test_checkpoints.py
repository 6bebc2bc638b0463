# pytest tests/test_checkpoints.py -m "slow or not slow"   (without -m: the fast ones)
"""Checkpoints: plain data only (they load with weights_only=True), crafted files refused
without running anything, damaged files named on one line, writes that never show a part."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from neuronlab.config import ConfigError, compose
from neuronlab.training.checkpoint import (
    CheckpointError,
    SafeCheckpointIO,
    atomic_write_bytes,
    load_checkpoint,
    remove_stale_temp_files,
)
from neuronlab.training.run import build, train

FAST = ["callbacks.progress_bar=null", "trainer.max_epochs=1"]
PRIMITIVES = (dict, list, str, int, float, bool, type(None))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished one-epoch run on moons (an MLP); its folder."""
    run_dir = tmp_path_factory.mktemp("trained")
    record = train(compose([*FAST, "data=moons", "model=mlp"], output_dir=run_dir))
    assert record["status"] == "ok"
    return run_dir


class RunsCode:
    """Unpickling this calls ``os.system`` — what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _only_primitives(value, where: str = "") -> None:
    assert isinstance(value, PRIMITIVES), f"{where}: {type(value).__name__}"
    if isinstance(value, dict):
        for k, v in value.items():
            _only_primitives(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _only_primitives(v, f"{where}[{i}]")


def test_checkpoint_loads_with_weights_only_and_holds_primitive_hparams(trained):
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["model"]["kind"] == "mlp"
    _only_primitives(ckpt["hyper_parameters"], "hyper_parameters")
    _only_primitives(ckpt["datamodule_hyper_parameters"], "datamodule_hyper_parameters")


def test_build_from_a_dictconfig_still_stores_primitives(tmp_path):
    _, task, _ = build(compose(["data=moons", "model=mlp"], output_dir=tmp_path))
    _only_primitives(dict(task.hparams), "hparams")


@pytest.mark.parametrize("kind", ["torch.save", "raw pickle"])
def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path, kind):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.ckpt"
    payload = {"state_dict": {}, "loops": {}, "x": RunsCode(marker)}
    if kind == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match="was refused: it holds objects") as info:
        load_checkpoint(evil)
    assert "posix.system" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="was refused"):  # the training path refuses it too
        train(compose([*FAST, "data=moons", "model=mlp", f"ckpt_path={evil}"],
                      output_dir=tmp_path / "run"))
    assert not marker.exists()
    assert not (tmp_path / "run" / "tb").exists()  # refused before any work


def _damaged(trained: Path, tmp_path: Path) -> dict[str, Path]:
    good = (trained / "checkpoints" / "last.ckpt").read_bytes()
    flipped = bytearray(good)
    flipped[2000:2100] = bytes(b ^ 0xFF for b in flipped[2000:2100])
    files = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "random bytes": os.urandom(4096),
        "bit flips": bytes(flipped),
        "text": b"this is not a checkpoint\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.ckpt"
        paths[name].write_bytes(data)
    return paths


def test_damaged_checkpoints_give_one_clear_line(trained, tmp_path):
    for name, path in _damaged(trained, tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert message.startswith(f"ckpt_path={str(path)!r} "), (name, message)
        assert any(w in message for w in ("corrupt", "truncated", "empty")), (name, message)
        assert "\n" not in message, (name, message)


def test_resuming_from_a_damaged_or_foreign_file_is_a_config_error(trained, tmp_path):
    truncated = _damaged(trained, tmp_path)["truncated"]
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path, expected in ((truncated, "corrupt or truncated"),
                           (foreign, "is not a training checkpoint")):
        with pytest.raises(ConfigError, match=expected):
            train(compose([*FAST, "data=moons", "model=mlp", f"ckpt_path={path}"],
                          output_dir=tmp_path / "run"))


def test_resuming_with_other_data_model_or_optimizer_says_what_differs(trained, tmp_path):
    last = trained / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"holds a network for 2 features and 2 classes, but "
                       r"data 'breast_cancer' has 30 features and 2 classes"):
        train(compose([*FAST, "data=breast_cancer", "model=mlp", f"ckpt_path={last}"],
                      output_dir=tmp_path / "a"))
    with pytest.raises(ConfigError, match=r"does not fit the model of this config: "
                       r"net.layers.0.weight is \(64, 2\) there and \(8, 2\) here"):
        train(compose([*FAST, "data=moons", "model=mlp", "model.hidden=[8]", f"ckpt_path={last}"],
                      output_dir=tmp_path / "b"))
    # a resume restores the optimizer's state: a new rate would be silently ignored
    with pytest.raises(ConfigError, match=r"optimizer.lr=0.01 here but 0.5 in the checkpoint; a "
                       r"resume continues the same run"):
        train(compose([*FAST, "data=moons", "model=mlp", "optimizer.lr=0.01", f"ckpt_path={last}"],
                      output_dir=tmp_path / "c"))


# ---- atomic writes ---------------------------------------------------------------------------


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    atomic_write_bytes(target, b"old checkpoint")

    def killed(fd):  # the bytes are written, the process dies before they are made durable
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new checkpoint, only partly on disk")
    assert target.read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_save_checkpoint_that_cannot_serialize_keeps_the_old_one(tmp_path):
    target = tmp_path / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"w": torch.ones(3)}, target)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        io.save_checkpoint({"w": torch.zeros(3), "bad": lambda: 0}, target)
    assert torch.equal(io.load_checkpoint(target)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


WRITER = textwrap.dedent("""
    import sys, io, torch
    from neuronlab.training.checkpoint import atomic_write_bytes
    versions = []
    for v in (0, 1):  # two versions, ~32 MB each, serialized once: the loop is all writing
        buf = io.BytesIO()
        torch.save({"version": v, "w": torch.full((8_000_000,), float(v))}, buf)
        versions.append(buf.getvalue())
    i = 0
    while True:
        atomic_write_bytes(sys.argv[1], versions[i % 2])
        print(i, flush=True)
        i += 1
""")


@pytest.mark.slow
def test_sigkill_during_writes_leaves_a_whole_checkpoint(tmp_path):
    """Kill a process that does nothing but replace a checkpoint; until a kill lands inside
    a write (its temporary file is left behind), and check the checkpoint is whole each time."""
    landed_mid_write = False
    for attempt in range(4):
        target = tmp_path / str(attempt) / "last.ckpt"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)],
                                stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(2):  # whole versions written; the kill lands in a later write
                assert proc.stdout.readline(), "the writer died"
            time.sleep(0.01 * attempt)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        ckpt = load_checkpoint(target)
        assert torch.all(ckpt["w"] == float(ckpt["version"]))  # one version, whole
        landed_mid_write = bool(remove_stale_temp_files(target.parent))
        assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]
        if landed_mid_write:
            break
    assert landed_mid_write, "no kill landed inside a write in 4 tries"


# ---- through the command line ----------------------------------------------------------------


@pytest.mark.slow
def test_command_line_names_a_bad_checkpoint_on_one_line(trained, tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"x": RunsCode(marker)}, evil)
    truncated = _damaged(trained, tmp_path)["truncated"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    for path, expected in ((evil, "was refused"), (truncated, "corrupt or truncated")):
        proc = subprocess.run(
            [sys.executable, "-m", "neuronlab.cli.train", *FAST, "data=moons", "model=mlp",
             f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}"],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0], proc.stderr
        assert not (tmp_path / "run").exists()
    assert not marker.exists()


def test_atomic_writes_are_readable_as_a_plain_open_would_make_them(tmp_path):
    import os

    from neuronlab.training.checkpoint import atomic_write_bytes

    mask = os.umask(0)
    os.umask(mask)
    path = tmp_path / "metrics.json"
    atomic_write_bytes(path, b"{}")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


def test_last_ckpt_is_every_finished_epoch_even_where_validation_is_every_n(tmp_path):
    # mnist1d_cnn validates every 5 epochs; last.ckpt must still follow every epoch, else a
    # killed run loses up to 4 of them
    record = train(compose([*FAST, "data=moons", "model=mlp", "trainer.max_epochs=2",
                            "+trainer.check_val_every_n_epoch=3"], output_dir=tmp_path))
    assert record["status"] == "ok"
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, record["steps"])
