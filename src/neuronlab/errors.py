"""The errors neuronlab raises for wrong input, and the one way of saying "not one of …".

Nothing here imports torch, so the command line can check names before the heavy imports.
"""

from __future__ import annotations

import difflib
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
