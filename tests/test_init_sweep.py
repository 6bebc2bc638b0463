# pytest tests/test_init_sweep.py            (and -m slow for the claims themselves)
"""Init: the distribution matters little, the scale a lot. The machinery (fast): signal
propagation, the sweep's run names, ``neuronlab-init-sweep`` at init only; the claims
(``slow``): signal propagation against theory, and 180 short training runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from neuronlab.config import compose  # noqa: E402
from neuronlab.experiments.init_sweep import (  # noqa: E402
    check_claims,
    distribution_gap,
    job_overrides,
    run_name,
    run_training,
    sweep_params,
)
from neuronlab.experiments.signal import signal_propagation  # noqa: E402

# ---- the machinery -------------------------------------------------------------------------


def test_signal_propagation_is_a_pure_function_of_its_arguments():
    first = signal_propagation("relu", "kaiming", depth=3, width=16, batch=32, draws=2, seed=1)
    again = signal_propagation("relu", "kaiming", depth=3, width=16, batch=32, draws=2, seed=1)
    assert first.act_var.shape == first.grad_var.shape == (3,)
    np.testing.assert_array_equal(first.act_var, again.act_var)
    assert np.all(first.act_var > 0) and np.all(first.grad_var > 0)
    with pytest.raises(ValueError, match="batch"):
        signal_propagation(batch=1)


def test_init_sweep_runs_are_named_as_hydra_names_them():
    params = sweep_params()
    assert set(params) == {"model.activation", "init.scheme", "init.distribution",
                           "init.scale", "seed"}
    jobs = job_overrides(params, ["seed=0", "trainer.max_epochs=2"])
    assert len(jobs) == 2 * 3 * 2 * 5
    assert run_name(jobs[0]) == ("init.distribution=normal,init.scale=0.1,init.scheme=lecun,"
                                 "model.activation=relu,seed=0,trainer.max_epochs=2")
    assert job_overrides({"optimizer.lr": "1e-4,10"}) == [["optimizer.lr=0.0001"],
                                                         ["optimizer.lr=10"]]


def test_init_sweep_command_measures_at_init_and_writes_its_files(tmp_path, capsys):
    from neuronlab.cli.init_sweep import build_parser, main

    args = build_parser().parse_args([])
    assert (args.out, args.width, args.batch, args.draws, args.no_train) == (
        "multirun/init_sweep", 256, 512, 3, False)
    out = tmp_path / "init"
    code = main(["--no-train", "--width", "8", "--batch", "16", "--draws", "1", "--out", str(out)])
    assert code in (0, 1)  # tiny nets: a claim may miss; the wiring is what is checked here
    printed = capsys.readouterr().out
    assert "init claims, measured" in printed and "ReLU LeCun" in printed
    assert {"init_signal.png", "init_sweep.json"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "init_sweep.json").read_text())
    assert summary["cells"] == [] and len(summary["signals"]) == 2 * 3 * 2 * 5
    assert code == (0 if all(claim["holds"] for claim in summary["claims"]) else 1)


def test_init_sweep_is_a_console_script():
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["neuronlab-init-sweep"] == "neuronlab.cli.init_sweep:main"


# ---- claim 3: init — the distribution matters little, the scale a lot ---------------------


@pytest.mark.slow
def test_signal_propagation_at_init_matches_theory():
    signals = [signal_propagation("relu", scheme, depth=20, width=256, batch=512, draws=3)
               for scheme in ("lecun", "kaiming")]
    signals += [signal_propagation("tanh", "xavier", scale=scale, depth=10, width=256,
                                   batch=512, draws=3) for scale in (0.5, 1.0, 10.0)]
    claims = check_claims(signals, [])
    assert len(claims) == 6
    failed = [(claim.name, claim.value) for claim in claims if not claim.holds]
    assert not failed, failed


@pytest.mark.slow
def test_init_distribution_matters_less_than_scale(tmp_path):
    cells = run_training(tmp_path, sweep_params(), compose)  # the experiment's 180 runs, ~1 min
    assert len(cells) == 2 * 3 * 2 * 5
    assert all(len(cell.losses) + cell.diverged == 3 for cell in cells)
    gap, spread = distribution_gap(cells)
    assert 3 * gap <= spread, (gap, spread)
    # diverged runs are counted, never averaged in: ReLU ×10 explodes for every seed
    for cell in cells:
        if cell.activation == "relu" and cell.scale == 10:
            assert cell.diverged == 3 and cell.losses == [] and math.isnan(cell.mean)
            assert not cell.clean
