"""Check every user-facing config value before any work starts.

Each problem is a :class:`ConfigError` whose message names the key, the value given and
what is allowed, e.g. ``init.scheme='xavir' is not one of: fixed, kaiming, lecun, xavier,
zeros (did you mean 'xavier'?)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch

from .errors import ConfigError, unknown_choice
from .functional import ACTIVATIONS, BACKPROP_MODES, LOSSES
from .init import DISTRIBUTIONS, INIT_SCHEMES
from .modules import MODELS
from .optim import OPTIMIZERS, SCHEDULERS

PRECISIONS = ("32", "32-true", "64", "64-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true")
ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
NEURON_LOSSES = ("bce", "mse")  # one output: cross_entropy needs one output per class
TEST_CHECKPOINTS = ("best", "last")
GROUPS = ("data", "model", "init", "optimizer", "scheduler", "trainer")




def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _need(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r} {allowed}")


def _choice(key: str, value: Any, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(str(unknown_choice(key, value, allowed)))


def _bool(key: str, value: Any, null_ok: bool = False) -> None:
    ok = isinstance(value, bool) or (null_ok and value is None)
    _need(ok, key, value, "must be true or false" + (" (or null)" if null_ok else ""))


def _check_model(m: Mapping) -> None:
    _choice("model.kind", m.get("kind"), MODELS)
    hidden = m.get("hidden") or []
    _need(isinstance(hidden, list | tuple), "model.hidden", hidden, "must be a list of sizes")
    for i, h in enumerate(hidden):
        _need(_is_int(h) and h >= 1, f"model.hidden[{i}]", h, "must be an integer ≥ 1")
    _choice("model.activation", m.get("activation"), ACTIVATIONS)
    if m.get("output_activation") is not None:
        _choice("model.output_activation", m.get("output_activation"), ACTIVATIONS)
    _choice("model.backprop", m.get("backprop"), BACKPROP_MODES)
    _choice("model.loss", m.get("loss"), LOSSES)
    _bool("model.compile", m.get("compile", False))
    if m.get("kind") == "neuron":  # one output: no hidden layers, no softmax over classes
        _need(not hidden, "model.hidden", list(hidden), "must be [] with model.kind=neuron "
              "(one neuron has no hidden layers); use model=mlp for hidden layers")
        _need(m.get("loss") in NEURON_LOSSES, "model.loss", m.get("loss"),
              f"does not fit model.kind=neuron (one output); use one of: "
              f"{', '.join(NEURON_LOSSES)}, or model=mlp")
        _need(m.get("output_activation") is None, "model.output_activation",
              m.get("output_activation"), "is only used with model.kind=mlp; leave it null")


def _check_init(i: Mapping) -> None:
    _choice("init.distribution", i.get("distribution"), DISTRIBUTIONS)
    _choice("init.scheme", i.get("scheme"), INIT_SCHEMES)
    scale = i.get("scale", 1.0)
    _need(_is_num(scale) and scale > 0, "init.scale", scale, "must be a number > 0")
    std = i.get("std")
    if i.get("scheme") == "fixed":
        _need(_is_num(std) and std > 0, "init.std", std, "must be a number > 0 with scheme=fixed")
    else:
        _need(std is None, "init.std", std, f"is only used with init.scheme=fixed, not "
              f"{i.get('scheme')!r}; leave it null")
    gain = i.get("gain")
    _need(gain is None or (_is_num(gain) and gain > 0), "init.gain", gain,
          "must be null or a number > 0")


def _check_optimizer(o: Mapping) -> None:
    _choice("optimizer.name", o.get("name"), OPTIMIZERS)
    lr = o.get("lr")
    _need(_is_num(lr) and lr > 0, "optimizer.lr", lr, "must be a number > 0")
    mom = o.get("momentum", 0.0) or 0.0
    _need(_is_num(mom) and 0 <= mom < 1, "optimizer.momentum", mom, "must be in [0, 1)")
    wd = o.get("weight_decay", 0.0) or 0.0
    _need(_is_num(wd) and wd >= 0, "optimizer.weight_decay", wd, "must be a number ≥ 0")
    if "betas" in o:
        b = o.get("betas")
        ok = isinstance(b, list | tuple) and len(b) == 2
        ok = ok and all(_is_num(x) and 0 <= x < 1 for x in b)
        _need(ok, "optimizer.betas", b, "must be two numbers in [0, 1)")


def _check_scheduler(s: Mapping) -> None:
    _choice("scheduler.name", s.get("name"), SCHEDULERS)
    for key, lo in (("step_size", 1), ("warmup_steps", 0)):
        if key in s:
            _need(_is_int(s[key]) and s[key] >= lo, f"scheduler.{key}", s[key],
                  f"must be an integer ≥ {lo}")
    if "gamma" in s:
        _need(_is_num(s["gamma"]) and 0 < s["gamma"] <= 1, "scheduler.gamma", s["gamma"],
              "must be in (0, 1]")
    if "min_lr_ratio" in s:
        _need(_is_num(s["min_lr_ratio"]) and 0 <= s["min_lr_ratio"] <= 1, "scheduler.min_lr_ratio",
              s["min_lr_ratio"], "must be in [0, 1]")


def _check_data(d: Mapping) -> None:
    from .data import check_dataset_args

    n, noise = d.get("n_samples"), d.get("noise")
    _need(n is None or _is_int(n), "data.n_samples", n, "must be null (the default) or an "
          "integer ≥ 1")
    _need(noise is None or _is_num(noise), "data.noise", noise, "must be null (the default) or "
          "a number ≥ 0")
    try:
        check_dataset_args(d.get("name"), n, noise)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    bs = d.get("batch_size")
    _need(bs is None or (_is_int(bs) and bs >= 1), "data.batch_size", bs,
          "must be null (full batch) or an integer ≥ 1")
    for key in ("val_fraction", "test_fraction"):
        v = d.get(key, 0.0)
        _need(_is_num(v) and 0 <= v < 1, f"data.{key}", v, "must be in [0, 1)")
    total = d.get("val_fraction", 0.0) + d.get("test_fraction", 0.0)
    _need(total < 1, "data.val_fraction + data.test_fraction", round(total, 6),
          "must be < 1 (the rest is the training split)")
    _bool("data.standardize", d.get("standardize"), null_ok=True)
    _bool("data.device_resident", d.get("device_resident", True))


def _check_trainer(t: Mapping) -> None:
    acc = str(t.get("accelerator", "auto"))
    _choice("trainer.accelerator", acc, ACCELERATORS)
    if acc in ("gpu", "cuda"):
        _need(torch.cuda.is_available(), "trainer.accelerator", acc,
              "needs a CUDA GPU and none is available; use trainer=cpu")
    devices = t.get("devices", 1)
    if devices != "auto":
        _need(_is_int(devices) and devices >= 1, "trainer.devices", devices,
              "must be an integer ≥ 1 or 'auto'")
        if acc in ("gpu", "cuda"):
            n = torch.cuda.device_count()
            _need(devices <= n, "trainer.devices", devices, f"exceeds the {n} GPU(s) available")
        elif acc == "cpu" and devices > (os.cpu_count() or 1) * 4:
            raise ConfigError(f"trainer.devices={devices} is far more than this machine's "
                              f"{os.cpu_count()} CPU cores")
    prec = str(t.get("precision", "32"))
    _choice("trainer.precision", prec, PRECISIONS)
    if acc == "cpu" and prec == "16-mixed":
        raise ConfigError("trainer.precision='16-mixed' needs a GPU; on CPU use 32 or bf16-mixed")
    for key in ("max_epochs", "log_every_n_steps"):
        v = t.get(key)
        if v is not None:
            _need(_is_int(v) and (v >= 1 or (key == "max_epochs" and v == -1)), f"trainer.{key}",
                  v, "must be an integer ≥ 1")
    ms = t.get("max_steps", -1)
    _need(_is_int(ms) and (ms == -1 or ms >= 1), "trainer.max_steps", ms, "must be -1 or ≥ 1")
    det = t.get("deterministic", False)
    _need(det in (True, False, None, "warn"), "trainer.deterministic", det,
          "must be true, false or 'warn'")
    for key in ("accumulate_grad_batches", "check_val_every_n_epoch", "num_nodes"):
        if t.get(key) is not None:
            _need(_is_int(t[key]) and t[key] >= 1, f"trainer.{key}", t[key],
                  "must be an integer ≥ 1")
    if t.get("gradient_clip_val") is not None:
        v = t["gradient_clip_val"]
        _need(_is_num(v) and v >= 0, "trainer.gradient_clip_val", v, "must be a number ≥ 0")


def _check_callbacks(c: Mapping) -> None:
    """The keys of the callbacks that ``conf/callbacks/default.yaml`` names."""
    checks = {
        "gradient_audit": {"every_n_steps": (1, int)},
        "gradient_flow": {"every_n_steps": (1, int)},
        "divergence": {"check_every_n_steps": (1, int), "max_loss": (0, float)},
        "model_checkpoint": {"save_top_k": (-1, int)},
    }
    for name, keys in checks.items():
        node = c.get(name)
        if not isinstance(node, Mapping):
            continue
        for key, (lo, kind) in keys.items():
            if key not in node:
                continue
            v = node[key]
            if kind is int:
                _need(_is_int(v) and v >= lo, f"callbacks.{name}.{key}", v,
                      f"must be an integer ≥ {lo}")
            else:
                _need(_is_num(v) and v > lo, f"callbacks.{name}.{key}", v,
                      f"must be a number > {lo}")


def _plain(node: Any) -> Any:
    """A composed ``DictConfig`` as plain dicts and lists, interpolations resolved where they
    can be: ``${hydra:...}`` resolves only inside a Hydra run and is left as written."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not OmegaConf.is_config(node):
        return node
    keys = node.keys() if OmegaConf.is_dict(node) else range(len(node))
    raw = None
    out = {}
    for key in keys:
        try:
            value = node[key]
        except OmegaConfBaseException:
            raw = raw if raw is not None else OmegaConf.to_container(node, resolve=False)
            value = raw[key]
        out[key] = _plain(value)
    return out if OmegaConf.is_dict(node) else list(out.values())


