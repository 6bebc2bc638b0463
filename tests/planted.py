"""The planted bugs: one table of realistic backward mistakes, each swapped into the real code.

A plant is either a subclass of the real ``torch.autograd.Function`` (``neuronlab.functional``)
that overrides ``backward`` with one mistake (``tests/planted_backwards.py``), or a wrong
formula for one of the derivative helpers in ``functional.activations`` (where the math of an
activation lives). ``install`` swaps it in with ``monkeypatch``, so every path that reaches
the op runs the bug: the public op (``OPS[op].manual``), a ``Neuron``/``MLP`` with
``backprop="manual"``, a training run.

Three kinds of test loop over :data:`PLANTS`:

- ``test_planted_bugs.py``: ``check_function`` fails each one, with the torch reference and on
  finite differences alone; without the plant the same check passes.
- ``test_planted_in_models.py``: ``compare_gradients`` fails each bug that reaches a model's
  gradients, on the parameters it reaches (and ``neuronlab-check`` fails, in
  ``test_check_cli.py``).
- ``test_audit.py``: each such bug, swapped in mid-training, ends the run at the next audit.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import planted_backwards as B
import planted_layers as P
import pytest
import torch
from torch import Tensor

import neuronlab.functional.activations as A
from neuronlab.functional import OPS

# ---- wrong formulas for the derivative helpers of functional.activations -------------------


@dataclass(frozen=True)
class Helper:
    """``functional.activations.<name>`` replaced by ``formula`` (same arguments)."""

    name: str
    formula: Callable[..., Tensor]


def _leaky_slopes_swapped(z: Tensor, negative_slope: float) -> Tensor:
    one = torch.ones((), dtype=z.dtype, device=z.device)
    return torch.where(z > 0, one * negative_slope, one)


def _gelu_short_constant(z: Tensor) -> Tensor:
    pdf = torch.exp(-0.5 * z * z) * 0.3989  # 1/√(2π) = 0.398942…
    return 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * pdf


# ---- the table --------------------------------------------------------------------------

LOSS_NAMES = {"mse_loss": "mse", "binary_cross_entropy_with_logits": "bce",
              "cross_entropy": "cross_entropy"}  # OPS name -> model.loss


@dataclass(frozen=True)
class Plant:
    """One bug: what it breaks, which op it lives in, and what must catch it.

    ``reaches``: which parameters of an MLP the bug makes wrong — ``hidden`` (an activation's
    derivative: the layers before the output), ``all`` (the loss's gradient), ``biases``,
    ``weights``; ``None`` where a model's gradients come out right (torch sums or casts the raw
    output of backward) or backward raises: only check_function's watch on the raw output sees
    those.
    """

    name: str
    breaks: str  # the kind of mistake
    op: str  # the OPS entry it breaks: its inputs' sampler, its torch reference
    swap: type[torch.autograd.Function] | Helper
    shape: tuple[int, ...] = (4, 5)  # the sample shape (linear: (N, n_in), n_out = 3)
    dtype: torch.dtype = torch.float64
    device: str = "cpu"
    finding: str | None = None  # a bug the values cannot show: what the report must say
    blamed: int | None = None  # the input that finding is pinned on (None: report.errors)
    reaches: str | None = "hidden"
    hidden: tuple[int, ...] | None = None  # layer sizes the bug needs (default: the config's)
    precision: str | None = None  # a training precision it needs (default: the config's)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Swap the bug in where the real code lives (undone with ``monkeypatch``)."""
        if isinstance(self.swap, Helper):
            monkeypatch.setattr(A, self.swap.name, self.swap.formula)
        else:
            real = self.swap.__base__
            monkeypatch.setattr(sys.modules[real.__module__], real.__name__, self.swap)

    def inputs(self, shape: tuple[int, ...] | None = None) -> tuple:
        gen = torch.Generator().manual_seed(0)
        return OPS[self.op].sample(shape or self.shape, self.dtype, self.device, gen)

    @property
    def manual(self) -> Callable[..., Tensor]:
        return OPS[self.op].manual

    @property
    def reference(self) -> Callable[..., Tensor]:
        return OPS[self.op].reference

    @property
    def activation(self) -> str:
        """The activation of a model that runs through the bug (the config's relu otherwise)."""
        return self.op if OPS[self.op].kind == "activation" else "relu"

    @property
    def loss(self) -> str:
        return LOSS_NAMES.get(self.op, "cross_entropy")

    @property
    def overrides(self) -> list[str]:
        """The training overrides that route ``model=mlp`` through the bug (in ``precision``)."""
        out = [f"model.activation={self.activation}", f"model.loss={self.loss}"]
        if self.hidden is not None:
            out.append(f"model.hidden=[{','.join(map(str, self.hidden))}]")
        return out + ([] if self.precision is None else [f"trainer.precision={self.precision}"])

    def reached(self, n_layers: int) -> set[str]:
        """The parameter names of an ``n_layers`` MLP that this bug makes wrong."""
        layers = range(n_layers - 1) if self.reaches == "hidden" else range(n_layers)
        kinds = {"hidden": ("weight", "bias"), "all": ("weight", "bias"), "biases": ("bias",),
                 "weights": ("weight",), None: ()}[self.reaches]
        return {f"layers.{i}.{kind}" for i in layers for kind in kinds}


