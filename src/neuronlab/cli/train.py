"""``neuronlab-train``: Hydra parses, ``neuronlab.training.run.train`` does the work."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig

from ..config.preflight import preflight
from ..paths import ConfigDirError, config_dir
from ..training.run_folder import register_resolvers

# conf/hydra/default.yaml names the .hydra/ folder and the log through these resolvers (no
# writes into a finished run's folder); at import, so a launcher's worker process has them too
register_resolvers()

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130  # the shell's code for a run ended by Ctrl-C (128 + SIGINT)


def _fail(message: str, code: int = EXIT_CONFIG) -> None:
    one_line = " ".join(str(message).split())
    print(f"neuronlab-train: error: {one_line}", file=sys.stderr)
    sys.exit(code)


def _remove_if_unused(run_dir: Path) -> None:
    """Drop a run folder that Hydra made but no run used (only .hydra/ and logs in it)."""
    if not run_dir.is_dir():
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


def _rate(record: dict) -> str:
    """Training samples/s over the run, and over its last epoch (past compile/warm-up)."""
    rate, last = record.get("train_samples_per_s"), record.get("train_samples_per_s_last_epoch")
    if not rate:
        return ""
    out = f"; training {rate:,.0f} samples/s"
    if last and record.get("epochs", 0) > 1 and abs(last - rate) > 0.1 * rate:
        out += f", last epoch {last:,.0f}"
    return out


def _print_last_epoch(console, record: dict) -> None:
    """The last epoch's test numbers, when the tested best checkpoint is of another epoch."""
    last = record.get("last_epoch_test")
    if not last or "test/acc" not in last:
        return
    console.print(f"last epoch ({last['epoch']}): test accuracy {last['test/acc']:.4f}   "
                  f"test loss: {last['test/loss']:.4f}   (test_ckpt=last tests these weights)",
                  soft_wrap=True)


