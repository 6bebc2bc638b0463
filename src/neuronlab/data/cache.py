"""A disk cache for generated arrays: a set that takes minutes to make is made once.

Each entry is one `.npz` file named by a hash of the parameters that made it, under
`cache_dir()`: `$NEURONLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/neuronlab`, else
`~/.cache/neuronlab`. The file is written to a temporary name and renamed into place, so a
crash or a second process never leaves a half-written entry; the parameters are stored inside
it too, and an entry that cannot be read (truncated, empty, garbage), holds other parameters or
other arrays than the caller's `check` expects is made again, with one line saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

PARAMS_KEY = "__params__"  # the JSON of the parameters, stored next to the arrays


def cache_dir() -> Path:
    """`$NEURONLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/neuronlab`, else `~/.cache/neuronlab`."""
    env = os.environ.get("NEURONLAB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "neuronlab"


def cache_path(name: str, params: Mapping[str, Any]) -> Path:
    """The file of the entry `name` made with `params` (JSON-able): `<name>-<hash>.npz`."""
    digest = hashlib.sha256(_params_json(params).encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-{digest}.npz"


def cached_arrays(
    name: str,
    params: Mapping[str, Any],
    make: Callable[[], dict[str, np.ndarray]],
    check: Callable[[dict[str, np.ndarray]], str | None] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays that `make()` returns for `params`, from the cache when they are there.

    On a miss `make()` runs and its arrays are stored; a cache folder that cannot be written
    gives a warning, not an error (the arrays are still returned).

    Args:
        name: the kind of entry, the start of the file name (`mnist1d`).
        params: everything that determines the arrays (JSON-able); part of the file name.
        make: builds the arrays, e.g. `{"x": (N, F) float32, "y": (N,) int64}`.
        check: what is wrong with arrays read back (names, shapes, dtypes, values), as a few
            words, or `None`; an entry it objects to is made again.

    An entry that is truncated, empty, not an `.npz`, made with other parameters, or that
    `check` objects to is made again, with one line on stderr saying so.
    """
    path = cache_path(name, params)
    arrays, problem = _read(path, params)
    if arrays is not None and check is not None:
        problem = check(arrays)
        arrays = None if problem else arrays
    if problem:
        print(f"{name}: the cached entry {path} is {problem}; making it again", file=sys.stderr,
              flush=True)
    if arrays is None:
        arrays = make()
        try:
            _write_atomic(path, arrays, params)
        except OSError as e:
            warnings.warn(
                f"could not cache {name} at {path} ({e}); set NEURONLAB_CACHE_DIR to a "
                "writable folder to keep it",
                stacklevel=2,
            )
    return arrays


def _params_json(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _read(path: Path, params: Mapping[str, Any]) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The arrays stored at `path` for `params`, and `None`; or `None` and what is wrong with
    the entry (`None` too when there is no entry)."""
    if not path.is_file():
        return None, None
    if path.stat().st_size == 0:
        return None, "empty (0 bytes)"
    try:
        stored = np.load(path, allow_pickle=False)
        if not isinstance(stored, np.lib.npyio.NpzFile):
            return None, "not an .npz archive"
        with stored:
            if PARAMS_KEY not in stored.files:
                return None, "not one of neuronlab's entries (no parameters stored)"
            if str(stored[PARAMS_KEY]) != _params_json(params):
                return None, "made with other parameters"
            arrays = {key: stored[key] for key in stored.files if key != PARAMS_KEY}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        return None, f"unreadable ({type(e).__name__}: {' '.join(str(e).split())[:80]})"
    if not arrays:
        return None, "holding no arrays"
    return arrays, None


def _write_atomic(path: Path, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{PARAMS_KEY: np.array(_params_json(params))})
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see all or nothing
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
