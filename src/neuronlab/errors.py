"""The errors neuronlab raises for wrong input, and the one way of saying "not one of …".

Nothing here imports torch, so the command line can check names before the heavy imports.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


class ConfigError(ValueError):
    """A config value is wrong; the message names the key, the value and what is allowed."""


def unknown_choice(key: str, value: object, allowed: Iterable[str]) -> ValueError:
    """The error for a name that is not allowed: lists the allowed ones, suggests the closest,
    e.g. ``init.scheme='xavir' is not one of: fixed, kaiming, lecun, xavier, zeros (did you
    mean 'xavier'?)``."""
    names = sorted(allowed)
    message = f"{key}={value!r} is not one of: {', '.join(names)}"
    close = difflib.get_close_matches(str(value), names, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return ValueError(message)


# ---- the checks every config dataclass uses ----------------------------------------------


def is_number(value: object) -> bool:
    """A finite int or float (``True``/``False`` are not numbers here)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require(ok: bool, key: str, value: object, allowed: str) -> None:
    """Raise ``ConfigError("<key>=<value!r> <allowed>")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} {allowed}")


def require_choice(key: str, value: object, allowed: Iterable[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(str(unknown_choice(key, value, allowed)))


def require_bool(key: str, value: object, null_ok: bool = False) -> bool | None:
    """``value`` itself when it is a bool (or ``None`` with ``null_ok``), else ConfigError."""
    ok = isinstance(value, bool) or (null_ok and value is None)
    require(ok, key, value, "must be true or false" + (" (or null)" if null_ok else ""))
    return value
