# pytest tests/test_tensorboard.py
"""TensorBoard as users meet it: a real ``tensorboard`` process serves every point of a run.

The runs are written by ``train(cfg)``; TensorBoard is started with default flags on
127.0.0.1 and a free port, and its HTTP API is read the way its web page reads it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from neuronlab.config import compose
from neuronlab.training.run import train

EPOCHS = 6
TAGS = ("val/loss", "val/acc", "test/loss", "test/acc", "train/loss")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A ``tensorboard --logdir`` subprocess; ``get``/``post`` read its HTTP API."""

    def __init__(self, logdir: Path) -> None:
        exe = Path(sys.executable).with_name("tensorboard")
        if not exe.is_file():
            pytest.skip("the tensorboard command is not installed beside this Python")
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [str(exe), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def get(self, path: str, **query: str):
        url = f"http://127.0.0.1:{self.port}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)

    def post(self, path: str, body: dict):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def wait_for_runs(self, n_runs: int, timeout: float = 90.0) -> dict:
        """The scalar tags per run, once ``n_runs`` runs show every tag in ``TAGS``."""
        deadline = time.monotonic() + timeout
        tags: dict = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tensorboard exited with {self.proc.returncode}")
            try:
                tags = self.get("/data/plugin/scalars/tags")
            except OSError:
                tags = {}
            if len(tags) >= n_runs and all(set(TAGS) <= set(t) for t in tags.values()):
                return tags
            time.sleep(0.5)
        raise AssertionError(f"tensorboard did not serve {n_runs} runs in {timeout} s: {tags}")

    def points(self, run: str, tag: str) -> list[int]:
        """The steps of ``tag`` in ``run``, as served (``[wall_time, step, value]`` rows)."""
        return [row[1] for row in self.get("/data/plugin/scalars/scalars", run=run, tag=tag)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two runs in one folder, as ``-m`` lays them out: ``<sweep>/<overrides>/tb``."""
    for lr in ("0.1", "0.5"):
        record = train(compose(
            [f"optimizer.lr={lr}", f"trainer.max_epochs={EPOCHS}", "callbacks.progress_bar=null",
             "torch_threads=1"],
            output_dir=tmp_path / f"optimizer.lr={lr}",
        ))
        assert record["status"] == "ok"
    return tmp_path


def test_tensorboard_serves_every_point_of_every_run(sweep):
    served = Served(sweep)
    try:
        tags = served.wait_for_runs(2)
        assert sorted(tags) == ["optimizer.lr=0.1/tb", "optimizer.lr=0.5/tb"]
        for run in tags:
            val = served.points(run, "val/loss")
            assert len(val) == EPOCHS, (run, val)  # one point per epoch, none dropped
            assert val == sorted(val) and 0 not in val, val  # no spurious step 0
            assert served.points(run, "val/acc") == val
            for tag in ("test/loss", "test/acc"):
                test = served.points(run, tag)
                assert len(test) == 1 and test[0] >= val[-1], (tag, test)
            train_steps = served.points(run, "train/loss")
            assert len(train_steps) >= EPOCHS and train_steps == sorted(set(train_steps))
        # the HParams tab still compares the runs of the sweep
        groups = served.post("/data/plugin/hparams/session_groups", {
            "startIndex": 0, "sliceSize": 10, "allowedStatuses": [
                "STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            "colParams": [{"hparam": "optimizer.lr"}, {"metric": {"tag": "val/loss"}}],
        })
        lrs = sorted(g["hparams"]["optimizer.lr"] for g in groups["sessionGroups"])
        assert lrs == [0.1, 0.5]
        for g in groups["sessionGroups"]:
            (metric,) = [m for m in g["metricValues"] if m["name"]["tag"] == "val/loss"]
            assert metric["trainingStep"] > 0
    finally:
        served.stop()
    assert served.proc.returncode is not None


def test_a_run_resumed_in_its_folder_serves_each_step_once(tmp_path):
    """Resuming from an earlier checkpoint into the same folder (as after a kill -9, where
    the run had logged past its last checkpoint) must not show those steps twice."""
    common = [f"trainer.max_epochs={EPOCHS}", "callbacks.progress_bar=null", "torch_threads=1",
              "callbacks.model_checkpoint.save_top_k=-1"]
    first = train(compose(common, output_dir=tmp_path))
    assert first["status"] == "ok"
    early = tmp_path / "checkpoints" / "best-epoch001.ckpt"
    again = train(compose([*common, f"ckpt_path={early}"], output_dir=tmp_path))
    assert again["status"] == "ok" and again["steps"] == first["steps"]
    served = Served(tmp_path)
    try:
        served.wait_for_runs(1)
        for tag in ("train/loss", "val/loss"):
            steps = served.points("tb", tag)
            assert steps == sorted(set(steps)), (tag, steps)  # each step once, in order
        assert len(served.points("tb", "val/loss")) == EPOCHS
    finally:
        served.stop()
