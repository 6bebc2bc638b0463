"""``neuronlab-train``: Hydra parses, ``neuronlab.training.run.train`` does the work."""

from __future__ import annotations

import difflib
import os
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig

from ..errors import unknown_choice
from ..paths import ConfigDirError, config_dir

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130  # the shell's code for a run ended by Ctrl-C (128 + SIGINT)


def _fail(message: str, code: int = EXIT_CONFIG) -> None:
    one_line = " ".join(str(message).split())
    print(f"neuronlab-train: error: {one_line}", file=sys.stderr)
    sys.exit(code)


def _group_options(group: str) -> list[str]:
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def _groups() -> set[str]:
    return {p.name for p in config_dir().iterdir() if p.is_dir()} - {"hydra"}


def _top_level_keys() -> list[str]:
    from omegaconf import OmegaConf

    node = OmegaConf.load(config_dir() / "train.yaml")
    return [str(k) for k in node.keys() if k != "defaults"]


def preflight(argv: list[str]) -> None:
    """Check the overrides before Hydra does, for a one-line error: ``group=option`` names,
    then that Hydra can compose them (an unknown key, a syntax error)."""
    groups = _groups()
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
                _fail(str(unknown_choice(key, choice, options)))
    if os.environ.get("HYDRA_FULL_ERROR") != "1":
        problem = compose_problem(argv)
        if problem:
            _fail(problem)


def compose_problem(argv: list[str]) -> str | None:
    """What Hydra would refuse in ``argv``, as one line, or ``None``.

    Composes the config through Hydra's compose API (~0.2 s), each sweep taking its first
    value; with ``-m`` each value of each sweep is then validated too. Command lines with
    other flags than ``-m``/``--multirun`` are left to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    flags = [a for a in argv if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return None
    args = [a for a in argv if not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
        single = []
        for o in overrides:
            if o.is_sweep_override() and not flags:
                return (f"{o.input_line} is a sweep (several values): add -m (--multirun) to "
                        "run one job per value")
            if o.is_sweep_override():
                first = next(iter(o.sweep_string_iterator()), None)
                text = f"{o.get_key_element()}={first}" if first is not None else o.input_line
                single.append(text)
            else:
                single.append(o.input_line)
        from ..config import ConfigError, compose, validate_config

        try:
            validate_config(compose(single))
        except ConfigError as e:
            return str(e)
        if flags:
            return _sweep_problem(overrides, single)
    except OverrideParseException as e:
        detail = " ".join(line for line in e.message.splitlines() if "hydra.cc" not in line)
        return f"{e.override}: cannot parse this override ({detail.strip()})"
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        return _explain_hydra_error(str(e), args)
    return None


MAX_SWEEP_CHECKS = 50  # ~0.2 s each; a larger sweep finds a bad value when its job starts


def _sweep_problem(overrides: list, single: list[str]) -> str | None:
    """Validate each value of each sweep (the other sweeps at their first value), so that a
    bad value stops the sweep before its first job instead of when its own turn comes."""
    from ..config import ConfigError, compose, validate_config

    checks = 0
    for i, o in enumerate(overrides):
        if not o.is_sweep_override():
            continue
        for value in o.sweep_string_iterator():
            checks += 1
            if checks > MAX_SWEEP_CHECKS:
                return None
            variant = [*single[:i], f"{o.get_key_element()}={value}", *single[i + 1:]]
            try:
                validate_config(compose(variant))
            except ConfigError as e:
                return f"{e} (in the sweep {o.input_line}; no job was run)"
    return None


def _explain_hydra_error(text: str, args: list[str]) -> str:
    """Hydra's message, on one line; for an unknown key, the keys its group does have."""
    import re

    lines = [line.strip() for line in text.splitlines() if line.strip()]
    m = re.match(r"Could not override '([^']+)'", lines[0]) if lines else None
    if not m:
        return " ".join(lines) or "Hydra could not compose the config"
    key = m.group(1)
    value = next((a.split("=", 1)[1] for a in args if a.split("=", 1)[0] == key), "")
    parent, _, leaf = key.rpartition(".")
    allowed = ""
    if not parent:  # a top-level name: a group (data=...) or a key (seed=...)
        names = sorted({*_groups(), *_top_level_keys()})
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return (f"{key}={value} is not a config group or key{hint}; groups: "
                f"{', '.join(sorted(_groups()))}. To add a new key on purpose use +{key}={value}")
    try:
        from omegaconf import OmegaConf

        from ..config import compose

        groups_only = [a for a in args if "." not in a.split("=", 1)[0]]
        node = OmegaConf.select(compose(groups_only), parent) if parent else None
        if node is not None and OmegaConf.is_dict(node):
            keys = sorted(str(k) for k in node.keys())
            close = difflib.get_close_matches(leaf, keys, n=1)
            hint = f" (did you mean {parent}.{close[0]}?)" if close else ""
            allowed = f"; {parent} has: {', '.join(keys)}{hint}"
    except Exception:  # noqa: BLE001 - the hint is a courtesy
        pass
    return (f"{key}={value} is not a config key{allowed}. To add a new key on purpose use "
            f"+{key}={value}")


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
    if status != "ok":  # plain print: a console would wrap the resume command at its width
        print(f"{status}: {record.get('message')}")
    if "test/acc" in m:
        console.print(
            f"test accuracy: [bold]{m['test/acc']:.4f}[/]   test loss: {m['test/loss']:.4f}"
            f"   ({record['steps']} steps, {record['seconds']:.1f} s)"
        )
        if record.get("tested_on"):
            console.print(f"tested on {record['tested_on']}", soft_wrap=True)
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
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def main() -> None:
    try:
        preflight(sys.argv[1:])
    except ConfigDirError as e:
        _fail(str(e))
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
            _report(record)
        if record["status"] == "failed":
            sys.exit(1)
        if record["status"] == "interrupted":  # ends a sweep too: Ctrl-C means stop
            sys.exit(EXIT_INTERRUPTED)
        return record.get("metrics", {}).get("val/loss")

    _main()


if __name__ == "__main__":
    main()
