"""Weight initialization: a distribution, a scale rule, and a multiplier.

The std of each layer's weights comes from a scale rule, times ``scale``:

====== ==============================================  =====================================
scheme std                                              why
====== ==============================================  =====================================
fixed  ``std``                                          the same for every layer
lecun  1/√fan_in                                        keeps Var(z) = Var(x) for a linear unit
xavier gain·√(2/(fan_in + fan_out))  (gain 1)           keeps forward *and* backward variance
kaiming gain/√fan_in  (gain of the activation)          ReLU halves the variance: gain √2
====== ==============================================  =====================================

``normal`` draws N(0, std²); ``uniform`` draws U(−√3·std, √3·std), which has the *same*
variance — so normal-vs-uniform compares the distribution alone. Biases start at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .errors import ConfigError, is_number, require, require_choice, unknown_choice
from .functional.registry import ACTIVATIONS
from .schema import GroupConfig

DISTRIBUTIONS = ("normal", "uniform")
SCHEMES = ("fixed", "lecun", "xavier", "kaiming")  # the rules that give a std
INIT_SCHEMES = (*SCHEMES, "zeros")  # what init.scheme may name: zeros sets every weight to 0

# Gain of each activation for the kaiming rule (kept with the activation, in the op registry)
ACTIVATION_GAINS = {name: entry.gain for name, entry in ACTIVATIONS.items()}


@dataclass
class InitConfig(GroupConfig):
    """``init.*``: how the first weights are drawn. Defaults are ``conf/init/xavier_normal.yaml``'s.

    Attributes:
        distribution: ``normal`` or ``uniform`` (with the normal's variance).
        scheme: the std rule (``fixed``, ``lecun``, ``xavier``, ``kaiming``) or ``zeros``.
        scale: multiplies the std the rule gives.
        std: the std of ``scheme=fixed`` (only then).
        gain: overrides the gain of ``xavier`` (1) and ``kaiming`` (the activation's).
    """

    group: ClassVar[str] = "init"
    distribution: str = "normal"
    scheme: str = "xavier"
    scale: float = 1.0
    std: float | None = None
    gain: float | None = None

    def __post_init__(self) -> None:
        require_choice("init.distribution", self.distribution, DISTRIBUTIONS)
        require_choice("init.scheme", self.scheme, INIT_SCHEMES)
        require(is_number(self.scale) and self.scale > 0, "init.scale", self.scale,
                "must be a number > 0")
        if self.scheme == "fixed":
            if self.std is None:
                raise ConfigError("init.std is required with init.scheme='fixed' "
                                  "(e.g. init.std=0.01)")
            require(is_number(self.std) and self.std > 0, "init.std", self.std,
                    "must be a number > 0 with scheme=fixed")
        else:
            require(self.std is None, "init.std", self.std, f"is only used with "
                    f"init.scheme='fixed', not {self.scheme!r}; leave it null")
        require(self.gain is None or (is_number(self.gain) and self.gain > 0), "init.gain",
                self.gain, "must be null or a number > 0")


def init_std(
    fan_in: int,
    fan_out: int,
    scheme: str,
    scale: float = 1.0,
    std: float | None = None,
    gain: float | None = None,
    activation: str = "identity",
) -> float:
    """The std that ``scheme`` gives a weight matrix of shape ``(fan_out, fan_in)``."""
    if scheme == "fixed":
        if std is None:
            raise ValueError("init.std is required with init.scheme='fixed' (e.g. init.std=0.01)")
        base = std
    elif scheme == "lecun":
        base = 1.0 / math.sqrt(fan_in)
    elif scheme == "xavier":
        base = (1.0 if gain is None else gain) * math.sqrt(2.0 / (fan_in + fan_out))
    elif scheme == "kaiming":
        g = ACTIVATION_GAINS.get(activation, 1.0) if gain is None else gain
        base = g / math.sqrt(fan_in)
    else:
        raise unknown_choice("init.scheme", scheme, SCHEMES)
    return base * scale


def _weighted_modules(module: nn.Module):
    """Every submodule whose ``weight`` sums its inputs: a 2-D ``weight`` (our Layer/Neuron,
    nn.Linear) or one that names its ``fan_in`` (a convolution, an embedding). A norm's 1-D γ
    is neither: it keeps its ones."""
    for m in module.modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and (w.dim() == 2 or hasattr(m, "fan_in")):
            yield m


def _fans(m: nn.Module) -> tuple[int, int]:
    """(fan_in, fan_out): the module's own (a convolution counts its kernel), else the
    2-D weight's ``(fan_out, fan_in)``."""
    if hasattr(m, "fan_in") and hasattr(m, "fan_out"):
        return int(m.fan_in), int(m.fan_out)
    fan_out, fan_in = m.weight.shape
    return fan_in, fan_out


@torch.no_grad()
def initialize_(
    module: nn.Module,
    distribution: str = "normal",
    scheme: str = "kaiming",
    scale: float = 1.0,
    std: float | None = None,
    gain: float | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialize every layer of ``module`` in place; biases to zero. Returns ``module``.

    Args:
        module: a ``Neuron``, ``Layer``, ``MLP``, a conv model, or any module holding 2-D
            weights; a convolution's fan-in/fan-out count its kernel (``C_in·k``).
        distribution: ``"normal"`` or ``"uniform"`` (same variance as the normal).
        scheme: ``"fixed"``, ``"lecun"``, ``"xavier"``, ``"kaiming"``, or ``"zeros"`` (every
            weight and bias 0, see :func:`zeros_`; the other arguments are then unused).
        scale: multiplies the std the scheme gives.
        std: the std for ``scheme="fixed"`` (only then).
        gain: overrides the gain of ``xavier`` (1) and ``kaiming`` (the activation's).
        generator: the source of randomness (on the weights' device), for reproducible draws.
    """
    InitConfig(distribution, scheme, scale, std, gain)  # the rules, in one place
    if scheme == "zeros":
        return zeros_(module)
    for m in _weighted_modules(module):
        fan_in, fan_out = _fans(m)
        activation = getattr(m, "activation", "identity")
        s = init_std(fan_in, fan_out, scheme, scale, std, gain, activation)
        if distribution == "normal":
            m.weight.normal_(0.0, s, generator=generator)
        else:
            bound = math.sqrt(3.0) * s  # Var(U(−a, a)) = a²/3 = s²
            m.weight.uniform_(-bound, bound, generator=generator)
        if getattr(m, "bias", None) is not None:
            m.bias.zero_()
        if hasattr(m, "zero_padding_"):  # an embedding's padding row stays zero
            m.zero_padding_()
    return module


@torch.no_grad()
def zeros_(module: nn.Module) -> nn.Module:
    """All weights and biases to zero: every neuron of a layer then gets the same gradient,
    so they stay identical forever (the symmetry that random init breaks)."""
    for p in module.parameters():
        p.zero_()
    return module
