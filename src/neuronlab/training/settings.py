"""Check every user-facing config value before any work starts: the rules of the groups
neuronlab does not build itself (data, trainer, callbacks), the top-level keys, and the
dataclass of each group it does (each checks its own values where it is defined).

Each problem is a :class:`ConfigError` whose message names the key, the value given and
what is allowed, e.g. ``init.scheme='xavir' is not one of: fixed, kaiming, lecun, xavier,
zeros (did you mean 'xavier'?)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..data.config import DataConfig
from ..errors import ConfigError, is_int, is_number, require, require_choice
from ..init import InitConfig
from ..modules import ModelConfig
from ..optim import OptimizerConfig, SchedulerConfig

MEANT_MIXED = {"bf16": "bf16-mixed", "bfloat16": "bf16-mixed", "16": "16-mixed",
               "fp16": "16-mixed", "half": "16-mixed"}
PRECISIONS = ("32", "32-true", "64", "64-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true")
ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
TEST_CHECKPOINTS = ("best", "last")
STEP_MODES = ("auto", "eager", "compiled", "graph")
GROUPS = ("data", "model", "init", "optimizer", "scheduler", "trainer")




def _check_trainer(t: Mapping) -> None:
    acc = str(t.get("accelerator", "auto"))
    require_choice("trainer.accelerator", acc, ACCELERATORS)
    if acc in ("gpu", "cuda"):
        require(torch.cuda.is_available(), "trainer.accelerator", acc,
              "needs a CUDA GPU and none is available; use trainer=cpu")
    devices = t.get("devices", 1)
    if devices != "auto":
        require(is_int(devices) and devices >= 1, "trainer.devices", devices,
              "must be an integer ≥ 1 or 'auto'")
        if acc in ("gpu", "cuda"):
            n = torch.cuda.device_count()
            require(devices <= n, "trainer.devices", devices, f"exceeds the {n} GPU(s) available")
        elif acc == "cpu" and devices > (os.cpu_count() or 1) * 4:
            raise ConfigError(f"trainer.devices={devices} is far more than this machine's "
                              f"{os.cpu_count()} CPU cores")
    prec = str(t.get("precision", "32"))
    if prec in MEANT_MIXED:  # difflib would say bf16-true: pure bf16 weights, rarely meant
        raise ConfigError(f"trainer.precision={prec!r} is not one of: {', '.join(PRECISIONS)} "
                          f"(did you mean '{MEANT_MIXED[prec]}'? float32 weights, {prec} "
                          f"matmuls; '{MEANT_MIXED[prec][:-6]}-true' keeps the weights in "
                          f"{prec} too)")
    require_choice("trainer.precision", prec, PRECISIONS)
    if acc == "cpu" and prec == "16-mixed":
        raise ConfigError("trainer.precision='16-mixed' needs a GPU; on CPU use 32 or bf16-mixed")
    for key in ("max_epochs", "log_every_n_steps"):
        v = t.get(key)
        if v is not None:
            require(is_int(v) and (v >= 1 or (key == "max_epochs" and v == -1)), f"trainer.{key}",
                  v, "must be an integer ≥ 1")
    ms = t.get("max_steps", -1)
    require(is_int(ms) and (ms == -1 or ms >= 1), "trainer.max_steps", ms, "must be -1 or ≥ 1")
    det = t.get("deterministic", False)
    require(det in (True, False, None, "warn"), "trainer.deterministic", det,
          "must be true, false or 'warn'")
    for key in ("accumulate_grad_batches", "check_val_every_n_epoch", "num_nodes"):
        if t.get(key) is not None:
            require(is_int(t[key]) and t[key] >= 1, f"trainer.{key}", t[key],
                  "must be an integer ≥ 1")
    if t.get("gradient_clip_val") is not None:
        v = t["gradient_clip_val"]
        require(is_number(v) and v >= 0, "trainer.gradient_clip_val", v, "must be a number ≥ 0")


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
            if key not in node or (key == "check_every_n_steps" and node[key] is None):
                continue  # the divergence check's null: chosen by device
            v = node[key]
            if kind is int:
                require(is_int(v) and v >= lo, f"callbacks.{name}.{key}", v,
                      f"must be an integer ≥ {lo}")
            else:
                require(is_number(v) and v > lo, f"callbacks.{name}.{key}", v,
                      f"must be a number > {lo}")


def plain(node: Any) -> Any:
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
        out[key] = plain(value)
    return out if OmegaConf.is_dict(node) else list(out.values())


@dataclass(frozen=True)
class RunConfig:
    """A composed training config after every check: the groups neuronlab builds from its own
    dataclasses, and the rest (instantiated by Hydra) as plain, checked mappings."""

    seed: int
    model: ModelConfig
    init: InitConfig
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    data: DataConfig
    trainer: dict[str, Any]
    callbacks: dict[str, Any]
    torch_threads: int | None = None
    test_ckpt: str = "best"
    train_step: str = "auto"
    ckpt_path: str | None = None


def validate_config(cfg: Mapping) -> RunConfig:
    """Check a composed training config (a ``DictConfig`` from :func:`compose` or its plain
    form) once, and return it as a :class:`RunConfig`; the first bad value raises
    :class:`ConfigError`, on one line naming the key, the value and what is allowed."""
    cfg = plain(cfg)
    seed = cfg.get("seed")
    require(is_int(seed) and 0 <= seed < 2**32, "seed", seed, "must be an integer in [0, 2**32)")
    for group in GROUPS:
        if not isinstance(cfg.get(group), Mapping):
            raise ConfigError(f"{group}: missing from the config (pick one with {group}=...)")
    groups = {cls.group: cls.from_mapping(cfg[cls.group]) for cls in
              (DataConfig, ModelConfig, InitConfig, OptimizerConfig, SchedulerConfig)}
    _check_trainer(cfg["trainer"])
    callbacks = cfg.get("callbacks") if isinstance(cfg.get("callbacks"), Mapping) else {}
    _check_callbacks(callbacks)
    threads = cfg.get("torch_threads")
    require(threads is None or (is_int(threads) and threads >= 1), "torch_threads", threads,
          "must be null (auto: 1 thread for small models) or an integer ≥ 1")
    require_choice("train_step", cfg.get("train_step", "auto"), STEP_MODES)
    require_choice("test_ckpt", cfg.get("test_ckpt", "best"), TEST_CHECKPOINTS)
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and ckpt != "last":
        require(isinstance(ckpt, str) and os.path.isfile(ckpt), "ckpt_path", ckpt,
              "is not a file; give a checkpoint path, 'last' or null")
    return RunConfig(seed=seed, trainer=dict(cfg["trainer"]),
                     callbacks=dict(callbacks), torch_threads=threads,
                     test_ckpt=cfg.get("test_ckpt", "best"), ckpt_path=ckpt,
                     train_step=resolve_step_mode(cfg.get("train_step", "auto"), groups,
                                                  cfg["trainer"]), **groups)


def resolve_step_mode(mode: str, groups: dict[str, Any], trainer: Mapping) -> str:
    """``train_step`` for this run: ``auto`` is ``graph`` on one CUDA GPU with neuronlab's SGD
    (the whole step captured once and replayed), else ``eager`` (Lightning's own loop). A
    compiled or graphed step needs one device, ``optimizer.name=sgd`` and no gradient
    accumulation or clipping (Lightning does those itself only in its own loop)."""
    accelerator = str(trainer.get("accelerator", "auto"))
    on_gpu = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available())
    blockers = []
    if trainer.get("devices", 1) not in (1, "1") or (trainer.get("num_nodes") or 1) > 1:
        blockers.append("trainer.devices=1")
    if groups["optimizer"].name != "sgd":
        blockers.append("optimizer.name=sgd")
    if (trainer.get("accumulate_grad_batches") or 1) > 1:
        blockers.append("no trainer.accumulate_grad_batches")
    if trainer.get("gradient_clip_val"):
        blockers.append("no trainer.gradient_clip_val")
    if mode == "graph" and not on_gpu:
        blockers.append("a CUDA GPU (trainer=gpu)")
    if mode == "auto":
        return "graph" if on_gpu and not blockers else "eager"
    if mode != "eager" and blockers:
        raise ConfigError(f"train_step={mode!r} needs {', '.join(blockers)}; use "
                          "train_step=eager (or auto)")
    return mode