def report(record: dict) -> None:
    """The summary a finished (or stopped) run prints."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if record.get("skipped"):
        console.print(f"[yellow]already finished, skipped:[/] {record['run_dir']}")
    status = record["status"]
    m = record.get("metrics", {})
    if status != "ok":  # plain print: a console would wrap the resume command at its width
        print(f"{status}: {record.get('message')}")
    if "test/acc" in m:
        console.print(
            f"test accuracy: [bold]{m['test/acc']:.4f}[/]   test loss: {m['test/loss']:.4f}"
            f"   ({record['steps']} steps, {record['seconds']:.1f} s{_rate(record)})",
            soft_wrap=True,
        )
        if record.get("resumed_from"):
            console.print(f"resumed from {record['resumed_from']}", soft_wrap=True)
        if record.get("tested_on"):
            console.print(f"tested on {record['tested_on']}", soft_wrap=True)
        _print_last_epoch(console, record)
    if record.get("collapse"):
        from ..training.collapse import collapse_warning

        print(f"warning: {collapse_warning(record['collapse'])}")
    weights = record.get("feature_weights")
    if weights:
        from ..explain import read_weights

        table = Table(title="what the neuron learned: one weight per feature")
        for col in ("feature", "weight", "reading"):
            table.add_column(col, justify="right" if col == "weight" else "left")
        for name, w, reading in read_weights(weights, class_names=record.get("class_names")):
            table.add_row(name, f"{w:+.3f}", reading)
        console.print(table)
    run_dir = record["run_dir"]
    if not os.path.relpath(run_dir).startswith(".."):
        run_dir = os.path.relpath(run_dir)
    kept = [name for name, sub in (("resolved config", ".hydra"), ("metrics.json", "metrics.json"),
                                   ("checkpoints/", "checkpoints"), ("tb/", "tb"))
            if (Path(record["run_dir"]) / sub).exists()]
    print(f"run folder: {run_dir}  ({', '.join(kept)})")
    if "tb/" in kept:
        print(f"TensorBoard: tensorboard --logdir {run_dir}")


def _sweeper_direction() -> str:
    """``hydra.sweeper.direction`` when a sweeper that has one runs this job, else minimize."""
    from hydra.core.hydra_config import HydraConfig

    try:
        direction = HydraConfig.get().sweeper.get("direction", "minimize")
    except ValueError:  # not run by Hydra (a test calling main's body)
        return "minimize"
    return str(direction) if isinstance(direction, str) else "minimize"


def objective(record: dict, metric: str = "val/loss", required: bool = True) -> float | None:
    """What ``neuronlab-train`` returns to a sweeper: the run's final ``metric``; for a run
    that diverged or has no finite value of it, the worst value (+inf when minimizing, −inf
    when maximizing), so a search steers away instead of stopping. A finished run without
    the metric is an error where a search asked for it (``required``: ``optimized_metric``
    set), else ``None`` (a run that validated never, e.g. fewer epochs than
    ``check_val_every_n_epoch``)."""
    import math

    value = record.get("metrics", {}).get(metric)
    if record.get("status") == "ok" and value is not None and math.isfinite(value):
        return float(value)
    if record.get("status") == "ok" and value is None and not required:
        return None
    if record.get("status") == "ok" and value is None:
        known = ", ".join(sorted(record.get("metrics", {})))
        _fail(f"optimized_metric={metric!r} is not among the run's metrics: {known}")
    return -math.inf if _sweeper_direction() == "maximize" else math.inf


def _no_advertising(record) -> bool:
    """Drop Lightning's "💡 Tip: … litlogger" line from the run's log."""
    return "litlogger" not in str(record.getMessage())


def quiet_lightning() -> None:
    """Lightning's info lines (accelerator, tips) go to the run's log file, not the console."""
    import logging
    import warnings

    import lightning.pytorch  # noqa: F401 - it adds its console handlers when imported

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                logger.removeHandler(handler)
        logger.propagate = True
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_no_advertising)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def register_search_plugin() -> None:
    """Make Hydra know neuronlab's resumable Optuna sweeper. Hydra finds plugins by walking the
    ``hydra_plugins`` namespace, which misses a package installed in editable mode
    (``pip install -e``); registering it by hand works for every install."""
    from hydra.core.plugins import Plugins

    try:
        from hydra_plugins.neuronlab_search.resumable_optuna import ResumableOptunaSweeper
    except ImportError:  # without the [sweep] extra the class is not defined
        return
    Plugins.instance().register(ResumableOptunaSweeper)


# conf/hydra/launcher/submitit_slurm.yaml replaces the plugin's defaults under the plugin's own
# name; Hydra 1.3 still merges the two and says the merge is deprecated (harmless: the file is
# complete on its own)
SCHEMA_MATCHING = r"(?s).*validated against ConfigStore schema with the same name"


def main() -> None:
    """``neuronlab-train``; Ctrl-C while it starts (imports, composing the config, making the
    run folder) ends with one line too, not a traceback."""
    try:
        _start()
    except KeyboardInterrupt:
        _fail("interrupted before training started; nothing was run", EXIT_INTERRUPTED)


def _start() -> None:
    import warnings

    warnings.filterwarnings("ignore", message=SCHEMA_MATCHING, category=UserWarning)
    try:
        problem = preflight(sys.argv[1:])
    except ConfigDirError as e:
        problem = str(e)
    if problem:
        _fail(problem)
    if any("hparams_search" in a or "hydra/sweeper" in a for a in sys.argv[1:]):
        register_search_plugin()
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
        except KeyboardInterrupt:  # Ctrl-C before training started: nothing to keep
            _remove_if_unused(run_dir)
            _fail("interrupted before training started", EXIT_INTERRUPTED)
        if record.get("trainer") is None or record["trainer"].is_global_zero:
            report(record)
        if record["status"] == "failed":
            sys.exit(1)
        if record["status"] == "interrupted":  # ends a sweep too: Ctrl-C means stop
            sys.exit(EXIT_INTERRUPTED)
        metric = cfg.get("optimized_metric")
        return objective(record, metric or "val/loss", required=metric is not None)

    _main()


if __name__ == "__main__":
    main()
