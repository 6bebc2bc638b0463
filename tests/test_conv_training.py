# pytest tests/test_conv_training.py
"""The models past the MLP in training runs: ``model=cnn`` on MNIST-1D's signals (Conv1d) and
the digits' images (Conv2d), ``model=resmlp``, ``model.norm``/``model.dropout``; checkpoints
and resume carry every new layer (BatchNorm's running statistics too), the gradient-flow
statistics see the convolutions, and the gradient audit judges them all (convolutions, skips,
norms, dropout) without alarm and catches a bug planted mid-run in a residual network."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from audit_runs import PLANT_STEP, PlantAt, train_audited
from planted import PLANTS

from neuronlab import functional
from neuronlab.config import ConfigError, compose
from neuronlab.data import load_dataset
from neuronlab.gradcheck.conv_terms import TermsNotCovered, network_gradient_terms
from neuronlab.modules import ModelConfig
from neuronlab.modules.cnn import CNN
from neuronlab.training.run import train

FAST = ["trainer.max_epochs=2", "callbacks.progress_bar=null", "torch_threads=1"]
SMALL_MNIST1D = ["data=mnist1d", "data.n_samples=600"]
CONV_OPS = ("conv1d", "conv2d")


def run(tmp_path: Path, *overrides: str) -> dict:
    return train(compose([*FAST, *overrides], output_dir=tmp_path))


def _backprop() -> str:
    """manual once neuronlab's convolutions exist (branch ops), else autograd."""
    return "manual" if all(hasattr(functional, op) for op in CONV_OPS) else "autograd"


def test_data_sets_give_conv_models_their_layout():
    assert load_dataset("digits").layout == (1, 8, 8)
    assert load_dataset("mnist1d", n_samples=20).layout == (1, 40)
    assert load_dataset("moons").layout is None


@pytest.mark.parametrize("data,conv,n_params", [
    (SMALL_MNIST1D, "Conv1d", 5210), (["data=digits"], "Conv2d", 12210)])
def test_cnn_trains_on_signals_and_images(tmp_path, data, conv, n_params):
    record = run(tmp_path, *data, "model=cnn", f"model.backprop={_backprop()}",
                 "optimizer=adam", "optimizer.lr=0.01", "trainer.max_epochs=8")
    assert record["status"] == "ok", record.get("message")
    net = record["task"].net
    assert isinstance(net, CNN) and type(net.layers[0]).__name__ == conv
    assert sum(p.numel() for p in net.parameters()) == n_params
    assert record["metrics"]["test/acc"] > 0.25  # ten classes: chance is 0.1


