"""The preflight's checks for sweeps that outgrow one process: a launcher or sweeper whose
Hydra plugin is missing (one line naming the ``sweep`` extra), and the ends of an
``hparams_search`` range validated like a run's values."""

from __future__ import annotations

from ..errors import ConfigError, unknown_choice
from ..paths import config_dir

SWEEP_EXTRA = 'pip install "neuronlab[sweep]" (from a checkout: pip install -e ".[sweep]")'
# Hydra's plugins behind the sweep options: (group, option or None for any) → (module, name)
PLUGINS = {
    ("hydra/launcher", "joblib"): ("hydra_joblib_launcher", "hydra-joblib-launcher"),
    ("hydra/launcher", "submitit_local"): ("hydra_submitit_launcher", "hydra-submitit-launcher"),
    ("hydra/launcher", "submitit_slurm"): ("hydra_submitit_launcher", "hydra-submitit-launcher"),
    ("hydra/sweeper", "optuna"): ("hydra_optuna_sweeper", "hydra-optuna-sweeper"),
    ("hparams_search", None): ("hydra_optuna_sweeper", "hydra-optuna-sweeper"),
}
BUILT_IN = {"hydra/launcher": ["basic"], "hydra/sweeper": ["basic"]}


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(f"hydra_plugins.{name}") is not None
    except (ImportError, ValueError):
        return False


def plugin_problem(argv: list[str]) -> str | None:
    """A launcher or sweeper option whose Hydra plugin is not installed (or is unknown), as one
    line naming the extra that installs it; ``None`` when all are there."""
    for arg in argv:
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if key not in BUILT_IN and key != "hparams_search":
            continue
        if not value or value == "null":
            continue
        if key in BUILT_IN:
            local = sorted(p.stem for p in (config_dir() / key).glob("*.yaml"))
            options = sorted({*BUILT_IN[key], *local,
                              *(o for (g, o) in PLUGINS if g == key and o)})
            if value not in options:
                return str(unknown_choice(key, value, options))
        found = PLUGINS.get((key, value)) or PLUGINS.get((key, None))
        if found is None:
            continue
        module, package = found
        if not _has_module(module):
            return (f"{key}={value} needs Hydra's {package} plugin, which is not installed: "
                    f"{SWEEP_EXTRA}")
        if module == "hydra_optuna_sweeper":
            problem = _optuna_storage_problem(f"{key}={value}")
            if problem:
                return problem
    return None


def _optuna_storage_problem(option: str) -> str | None:
    """optuna 2.10 (what hydra-optuna-sweeper allows) stores studies with SQLAlchemy 1.4."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("sqlalchemy")
    except PackageNotFoundError:
        return f"{option} needs SQLAlchemy<2 for its study (optuna 2.10): {SWEEP_EXTRA}"
    if int(found.split(".")[0]) >= 2:
        return (f"{option} stores its study with optuna 2.10, which needs SQLAlchemy<2 (found "
                f"{found}): {SWEEP_EXTRA}")
    return None


SEARCH_PARAMS = "hydra.sweeper.params."


def search_name(args: list[str]) -> str | None:
    """The ``hparams_search=<name>`` chosen in ``args``, or ``None``."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") == "hparams_search" and value not in ("", "null"):
            return value
    return None


def search_space_problem(single: list[str], ranges: list[str] = ()) -> str | None:
    """Each end of each range an ``hparams_search`` config searches (``interval(a, b)``,
    ``choice(…)``, ``range(…)`` in ``hydra.sweeper.params``, also when given on the command
    line), validated like a run's values: a bad bound stops the search before its first trial."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from omegaconf import OmegaConf

    from ..training.settings import validate_config
    from .compose import compose

    search = search_name(single)
    if search is None:
        return None
    node = OmegaConf.load(config_dir() / "hparams_search" / f"{search}.yaml")
    params = {str(k): str(v) for k, v in
              (OmegaConf.select(node, "hydra.sweeper.params") or {}).items()}
    for arg in ranges:
        key, _, value = arg.partition("=")
        params[key.lstrip("+~")[len(SEARCH_PARAMS):]] = value
    parser = OverridesParser.create()
    for key, text in params.items():
        (override,) = parser.parse_overrides([f"{key}={text}"])
        sweep = override.value()
        if isinstance(sweep, IntervalSweep):
            ends = [sweep.start, sweep.end]
        elif isinstance(sweep, ChoiceSweep | RangeSweep):
            ends = list(override.sweep_iterator())
        else:
            ends = [override.value()]
        for value in ends:
            try:
                validate_config(compose([*single, f"{key}={value}"]))
            except ConfigError as e:
                return f"{e} (in the search space {key}: {text}; no trial was run)"
    return None
