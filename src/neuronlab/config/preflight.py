"""The command line's checks before anything heavy is imported: option names, Hydra's
composition and every value, each problem as one line."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from ..errors import ConfigError, unknown_choice
from ..paths import config_dir
from .sweeps import SEARCH_PARAMS, plugin_problem, search_name, search_space_problem

# folders Hydra also searches: --config-dir and hydra.searchpath (set by ``preflight``)
_EXTRA_DIRS: list[Path] = []
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def _search_dirs() -> list[Path]:
    return [config_dir(), *_EXTRA_DIRS]


def _group_options(group: str) -> list[str]:
    return sorted({p.stem for d in _search_dirs() for p in (d / group).glob("*.yaml")
                   if not p.stem.startswith("_")})


def _groups() -> set[str]:
    return {p.name for d in _search_dirs() if d.is_dir() for p in d.iterdir()
            if p.is_dir()} - {"hydra"}


def _searchpath_dirs(value: str) -> list[str]:
    """The entries of a ``hydra.searchpath=[file://a,pkg://b]`` override."""
    return [e.strip().strip("'\"") for e in value.strip().strip("[]").split(",") if e.strip()]


def _pkg_dir(name: str) -> Path | None:
    import importlib.util

    module, _, sub = name.replace("/", ".").partition(".")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    roots = list(spec.submodule_search_locations or []) if spec else []
    return Path(roots[0], *sub.split(".")) if roots and sub else (Path(roots[0]) if roots
                                                                   else None)


def config_dirs(argv: list[str]) -> tuple[list[str], list[Path], str | None]:
    """What Hydra adds to its config search path: ``argv`` without ``--config-dir``/``-cd``
    and its value (the searchpath entry stands for it), the extra folders (``--config-dir``,
    then ``hydra.searchpath``'s ``file://`` and ``pkg://`` entries), and the first one that is
    not a folder, as one line (or ``None``)."""
    rest, dirs, problem = [], [], None
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if flag in CONFIG_DIR_FLAGS:
            if not eq:
                value = argv[i + 1] if i + 1 < len(argv) else ""
                i += 1
            folder = Path(value).expanduser().absolute()
            if not folder.is_dir() and problem is None:
                problem = (f"{flag} {value}: no such folder ({folder}); give a folder that "
                           "holds config groups, e.g. myconf/optimizer/good.yaml")
            dirs.append(folder)
        else:
            rest.append(arg)
            if flag.lstrip("+") == "hydra.searchpath" and eq:
                for entry in _searchpath_dirs(value):
                    scheme, _, where = entry.partition("://")
                    folder = (Path(where).expanduser().absolute() if scheme == "file"
                              else _pkg_dir(where) if scheme == "pkg" else None)
                    if scheme == "file" and not folder.is_dir() and problem is None:
                        problem = (f"hydra.searchpath: {entry} is not a folder ({folder})")
                    if folder is not None:
                        dirs.append(folder)
        i += 1
    return rest, dirs, problem


def output_dir_problem(argv: list[str]) -> str | None:
    """``hydra.run.dir``/``hydra.sweep.dir`` under a file (``notes.txt/run``): one line."""
    for arg in argv:
        key, eq, value = arg.partition("=")
        if key.lstrip("+") not in ("hydra.run.dir", "hydra.sweep.dir") or not eq or "${" in value:
            continue
        path = Path(value.strip("'\"")).expanduser().absolute()
        for folder in (path, *path.parents):
            if folder.exists():
                if not folder.is_dir():
                    return (f"{key}={value}: {folder} is a file, not a folder; give a folder "
                            "path for the run's files")
                break
    return None


def _with_search_path(overrides: list[str]) -> list[str]:
    """``overrides`` plus a ``hydra.searchpath`` naming every extra folder (compose's view)."""
    if not _EXTRA_DIRS:
        return overrides
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+") != "hydra.searchpath"]
    entries = ",".join(f"'file://{d}'" for d in _EXTRA_DIRS)
    return [*kept, f"hydra.searchpath=[{entries}]"]


def _top_level_keys() -> list[str]:
    from omegaconf import OmegaConf

    node = OmegaConf.load(config_dir() / "train.yaml")
    return [str(k) for k in node.keys() if k != "defaults"]


def preflight(argv: list[str]) -> str | None:
    """What is wrong with a command line's overrides, as one line, or ``None``: each
    ``group=option`` name, then Hydra's composition (an unknown key, a syntax error), then
    every value (:func:`~neuronlab.config.validate_config`). Imports neither Lightning nor
    the training code, so a typo is reported in about a second. ``--config-dir`` and
    ``hydra.searchpath`` folders are searched as Hydra searches them."""
    argv, _EXTRA_DIRS[:], problem = config_dirs(argv)
    problem = problem or output_dir_problem(argv) or plugin_problem(argv)
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
            validate_config(compose(_with_search_path(single)))
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
                validate_config(compose(_with_search_path(variant)))
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
        composed = compose(_with_search_path(groups_only))
        node = OmegaConf.select(composed, parent) if parent else None
        if "." in parent and OmegaConf.select(composed, parent, default="?") is None:
            return _switched_off(key, value, parent, leaf)
        owners = _owners(parent, leaf) if "." not in parent else []
        if owners:
            return (f"{key}={value}: this {parent} has no {leaf}; it is a key of "
                    f"{', '.join(f'{parent}={o}' for o in owners)}")
        if node is not None and OmegaConf.is_dict(node):
            keys = sorted(str(k) for k in node.keys())
            close = difflib.get_close_matches(leaf, keys, n=1)
            hint = f" (did you mean {parent}.{close[0]}?)" if close else ""
            allowed = f"; {parent} has: {', '.join(keys)}{hint}"
    except Exception:  # noqa: BLE001 - the hint is a courtesy
        pass
    return (f"{key}={value} is not a config key{allowed}. To add a new key on purpose use "
            f"+{key}={value}")


def _switched_off(key: str, value: str, parent: str, leaf: str) -> str:
    """``callbacks.gradient_audit.every_n_steps=50`` where this config sets
    ``callbacks.gradient_audit: null``: how to turn it on whole (``+key`` would add a dict
    without its ``_target_``)."""
    from omegaconf import OmegaConf

    from .compose import compose

    group = parent.split(".", 1)[0]
    target = None
    try:
        target = OmegaConf.select(compose(_with_search_path([f"{group}=default"])),
                                  f"{parent}._target_")
    except Exception:  # noqa: BLE001 - no default option: say it without the target
        pass
    inner = f"_target_:{target},{leaf}:{value}" if target else f"{leaf}:{value}"
    return (f"{key}={value}: {parent} is off (null) in this config; turn it on whole with "
            f"'{parent}={{{inner}}}'")


def _owners(group: str, leaf: str) -> list[str]:
    """The options of config group ``group`` whose file has the key ``leaf``."""
    import yaml

    from ..paths import config_dir

    folder = config_dir() / group
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml")
                  if leaf in (yaml.safe_load(p.read_text()) or {}))
