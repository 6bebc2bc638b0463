"""What the text claims about losses, checked on real batches in float64.

- With C classes and equal logits (a model that knows nothing), cross-entropy = ln C.
- The first gradient of each loss (``reduction="mean"`` over N values):
  cross-entropy ∂L/∂logits = (softmax − one-hot)/N, MSE ∂L/∂ŷ = 2(ŷ − y)/N,
  BCE with logits ∂L/∂z = (σ(z) − y)/N.

Each claim is computed by its formula and by torch (autograd for the gradients), and carries
one entry of each to show plus the largest absolute difference over all entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import load_dataset

TOLERANCE = 1e-10  # gradients, float64
LN_C_TOLERANCE = 1e-12
LN_C_DATASETS = {2: "breast_cancer", 3: "iris", 10: "digits"}  # C → a bundled set with C classes


@dataclass(frozen=True)
class Claim:
    """A claim of the text: the formula's value and torch's, at one entry, and the max |diff|."""

    claim: str
    formula: str
    shown: str  # which entry the two values are taken at
    formula_value: float
    autograd_value: float
    max_diff: float  # over all entries
    tolerance: float = TOLERANCE

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tolerance


def real_batch(name: str, batch: int = 32, seed: int = 0) -> tuple[Tensor, Tensor, int]:
    """``batch`` rows of the data set ``name`` drawn with ``seed``: x (B, n_features) float64,
    y (B,) int64, and the number of classes."""
    dataset = load_dataset(name, seed=seed)
    if not 1 <= batch <= len(dataset):
        raise ValueError(f"batch={batch} must be between 1 and {len(dataset)} (rows of {name!r})")
    rows = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:batch]
    return dataset.x[rows].double(), dataset.y[rows], dataset.n_classes


def _grad(loss_fn, input: Tensor) -> Tensor:
    input = input.detach().clone().requires_grad_(True)
    loss_fn(input).backward()
    return input.grad


def ln_c_claim(n_classes: int = 10, batch: int = 32, seed: int = 0) -> Claim:
    """Cross-entropy of all-zero logits on a real batch with C classes equals ln C.

    Args:
        n_classes: C, one of the keys of `LN_C_DATASETS` (2: breast_cancer, 3: iris,
            10: digits).
    """
    if n_classes not in LN_C_DATASETS:
        allowed = ", ".join(str(count) for count in LN_C_DATASETS)
        raise ValueError(f"n_classes={n_classes} is not one of: {allowed}")
    name = LN_C_DATASETS[n_classes]
    _, y, classes = real_batch(name, batch, seed)
    logits = torch.zeros(len(y), classes, dtype=torch.float64)  # (B, C): uniform predictions
    value = F.cross_entropy(logits, y).item()
    return Claim(
        f"CE at equal logits, C={classes} ({name})", "ln C", "the loss value",
        math.log(classes), value, abs(math.log(classes) - value), LN_C_TOLERANCE,
    )


def ce_grad_claim(batch: int = 32, seed: int = 0, zero_logits: bool = True) -> Claim:
    """∂CE/∂logits = (softmax − one-hot)/N on a ``digits`` batch, zero or random logits."""
    _, y, classes = real_batch("digits", batch, seed)
    n = len(y)
    if zero_logits:
        logits = torch.zeros(n, classes, dtype=torch.float64)  # (N, C)
    else:
        gen = torch.Generator().manual_seed(seed)
        logits = torch.randn(n, classes, generator=gen, dtype=torch.float64) * 3
    formula = (torch.softmax(logits, -1) - F.one_hot(y, classes).double()) / n  # (N, C)
    auto = _grad(lambda z: F.cross_entropy(z, y), logits)
    at = (0, int(y[0]))
    kind = "zero" if zero_logits else "random"
    return Claim(
        f"∂CE/∂logits, {kind} logits (digits)", "(softmax − one-hot)/N",
        f"row 0, true class {at[1]}", formula[at].item(), auto[at].item(),
        (formula - auto).abs().max().item(),
    )


def mse_grad_claim(batch: int = 32, seed: int = 0) -> Claim:
    """∂MSE/∂ŷ = 2(ŷ − y)/N: one-hot ``digits`` targets, random predictions in [0, 1)."""
    _, labels, classes = real_batch("digits", batch, seed)
    target = F.one_hot(labels, classes).double()  # (B, C)
    gen = torch.Generator().manual_seed(seed)
    pred = torch.rand(target.shape, generator=gen, dtype=torch.float64)  # (B, C)
    formula = 2 * (pred - target) / target.numel()  # N = B·C values in the mean
    auto = _grad(lambda p: F.mse_loss(p, target), pred)
    return Claim(
        "∂MSE/∂ŷ, one-hot targets (digits)", "2(ŷ − y)/N, N = B·C",
        "row 0, class 0", formula[0, 0].item(), auto[0, 0].item(),
        (formula - auto).abs().max().item(),
    )


def bce_grad_claim(batch: int = 32, seed: int = 0) -> Claim:
    """∂BCE/∂z = (σ(z) − y)/N on a ``cats`` batch with random logits."""
    _, labels, _ = real_batch("cats", batch, seed)
    target = labels.double()  # (B,)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, generator=gen, dtype=torch.float64) * 2  # (B,)
    formula = (torch.sigmoid(z) - target) / batch
    auto = _grad(lambda t: F.binary_cross_entropy_with_logits(t, target), z)
    return Claim(
        "∂BCE/∂z, random logits (cats)", "(σ(z) − y)/N", "row 0",
        formula[0].item(), auto[0].item(), (formula - auto).abs().max().item(),
    )


def loss_claims(batch: int = 32, seed: int = 0) -> list[Claim]:
    """Every loss claim, in the order the text makes them."""
    return [
        *(ln_c_claim(n_classes, batch, seed) for n_classes in LN_C_DATASETS),
        ce_grad_claim(batch, seed, zero_logits=True),
        ce_grad_claim(batch, seed, zero_logits=False),
        mse_grad_claim(batch, seed),
        bce_grad_claim(batch, seed),
    ]