_IN_PLACE = "grad_output 0 in place"
PLANTS: dict[str, Plant] = {p.name: p for p in [
    # an activation's derivative formula (the helper), reaching the hidden layers
    Plant("sigmoid derivative sign flipped", "sign", "sigmoid",
          Helper("sigmoid_derivative", lambda a: -a * (1 - a))),
    Plant("sigmoid derivative 1% off", "near-miss constant", "sigmoid",
          Helper("sigmoid_derivative", lambda a: a * (1 - a) * 1.01)),
    Plant("tanh derivative 1 - a", "factor", "tanh", Helper("tanh_derivative", lambda a: 1 - a)),
    Plant("relu derivative passes z < 0", "region", "relu",
          Helper("relu_derivative", lambda a: (a >= 0).to(a.dtype))),  # a ≥ 0: all pass
    Plant("leaky_relu slopes swapped", "region", "leaky_relu",
          Helper("leaky_relu_derivative", _leaky_slopes_swapped)),
    Plant("leaky_relu slope forgotten", "region", "leaky_relu",
          Helper("leaky_relu_derivative", lambda z, negative_slope: (z > 0).to(z.dtype))),
    Plant("softplus derivative sigma(-z)", "mirrored", "softplus",
          Helper("softplus_derivative", lambda z, beta, threshold: torch.sigmoid(-beta * z))),
    Plant("gelu derivative without z phi(z)", "missing term", "gelu",
          Helper("gelu_derivative", lambda z: 0.5 * (1 + torch.erf(z / math.sqrt(2))))),
    Plant("gelu derivative 1/sqrt(2 pi) = 0.3989", "near-miss constant", "gelu",
          Helper("gelu_derivative", _gelu_short_constant),
          precision="64-true"),  # ~2e-5 off: in float32 about one rounding bound, not always out
    # an activation's backward machinery
    Plant("sigmoid upstream ignored", "upstream ignored", "sigmoid", B.SigmoidUpstreamIgnored),
    Plant("sigmoid gradient in float32", "dtype", "sigmoid", B.SigmoidGradientInFloat32,
          finding="dtype torch.float32, expected torch.float64", blamed=0, reaches=None),
    Plant("sigmoid gradient in float64 for float32", "dtype", "sigmoid",
          B.SigmoidGradientInFloat64, dtype=torch.float32,
          finding="dtype torch.float64, expected torch.float32", blamed=0, reaches=None),
    Plant("sigmoid gradient on the CPU", "device", "sigmoid", B.SigmoidGradientOnCPU,
          device="cuda", finding="device", blamed=0, reaches=None),
    Plant("sigmoid g.mul_", "in place", "sigmoid", B.SigmoidWritesGradOutput,
          finding=_IN_PLACE, reaches=None),
    Plant("relu without clone", "in place", "relu", B.ReLUWithoutClone, finding=_IN_PLACE,
          reaches=None),
    # the losses: the first gradient, reaching every parameter
    Plant("mse missing 2", "factor", "mse_loss", B.MSEMissingTwo, shape=(4, 3), reaches="all"),
    Plant("mse sum for mean", "mean as sum", "mse_loss", B.MSESumForMean, shape=(4, 3),
          reaches="all"),
    Plant("mse grads swapped", "wrong input", "mse_loss", B.MSEGradsSwapped, shape=(4, 3),
          reaches="all"),
    Plant("bce (y - sigma)", "sign", "binary_cross_entropy_with_logits", B.BCESignFlipped,
          shape=(4, 3), reaches="all"),
    Plant("cross_entropy missing 1/N", "batch size 1 only", "cross_entropy",
          B.CrossEntropySumForMean, reaches="all"),
    Plant("cross_entropy exp unnormalized", "normalization", "cross_entropy",
          B.CrossEntropyUnnormalized, reaches="all"),
    Plant("cross_entropy softmax over the batch", "reduction axis", "cross_entropy",
          B.CrossEntropySoftmaxOverBatch, reaches="all"),
    # the weighted sum
    Plant("linear bias g[0]", "batch size 1 only", "linear", B.LinearBiasFirstRow, shape=(4, 2),
          reaches="biases"),
    Plant("linear bias gradient forgotten", "missing gradient", "linear", B.LinearBiasForgotten,
          shape=(4, 2), reaches="biases"),
    Plant("linear x^T g", "transpose", "linear", B.LinearTransposed, shape=(3, 3),
          reaches="weights", hidden=(2, 2)),  # square layers: moons has 2 features, 2 classes
    Plant("linear bias not reduced", "broadcast", "linear", B.LinearBiasNotReduced, shape=(4, 2),
          finding="shape (4, 3), expected (3,)", blamed=2, reaches=None),
    Plant("linear bias summed over the features", "shape", "linear", B.LinearBiasWrongAxis,
          shape=(4, 2), finding="invalid gradient at index 2", blamed=2, reaches=None),
    Plant("linear grads swapped", "wrong input", "linear", B.LinearGradsSwapped, shape=(3, 3),
          reaches=None),  # in a model x needs no gradient: W gets None, or shapes clash
    # the layer ops past the MLP (their models' audits: the models' own tests)
    Plant("softmax without the sum term", "missing term", "softmax", P.SoftmaxWithoutTheSum,
          reaches=None),
    Plant("log_softmax without exp", "missing term", "log_softmax", P.LogSoftmaxWithoutExp,
          reaches=None),
    Plant("conv dW ignores the stride", "stride", "conv1d", P.ConvWeightIgnoresStride,
          shape=(2, 3, 7), reaches=None),
    Plant("conv2d dW ignores the stride", "stride", "conv2d", P.ConvWeightIgnoresStride,
          shape=(2, 5, 6), reaches=None),
    *[Plant(f"max_pool{d}d gradient at the wrong index", "wrong index", f"max_pool{d}d",
            P.MaxPoolWrongIndex, shape=(2, 3, 6), reaches=None) for d in (1, 2)],
    *[Plant(f"avg_pool{d}d padding counted", "divisor", f"avg_pool{d}d",
            P.AvgPoolDividesByTheKernel, shape=(2, 3, 6), reaches=None) for d in (1, 2)],
    Plant("batch_norm backward without the mean term", "missing term", "batch_norm",
          P.BatchNormMissingTheMeanTerm, shape=(6, 3), reaches=None),
    Plant("layer_norm backward without the variance term", "missing term", "layer_norm",
          P.LayerNormMissingTheVarianceTerm, shape=(4, 5), reaches=None),
    Plant("embedding ignores padding_idx", "padding", "embedding",
          P.EmbeddingIgnoresPaddingIdx, shape=(4, 5), reaches=None),
    Plant("dropout backward without 1/(1-p)", "factor", "dropout", P.DropoutWithoutTheScale,
          reaches=None),
]}

# the plants that change a model's gradients, on the CPU (compare_gradients, the audit)
IN_MODELS = [name for name, p in PLANTS.items() if p.reaches is not None and p.device == "cpu"]


def params(names: list[str] | None = None) -> list:
    """``pytest.param`` per plant name, CUDA plants marked ``cuda``."""
    return [pytest.param(name, id=name,
                         marks=[pytest.mark.cuda] if PLANTS[name].device == "cuda" else [])
            for name in (PLANTS if names is None else names)]
