"""Readings of what a model learned, in words."""

from __future__ import annotations


def read_weights(weights: dict[str, float], small: float = 0.25) -> list[tuple[str, float, str]]:
    """One line per feature: a weight is *small* when |w| < ``small`` × the largest |w|;
    positive weights are evidence for the class, negative ones against it."""
    top = max((abs(w) for w in weights.values()), default=0.0) or 1.0
    rows = []
    for name, w in weights.items():
        if abs(w) < small * top:
            reading = "small: barely changes the answer"
        elif w > 0:
            reading = "large positive: evidence FOR a cat"
        else:
            reading = "large negative: evidence AGAINST a cat"
        rows.append((name, w, reading))
    return rows
