"""Read a sweep folder: one :class:`Run` per run folder, from what the runs left behind.

A run folder is any sub-folder holding ``metrics.json`` (written by ``train``) or ``.hydra/``
(a Hydra job that may not have finished). From it we read:

- ``metrics.json``: status (ok | diverged | failed), steps, final metrics, the config, the
  neuron's ``feature_weights``; no ``metrics.json`` means the run never finished (``unfinished``);
- ``.hydra/overrides.yaml`` (the job's overrides) and ``.hydra/config.yaml`` (its config, for
  runs without ``metrics.json``);
- ``fit_metrics.json`` / ``init.json`` / ``weight_trace.json`` from the experiment callbacks;
- TensorBoard scalars (every tag, every step) through TensorBoard's ``EventAccumulator``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .callbacks import FIT_METRICS_FILE, INIT_FILE, WEIGHT_TRACE_FILE

CONFIG_GROUPS = ("data", "model", "init", "optimizer", "scheduler")  # as metrics.json keeps
Curve = tuple[list[int], list[float]]  # (steps, values)


@dataclass
class Run:
    """What one run folder holds."""

    name: str
    path: Path
    status: str  # ok | diverged | failed | unfinished
    message: str | None = None
    steps: int = 0
    seconds: float | None = None
    overrides: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # flattened config + seed
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, Curve] = field(default_factory=dict)
    feature_weights: dict[str, float] | None = None
    weight_trace: dict[str, Any] | None = None
    init_sha256: str | None = None

    def final(self, key: str) -> float:
        """A final metric, NaN when absent."""
        return float(self.metrics.get(key, math.nan))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` → ``{"optimizer.lr": 0.1}`` (lists kept as values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            flat.update(flatten(v, key))
        else:
            flat[key] = v
    return flat


def read_scalars(run_dir: Path) -> dict[str, Curve]:
    """Every TensorBoard scalar under ``run_dir``: tag → (steps, values)."""
    event_dirs = sorted({p.parent for p in run_dir.rglob("events.out.tfevents*")})
    if not event_dirs:
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, Curve] = {}
    for folder in event_dirs:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 1,
                                                           "tensors": 1, "images": 1})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            events = acc.Scalars(tag)
            steps, values = curves.setdefault(tag, ([], []))
            steps.extend(int(e.step) for e in events)
            values.extend(float(e.value) for e in events)
    return curves


def _hydra_config(run_dir: Path) -> dict[str, Any]:
    """The groups of ``.hydra/config.yaml`` that ``metrics.json`` keeps, resolved, and the seed."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(path)
        out = {g: OmegaConf.to_container(cfg[g], resolve=True) for g in CONFIG_GROUPS if g in cfg}
        out["seed"] = cfg.get("seed")
        return out
    except Exception:  # half-written or unresolvable: the run is reported without it
        return {}


def read_run(run_dir: str | Path) -> Run:
    """Read one run folder (see the module docstring)."""
    run_dir = Path(run_dir)
    record = _read_json(run_dir / "metrics.json") or {}
    overrides = []
    if (run_dir / ".hydra" / "overrides.yaml").is_file():
        from omegaconf import OmegaConf

        overrides = [str(o) for o in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")]
    hydra_config = {} if record.get("config") else _hydra_config(run_dir)
    config = record.get("config") or {g: v for g, v in hydra_config.items() if g in CONFIG_GROUPS}
    params = flatten({g: config.get(g) for g in CONFIG_GROUPS if config.get(g) is not None})
    params = {k: v for k, v in params.items() if not k.split(".")[-1].startswith("_")}
    params["seed"] = record.get("seed", hydra_config.get("seed"))
    for override in overrides:  # an unfinished run without a config still shows its values
        key, _, value = override.lstrip("+~").partition("=")
        if params.get(key) is None and value:
            params[key] = _parse(value)
    curves = read_scalars(run_dir)
    metrics = {tag: values[-1] for tag, (_, values) in curves.items() if values}
    metrics.update(_read_json(run_dir / FIT_METRICS_FILE) or {})
    metrics.update(record.get("metrics") or {})
    init = _read_json(run_dir / INIT_FILE) or {}
    return Run(
        name=run_dir.name, path=run_dir, status=record.get("status", "unfinished"),
        message=record.get("message"), steps=int(record.get("steps", 0)),
        seconds=record.get("seconds"), overrides=overrides, params=params, metrics=metrics,
        curves=curves, feature_weights=record.get("feature_weights"),
        weight_trace=_read_json(run_dir / WEIGHT_TRACE_FILE), init_sha256=init.get("sha256"),
    )


def _sort_key(value: Any) -> tuple:
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    if isinstance(value, int | float):
        return (0, float(value))
    return (1, str(value))


def _parse(value: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def swept_keys(runs: list[Run]) -> list[str]:
    """The parameters whose value differs between the runs that know it, in config order."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.params if k not in keys]
    known = {k: {repr(r.params[k]) for r in runs if r.params.get(k) is not None} for k in keys}
    return [k for k in keys if len(known[k]) > 1]


def read_sweep(sweep_dir: str | Path) -> list[Run]:
    """Every run under ``sweep_dir`` (or ``sweep_dir`` itself if it is one run), sorted by
    the swept parameters."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep folder at {sweep_dir}")
    folders = sorted({p.parent for p in sweep_dir.rglob("metrics.json")}
                     | {p.parent for p in sweep_dir.rglob(".hydra") if p.is_dir()})
    runs = [read_run(f) for f in folders]
    keys = swept_keys(runs)
    return sorted(runs, key=lambda r: [_sort_key(r.params.get(k)) for k in keys])