def validate_config(cfg: Mapping) -> None:
    """Raise :class:`ConfigError` for the first bad value in a composed training config
    (a ``DictConfig`` from :func:`compose` or its plain-container form)."""
    cfg = _plain(cfg)
    seed = cfg.get("seed")
    _need(_is_int(seed) and 0 <= seed < 2**32, "seed", seed, "must be an integer in [0, 2**32)")
    for group in GROUPS:
        if not isinstance(cfg.get(group), Mapping):
            raise ConfigError(f"{group}: missing from the config (pick one with {group}=...)")
    _check_data(cfg["data"])
    _check_model(cfg["model"])
    _check_init(cfg["init"])
    _check_optimizer(cfg["optimizer"])
    _check_scheduler(cfg["scheduler"])
    _check_trainer(cfg["trainer"])
    if isinstance(cfg.get("callbacks"), Mapping):
        _check_callbacks(cfg["callbacks"])
    threads = cfg.get("torch_threads")
    _need(threads is None or (_is_int(threads) and threads >= 1), "torch_threads", threads,
          "must be null (auto: 1 thread for small models) or an integer ≥ 1")
    _choice("test_ckpt", cfg.get("test_ckpt", "best"), TEST_CHECKPOINTS)
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and ckpt != "last":
        _need(isinstance(ckpt, str) and os.path.isfile(ckpt), "ckpt_path", ckpt,
              "is not a file; give a checkpoint path, 'last' or null")


def compose(overrides: list[str] | None = None, output_dir: str | os.PathLike | None = None):
    """Compose ``conf/train.yaml`` with ``overrides`` through Hydra's compose API (what tests,
    experiments and notebooks use instead of the command line). ``output_dir`` sets
    ``paths.output_dir`` (the command line takes it from Hydra's run folder)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .paths import config_dir

    overrides = list(overrides or [])
    if output_dir is not None:
        quoted = str(output_dir).replace("\\", "\\\\").replace("'", "\\'")
        overrides.append(f"paths.output_dir='{quoted}'")  # quoted: sweep folders hold = and ,
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)
