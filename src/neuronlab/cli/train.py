"""``neuronlab-train``: Hydra parses, ``neuronlab.training.run.train`` does the work."""

from __future__ import annotations

import difflib
import os
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig

from ..paths import config_dir

EXIT_CONFIG = 2


def _fail(message: str) -> None:
    print(f"neuronlab-train: error: {message}", file=sys.stderr)
    sys.exit(EXIT_CONFIG)


def _group_options(group: str) -> list[str]:
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def preflight(argv: list[str]) -> None:
    """Check ``group=option`` overrides before Hydra does, for a one-line error."""
    groups = {p.name for p in config_dir().iterdir() if p.is_dir()} - {"hydra"}
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if key not in groups or value in ("null", ""):
            continue
        options = _group_options(key)
        for choice in value.split(","):  # a multirun sweep: data=moons,circles
            if choice not in options:
                close = difflib.get_close_matches(choice, options, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                _fail(f"{key}={choice!r} is not one of: {', '.join(options)}{hint}")


def _remove_if_unused(run_dir: Path) -> None:
    """Drop a run folder that Hydra made but no run used (only .hydra/ and logs in it)."""
    if not run_dir.is_dir():
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


def _report(record: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if record.get("skipped"):
        console.print(f"[yellow]already finished, skipped:[/] {record['run_dir']}")
    status = record["status"]
    m = record.get("metrics", {})
    if status != "ok":
        console.print(f"[bold red]{status}[/]: {record.get('message')}")
    if "test/acc" in m:
        console.print(
            f"test accuracy: [bold]{m['test/acc']:.4f}[/]   test loss: {m['test/loss']:.4f}"
            f"   ({record['steps']} steps, {record['seconds']:.1f} s)"
        )
    weights = record.get("feature_weights")
    if weights:
        from ..explain import read_weights

        table = Table(title="what the neuron learned: one weight per feature")
        for col in ("feature", "weight", "reading"):
            table.add_column(col, justify="right" if col == "weight" else "left")
        for name, w, reading in read_weights(weights):
            table.add_row(name, f"{w:+.3f}", reading)
        console.print(table)
    run_dir = record["run_dir"]
    if not os.path.relpath(run_dir).startswith(".."):
        run_dir = os.path.relpath(run_dir)
    print(f"run folder: {run_dir}  (resolved config, metrics.json, checkpoints/, tb/)")
    print(f"TensorBoard: tensorboard --logdir {run_dir}")


def quiet_lightning() -> None:
    """Lightning's info lines (accelerator, tips) go to the run's log file, not the console."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                logger.removeHandler(handler)
        logger.propagate = True
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def main() -> None:
    preflight(sys.argv[1:])
    import hydra

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
    def _main(cfg: DictConfig) -> float | None:
        from ..config import ConfigError

        quiet_lightning()
        from ..training.run import train

        run_dir = Path(cfg.paths.output_dir)
        try:
            record = train(cfg)
        except ConfigError as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            _remove_if_unused(run_dir)
            _fail(str(e))
        if record.get("trainer") is None or record["trainer"].is_global_zero:
            _report(record)
        if record["status"] == "failed":
            sys.exit(1)
        return record.get("metrics", {}).get("val/loss")

    _main()


if __name__ == "__main__":
    main()