@pytest.mark.parametrize("overrides", [
    ["model=cnn", "model.norm=batch", "model.dropout=0.2"],
    ["model=cnn", "model.norm=layer"],
    ["model=resmlp", "model.norm=batch"],
    ["model=mlp", "model.norm=layer", "model.dropout=0.1"],
    ["model=cnn", "model.pool=max", "model.dropout=0.3"],
    ["model=embedmlp", "data=digits", "data.n_samples=600", "data.standardize=false",
     "model.dropout=0.2"],
])
@pytest.mark.slow  # six 2+2 vs 4 epoch runs (~5 s)
def test_resume_carries_every_new_layer(tmp_path, overrides):
    """Two epochs, then two more from the checkpoint: the weights and BatchNorm's running
    statistics end where four epochs in one go end, bit for bit — with dropout too (the
    checkpoint carries torch's generator state, so the resumed run draws the same masks)."""
    data = [] if "data=digits" in overrides else SMALL_MNIST1D
    common = [*data, *overrides, "model.backprop=autograd",
              "callbacks.model_checkpoint.save_top_k=-1"]
    full = run(tmp_path / "full", *common, "trainer.max_epochs=4")
    run(tmp_path / "part", *common, "trainer.max_epochs=2")
    ckpt = tmp_path / "part" / "checkpoints" / "best-epoch001.ckpt"
    resumed = run(tmp_path / "resumed", *common, "trainer.max_epochs=4", f"ckpt_path={ckpt}")
    assert resumed["status"] == "ok" and resumed["steps"] == full["steps"]
    # the epoch-3 checkpoints (the runs' tasks hold the weights they tested: the best epoch,
    # which a resumed run chooses among its own epochs only)
    a, b = ({k: v for k, v in torch.load(folder / "checkpoints" / "best-epoch003.ckpt",
                                         weights_only=True)["state_dict"].items()}
            for folder in (tmp_path / "full", tmp_path / "resumed"))
    assert a.keys() == b.keys()
    if "batch" in str(overrides):
        assert any(k.endswith("running_var") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["hyper_parameters"]["layout"] == ([1, 8, 8] if data == [] else [1, 40])


@pytest.mark.parametrize("norm", ["null", "batch"])
def test_gradient_flow_sees_the_convolutions(tmp_path, norm):
    """Each convolution's statistics, with or without a norm between it and its ReLU (the
    activation statistics are then taken after the norm)."""
    record = run(tmp_path, *SMALL_MNIST1D, "model=cnn", "model.backprop=autograd",
                 f"model.norm={norm}", "callbacks.gradient_flow.every_n_steps=5")
    assert record["status"] == "ok"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "tb").rglob("events.*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for i in range(4):  # three convolutions and the linear layer
        assert {f"flow/layer{i}/grad_norm", f"flow/layer{i}/update_ratio"} <= tags, tags
    for i in range(3):  # ReLU after each convolution
        assert {f"flow/layer{i}/dead", f"flow/layer{i}/act_mean"} <= tags, tags
        dead = [e.value for e in events.Scalars(f"flow/layer{i}/dead")]
        assert all(0 <= d <= 1 for d in dead)
        if norm == "batch":  # a batch-normed channel is positive somewhere: never dead
            assert max(dead) == 0, dead


def test_audit_judges_a_residual_network_without_alarm(tmp_path):
    record, audit = train_audited(tmp_path, "model=resmlp", "model.hidden=[16,16,16]",
                                  "trainer.max_steps=200", "trainer.max_epochs=200")
    assert record["status"] == "ok", record.get("message")
    assert audit.audits >= 20 and audit.not_covered is None
    assert 0 < audit.worst_seen < 0.5, audit.last
    assert set(audit.last) == {f"layers.{i}.{p}" for i in range(4) for p in ("weight", "bias")}


def test_audit_catches_a_bug_planted_in_a_residual_network(tmp_path, monkeypatch):
    plant = PLANTS["linear_grad_weight_transposed"] if "linear_grad_weight_transposed" in \
        PLANTS else next(p for p in PLANTS.values() if p.op == "linear")
    plant_at = PlantAt(PLANT_STEP, plant, monkeypatch)
    record, audit = train_audited(tmp_path, "model=resmlp", "model.hidden=[16,16,16]",
                                  "trainer.max_steps=300", "trainer.max_epochs=300",
                                  extra_callbacks=[plant_at])
    assert record["status"] == "failed", record.get("message")
    m = re.search(r"gradient audit failed at step (\d+)", record["message"])
    assert m and int(m.group(1)) == PLANT_STEP, record["message"]


@pytest.mark.parametrize("overrides", [
    ["model=resmlp", "model.hidden=[16,16]", "model.norm=batch"],
    ["model=cnn", "model.norm=layer", "data=mnist1d", "data.n_samples=600"],
    ["model=cnn", "model.norm=batch", "model.dropout=0.2", "data=mnist1d", "data.n_samples=600"],
])
def test_audit_judges_normalized_networks_without_alarm(tmp_path, overrides):
    """The bound sizes batch and layer norm too; the audit's extra passes leave the running
    statistics as the step left them."""
    record, audit = train_audited(tmp_path, *overrides, "trainer.max_steps=100",
                                  "trainer.max_epochs=100")
    assert record["status"] == "ok", record.get("message")
    assert audit.not_covered is None and audit.audits == 10
    assert any(name.startswith("norms.") for name in audit.last)
    assert audit.worst_seen < 0.5, audit.last


def test_audit_leaves_the_running_statistics_to_the_step(tmp_path):
    """An audit every step or only at step 0: the same running statistics at the end."""
    common = ["model=resmlp", "model.hidden=[16,16]", "model.norm=batch",
              "trainer.max_steps=20", "trainer.max_epochs=20"]
    audited, _ = train_audited(tmp_path / "a", *common, every=1)
    plain, _ = train_audited(tmp_path / "b", *common, every=1000)  # step 0 only
    a, b = audited["task"].net.state_dict(), plain["task"].net.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_a_network_the_bound_does_not_size_is_refused_by_name():
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    with pytest.raises(TermsNotCovered, match="no rounding bound for a Sequential"):
        network_gradient_terms(net, torch.randn(3, 4), torch.tensor([0, 1, 0]), "cross_entropy")


@pytest.mark.parametrize("override,message", [
    ("model.norm=group", "model.norm='group' is not one of: batch, layer"),
    ("model.dropout=1.0", "model.dropout=1.0 must be a number in [0, 1)"),
    ("model.fused=true", "model.fused=True is only used with model.kind=mlp or neuron"),
])
def test_bad_model_keys_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_mapping({"kind": "cnn", "hidden": [4], override.split("=")[0]
                                  .removeprefix("model."): _value(override)})
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="must repeat one width"):
        ModelConfig(kind="resmlp", hidden=[8, 4])
    with pytest.raises(ConfigError, match="model.fused=True is not used with model.norm"):
        ModelConfig(kind="mlp", norm="layer", fused=True)


def _value(override: str):
    raw = override.split("=", 1)[1]
    return {"true": True}.get(raw, float(raw) if raw[0].isdigit() else raw)


