# pytest tests/test_norm_init.py   (the claim itself: -m slow, ~1-5 min on 2 shared cores)
"""Normalization vs init scale (``experiments/norm_init.py``): the band of scales at which a
deep plain MLP trains is wider with batch norm and with layer norm than without."""

from __future__ import annotations

import math

import pytest

from neuronlab.experiments.norm_init import (
    NormRun,
    band,
    band_width,
    plot_norm_init,
    run_grid,
    summary,
    train_one,
)


def test_a_run_reports_its_loss_or_its_divergence():
    ok = train_one(None, 1.0, 0, depth=3, width=8, steps=5)
    assert not ok.diverged and 0 < ok.final_loss < 2
    blown = train_one(None, 100.0, 0, depth=10, width=16, steps=5)
    assert blown.diverged and math.isnan(blown.final_loss) and not blown.trained


def test_band_and_summary_read_the_grid(tmp_path):
    runs = [NormRun(None, s, seed, loss, div) for s, seed, loss, div in [
        (0.1, 0, 0.69, False), (1.0, 0, 0.2, False), (1.0, 1, 0.3, False),
        (10.0, 0, math.nan, True), (0.1, 1, 0.1, False)]]
    runs += [NormRun("batch", s, 0, 0.1, False) for s in (0.1, 1.0, 10.0)]
    assert band(runs, None) == (1.0, 1.0) and band_width(runs, None) == 0
    assert band(runs, "batch") == (0.1, 10.0)
    assert band_width(runs, "layer") == -math.inf
    s = summary(runs)
    assert s["None"]["cells"][10.0]["diverged"] == 1 and not s["None"]["cells"][0.1]["trained"]
    plot_norm_init(runs, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


@pytest.mark.slow
def test_normalization_widens_the_band_of_scales_that_train():
    runs = run_grid(scales=(0.1, 0.3, 1.0, 3.0, 10.0), seeds=(0, 1), steps=200,
                    backprop="manual")
    none, batch, layer = (band_width(runs, n) for n in (None, "batch", "layer"))
    assert none <= math.log2(3.0)  # at most ×1 … ×3 without a norm
    assert batch >= none + 3 and layer >= none + 1.5, (none, batch, layer)
    assert any(r.diverged for r in runs if r.norm is None and r.scale >= 3)
    assert not any(r.diverged for r in runs if r.norm == "batch")
