"""What a trained neuron learned, in words: one reading per weight (``neuronlab-train``
prints them under a neuron's run)."""

from __future__ import annotations

from collections.abc import Sequence


def read_weights(
    weights: dict[str, float],
    small: float = 0.25,
    class_names: Sequence[str] | None = None,
    large: float = 0.5,
    floor: float = 0.25,
) -> list[tuple[str, float, str]]:
    """One line per feature of a binary neuron ``σ(Σ w_i x_i + b)``: how much, and for which
    class, each weight speaks.

    The size is read against the weights' own scale: with ``top`` = the largest |w|, a weight
    is *small* when |w| < ``small`` × top, *large* when |w| ≥ ``large`` × top, *moderate*
    between. A relative scale alone would call the largest of a set of tiny weights "large"
    (a neuron on xor, which it cannot learn, ends near w = (−0.15, −0.10)), so |w| < ``floor``
    is small too: the inputs are on a unit scale (standardized, or the cats' confidences in
    [0, 1]), so such a weight moves the logit by less than ``floor`` (odds × e^0.25 ≈ 1.3)
    across a typical change of its feature.

    Args:
        weights: feature name → learned weight.
        small, large: the fractions of the largest |w| (0 < small ≤ large ≤ 1).
        class_names: the data set's two classes, ``[class 0, class 1]``; a positive weight is
            evidence for class 1 (the neuron's output is P(class 1)). ``None``: "class 1".
        floor: the |w| below which a weight is small whatever the others are.

    Returns:
        ``(feature, weight, reading)`` per feature, in the order of ``weights``; e.g.
        ``("tail", 4.4, "large positive: evidence FOR 'cat'")``.
    """
    if not 0 < small <= large <= 1:
        raise ValueError(f"need 0 < small ≤ large ≤ 1, got small={small}, large={large}")
    if class_names is None:
        class_1 = "class 1"
    elif len(class_names) == 2:
        class_1 = repr(str(class_names[1]))
    else:
        raise ValueError(f"class_names={list(class_names)!r}: a neuron reads two classes, "
                         f"got {len(class_names)}")
    top = max((abs(w) for w in weights.values()), default=0.0)
    rows = []
    for name, w in weights.items():
        if abs(w) < max(small * top, floor):
            reading = "small: barely changes the answer"
        else:
            size = "large" if abs(w) >= large * top else "moderate"
            sign, verdict = ("positive", "FOR") if w > 0 else ("negative", "AGAINST")
            reading = f"{size} {sign}: evidence {verdict} {class_1}"
        rows.append((name, w, reading))
    return rows