@pytest.mark.slow
def test_mnist1d_cnn_reaches_92_percent_with_the_hand_written_backward(tmp_path):
    """``experiment=mnist1d_cnn``: 6,000 Adam steps, ~1 min on one CPU thread per run. The
    hand-written backward reaches the paper's range (≥ 92 %), autograd lands within noise."""
    if not all(hasattr(functional, op) for op in CONV_OPS):
        pytest.skip("neuronlab.functional.conv1d not in this build yet (branch ops)")
    acc = {}
    for backprop in ("manual", "autograd"):
        record = train(compose(["experiment=mnist1d_cnn", f"model.backprop={backprop}"],
                               output_dir=tmp_path / backprop))
        assert record["status"] == "ok", record.get("message")
        assert record["steps"] == 6000
        acc[backprop] = record["metrics"]["test/acc"]
    assert acc["manual"] >= 0.92, acc
    assert abs(acc["manual"] - acc["autograd"]) <= 0.02, acc  # 1,000 test signals: ±0.8 % σ


@pytest.mark.slow
def test_bench_times_the_cnn_step(tmp_path):
    """``scripts/bench.py --quick --only cnn``: manual and autograd step times (no threshold:
    a shared machine is too noisy), their ratio per mode."""
    import json
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, str(script), "--quick", "--only", "cnn", "--out",
                           str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(out.read_text())["cnn"]
    assert {"manual/eager", "network/eager", "autograd/eager"} <= set(r["time_s"])
    assert all(0 < t < 10 for t in r["time_s"].values())
    assert 0 < r["manual_over_autograd"]["eager"] < 10
    assert 0 < r["network_over_autograd"]["eager"] < 10
    assert set(r["time_s"]) | set(r["fallbacks"]) >= {"manual/compiled", "autograd/compiled"}


@pytest.mark.parametrize("mapping,message", [
    ({"kind": "cnn", "hidden": [4], "pool": "min"}, "model.pool='min' is not one of: avg, max"),
    ({"kind": "mlp", "pool": "max"}, "model.pool='max' is only used with model.kind=cnn"),
    ({"kind": "embedmlp", "hidden": [4]}, "model.vocab=None must be an integer ≥ 1"),
    ({"kind": "embedmlp", "hidden": [4], "vocab": 5, "padding_idx": 5},
     "model.padding_idx=5 must be null or a token in [0, 5)"),
    ({"kind": "embedmlp", "hidden": [4], "vocab": 5, "embedding_dim": 0},
     "model.embedding_dim=0 must be an integer ≥ 1"),
    ({"kind": "mlp", "vocab": 17}, "are only used with model.kind=embedmlp"),
    ({"kind": "embedmlp", "hidden": [], "vocab": 5}, "must list at least one size"),
])
def test_pool_and_embedding_keys_are_checked(mapping, message):
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_mapping(mapping)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_pooled_cnn_and_embedding_mlp_train(tmp_path):
    """Max pooling on the signals, average pooling on the 8×8 images (two convolutions: three
    would pool the image away, which is refused by name), and the digits' levels as tokens."""
    pooled = run(tmp_path / "max", *SMALL_MNIST1D, "model=cnn", "model.pool=max")
    assert pooled["status"] == "ok" and len(pooled["task"].net.pools) == 3
    images = run(tmp_path / "avg", "data=digits", "model=cnn", "model.pool=avg",
                 "model.hidden=[8,8]")
    assert images["status"] == "ok"
    with pytest.raises(ConfigError, match=r"too small .* avg pooling: use fewer convolutions"):
        run(tmp_path / "small", "data=digits", "model=cnn", "model.pool=avg")
    tokens = run(tmp_path / "tok", "experiment=digits_embed", "trainer.max_epochs=2")
    assert tokens["status"] == "ok" and tokens["metrics"]["test/acc"] > 0.5, tokens["metrics"]
    emb = tokens["task"].net.embedding
    assert emb.weight.shape == (17, 4) and emb.weight[0].abs().max() == 0  # padding stays 0


def test_embedding_mlp_refuses_features_that_are_not_tokens(tmp_path):
    with pytest.raises(ConfigError, match=r"not integers \(standardized\? set "
                                          r"data.standardize=false\)"):
        run(tmp_path / "a", "data=digits", "model=embedmlp")
    with pytest.raises(ConfigError, match=r"tokens run from 0 to 16, outside \[0, model.vocab="
                                          r"8\); set model.vocab to at least 17"):
        run(tmp_path / "b", "experiment=digits_embed", "model.vocab=8")


def test_a_batch_norm_batch_of_one_row_is_refused_before_training(tmp_path):
    """1,257 training digits in batches of 4 leave a last batch of 1 row, whose batch variance
    is 0/0: refused by name before the first step (a conv's channel spans positions: no)."""
    with pytest.raises(ConfigError, match=r"model.norm=batch needs ≥ 2 rows in every training "
                                          r"batch: data.batch_size=4 on 1257 training rows "
                                          r"leaves a batch of 1; pick one that does not "
                                          r"\(e.g. 5\)"):
        run(tmp_path / "a", "data=digits", "model=mlp", "model.norm=batch",
            "data.batch_size=4")
    ok = run(tmp_path / "b", "data=digits", "model=cnn", "model.hidden=[4]", "model.norm=batch",
             "data.batch_size=4", "trainer.max_epochs=1")
    assert ok["status"] == "ok"
