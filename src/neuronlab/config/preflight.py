"""The command line's checks before anything heavy is imported: option names, Hydra's
composition and every value, each problem as one line."""

from __future__ import annotations

import difflib
import os

from ..errors import ConfigError, unknown_choice
from ..paths import config_dir
from .sweeps import SEARCH_PARAMS, plugin_problem, search_name, search_space_problem


def _group_options(group: str) -> list[str]:
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def _groups() -> set[str]:
    return {p.name for p in config_dir().iterdir() if p.is_dir()} - {"hydra"}


def _top_level_keys() -> list[str]:
    from omegaconf import OmegaConf

    node = OmegaConf.load(config_dir() / "train.yaml")
    return [str(k) for k in node.keys() if k != "defaults"]


def preflight(argv: list[str]) -> str | None:
    """What is wrong with a command line's overrides, as one line, or ``None``: each
    ``group=option`` name, then Hydra's composition (an unknown key, a syntax error), then
    every value (:func:`~neuronlab.config.validate_config`). Imports neither Lightning nor
    the training code, so a typo is reported in about a second."""
    problem = plugin_problem(argv)
    if problem:
        return problem
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
                return str(unknown_choice(key, choice, options))
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return None
    return compose_problem(argv)


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
    searching = search_name(args) is not None
    # a search's ranges (hydra.sweeper.params.*, and sweeps given on its command line) go to
    # the sweeper, not into one run's config: search_space_problem checks their ends
    ranges = [a for a in args if a.split("=", 1)[0].lstrip("+~").startswith(SEARCH_PARAMS)]
    args = [a for a in args if a not in ranges]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
        single = []
        for o in overrides:
            if o.is_sweep_override() and searching:
                ranges.append(SEARCH_PARAMS + o.input_line.lstrip("+~"))
                continue
            if o.is_sweep_override() and not flags:
                return (f"{o.input_line} is a sweep (several values): add -m (--multirun) to "
                        "run one job per value")
            if o.is_sweep_override():
                first = next(iter(o.sweep_string_iterator()), None)
                text = f"{o.get_key_element()}={first}" if first is not None else o.input_line
                single.append(text)
            else:
                single.append(o.input_line)
        from ..training.settings import validate_config
        from .compose import compose

        try:
            validate_config(compose(single))
        except ConfigError as e:
            return str(e)
        if flags and not searching:
            return _sweep_problem(overrides, single)
        return search_space_problem(single, ranges)
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
    from ..training.settings import validate_config
    from .compose import compose

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

        from .compose import compose

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
