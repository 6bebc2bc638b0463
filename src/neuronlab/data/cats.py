"""The textbook example: is this drawing a cat?

Each example is a drawing, described by how strongly each feature shows in it: a confidence
in [0, 1] per feature. The label is 1 for a cat and 0 for anything else, unicorns included.
The generator is built so that a single logistic neuron, trained on these raw confidences,
reads like the textbook explanation of weights:

| feature       | cats   | not cats                                  | weight learned    |
| ------------- | ------ | ----------------------------------------- | ----------------- |
| `tail`        | always | unicorns (35%) always, other drawings 15% | large, positive   |
| `two_eyes`    | 15%    | 15% (independent of the label)            | small (near zero) |
| `horn`        | never  | unicorns always, nothing else             | large, negative   |
| `whiskers`    | 60%    | 20%                                       | moderate positive |
| `pointy_ears` | 60%    | 20%                                       | moderate positive |

A present feature gets a confidence drawn from uniform(0.7, 1.0), an absent one from
uniform(0.0, 0.3); then gaussian noise of std `noise` is added and the result clipped to
[0, 1]. Labels are clean (never flipped).
"""

from __future__ import annotations

import numpy as np
import torch

from neuronlab.data.container import Dataset

CAT_FEATURES = ["tail", "two_eyes", "horn", "whiskers", "pointy_ears"]
CAT_CLASSES = ["not_cat", "cat"]

P_CAT = 0.5  # share of cats among all drawings
P_UNICORN = 0.35  # share of unicorns among the drawings that are not cats
P_TAIL_OTHER = 0.15  # share of tailed drawings among non-cats that are not unicorns
P_TWO_EYES = 0.15  # the same for every drawing: tells nothing about the label
P_CUE_CAT = 0.6  # whiskers / pointy ears, in a cat
P_CUE_NOT_CAT = 0.2  # whiskers / pointy ears, in anything else
PRESENT = (0.7, 1.0)  # confidence range of a feature that is drawn
ABSENT = (0.0, 0.3)  # confidence range of a feature that is not


def make_cats(n_samples: int = 1000, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Generate the cat / not-cat drawings (see the module docstring for the design).

    Args:
        n_samples: number of drawings N.
        noise: std of the gaussian noise added to every confidence before clipping to [0, 1].
        seed: seed of the numpy Generator; the same seed gives the same data.

    Returns:
        A `Dataset` with `x` (N, 5) confidences in [0, 1] for `CAT_FEATURES` and `y` (N,)
        with 1 = cat, 0 = not a cat.
    """
    rng = np.random.default_rng(seed)
    n = n_samples
    is_cat = rng.random(n) < P_CAT
    is_unicorn = ~is_cat & (rng.random(n) < P_UNICORN)
    is_other = ~is_cat & ~is_unicorn
    cue_rate = np.where(is_cat, P_CUE_CAT, P_CUE_NOT_CAT)

    present = np.stack(
        [
            is_cat | is_unicorn | (is_other & (rng.random(n) < P_TAIL_OTHER)),  # tail
            rng.random(n) < P_TWO_EYES,  # two_eyes
            is_unicorn,  # horn
            rng.random(n) < cue_rate,  # whiskers
            rng.random(n) < cue_rate,  # pointy_ears
        ],
        axis=1,
    )  # (N, 5) bool
    shape = present.shape
    confidence = np.where(present, rng.uniform(*PRESENT, shape), rng.uniform(*ABSENT, shape))
    confidence = np.clip(confidence + noise * rng.standard_normal(shape), 0.0, 1.0)

    return Dataset(
        name="cats",
        x=torch.as_tensor(confidence, dtype=torch.float32),
        y=torch.as_tensor(is_cat, dtype=torch.int64),
        feature_names=list(CAT_FEATURES),
        class_names=list(CAT_CLASSES),
        n_classes=2,
    )
