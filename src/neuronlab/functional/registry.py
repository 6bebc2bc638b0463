"""One table of ops: name → manual Function, plain-torch reference, valid inputs, dtype rules.

Tests, ``neuronlab-check``, the gradient checker and the benchmark all loop over ``OPS``
instead of repeating themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import unknown_choice
from . import activations as A
from . import conv as C
from . import losses as L
from . import norm as N
from . import pooling as P
from . import samplers as S
from .cross_entropy import CrossEntropyFunction

# (``from .x import names``: the package's ``softmax``, ``dropout`` and ``embedding`` are the
# functions, which shadow their modules of the same name as attributes)
from .dropout import DROPOUT, dropout
from .embedding import EMBEDDING, embedding
from .linear import LinearFunction, linear
from .precision import DtypeRule
from .softmax import LogSoftmaxFunction, SoftmaxFunction, log_softmax, softmax

Sampler = Callable[..., tuple]


@dataclass(frozen=True)
class OpSpec:
    """An op: ``manual(*inputs)`` and ``reference(*inputs)`` compute the same thing."""

    name: str
    kind: str  # "linear" | "activation" | "loss" | one of samplers.LAYER_KINDS
    manual: Callable[..., Tensor]
    reference: Callable[..., Tensor]
    sample: Sampler  # sample(shape, dtype, device, generator) -> inputs (grads as needed)
    dtypes: DtypeRule  # where it computes: its autocast list, float32 math for half inputs
    opinfo: str  # its entry in torch's OpInfo database (torch.testing._internal), by name
    # the public function with torch's signature, as the OpInfo samples call it, where
    # ``manual`` is a table call fixing some arguments (conv's stride, softmax's dim): None = manual
    public: Callable[..., Tensor] | None = None

    @property
    def function(self) -> Callable[..., Tensor]:
        """What torch's OpInfo samples call: ``public``, else ``manual``."""
        return self.manual if self.public is None else self.public


def _randn(shape, dtype, device, generator, requires_grad=True) -> Tensor:
    x = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    return x.requires_grad_(requires_grad)


def _away_from_zero(shape, dtype, device, generator) -> Tensor:
    """Values in ±[0.1, 2): a finite difference never straddles the kink at 0."""
    mag = torch.rand(shape, generator=generator, dtype=torch.float64) * 1.9 + 0.1
    sign = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    return (mag * sign).to(dtype=dtype, device=device).requires_grad_(True)


def _sample_linear(shape, dtype, device, generator):
    *batch, n_in = shape
    n_out = 3
    x = _randn(shape, dtype, device, generator)
    w = _randn((n_out, n_in), dtype, device, generator)
    b = _randn((n_out,), dtype, device, generator)
    return x, w, b


def _sample_smooth(shape, dtype, device, generator):
    return (_randn(shape, dtype, device, generator),)


def _sample_kinked(shape, dtype, device, generator):
    return (_away_from_zero(shape, dtype, device, generator),)


def _sample_mse(shape, dtype, device, generator):
    return _randn(shape, dtype, device, generator), _randn(shape, dtype, device, generator)


def _sample_bce(shape, dtype, device, generator):
    z = _randn(shape, dtype, device, generator)
    y = torch.rand(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    return z, y.requires_grad_(True)


def _sample_cross_entropy(shape, dtype, device, generator):
    z = _randn(shape, dtype, device, generator)
    y = torch.randint(0, shape[-1], tuple(shape[:-1]), generator=generator).to(device)
    return z, y


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in [
        OpSpec("linear", "linear", linear, F.linear, _sample_linear,
               LinearFunction.dtypes, "nn.functional.linear"),
        OpSpec("sigmoid", "activation", A.sigmoid, torch.sigmoid, _sample_smooth,
               A.SigmoidFunction.dtypes, "sigmoid"),
        OpSpec("tanh", "activation", A.tanh, torch.tanh, _sample_smooth,
               A.TanhFunction.dtypes, "tanh"),
        OpSpec("relu", "activation", A.relu, torch.relu, _sample_kinked,
               A.ReLUFunction.dtypes, "nn.functional.relu"),
        OpSpec("leaky_relu", "activation", A.leaky_relu, F.leaky_relu, _sample_kinked,
               A.LeakyReLUFunction.dtypes, "nn.functional.leaky_relu"),
        OpSpec("softplus", "activation", A.softplus, F.softplus, _sample_smooth,
               A.SoftplusFunction.dtypes, "nn.functional.softplus"),
        OpSpec("gelu", "activation", A.gelu, F.gelu, _sample_smooth,
               A.GELUFunction.dtypes, "nn.functional.gelu"),
        OpSpec("mse_loss", "loss", L.mse_loss, F.mse_loss, _sample_mse,
               L.MSELossFunction.dtypes, "nn.functional.mse_loss"),
        OpSpec(
            "binary_cross_entropy_with_logits",
            "loss",
            L.binary_cross_entropy_with_logits,
            F.binary_cross_entropy_with_logits,
            _sample_bce,
            L.BCEWithLogitsFunction.dtypes,
            "nn.functional.binary_cross_entropy_with_logits",
        ),
        OpSpec("cross_entropy", "loss", L.cross_entropy, F.cross_entropy, _sample_cross_entropy,
               CrossEntropyFunction.dtypes, "nn.functional.cross_entropy"),
        # the layer ops past the MLP: a table call (see ``samplers``), torch's the same way
        OpSpec("softmax", "softmax", S.table_call(softmax, "softmax", dim=-1),
               S.table_call(F.softmax, "F.softmax", dim=-1), S.sample_input,
               SoftmaxFunction.dtypes, "softmax", public=softmax),
        OpSpec("log_softmax", "softmax", S.table_call(log_softmax, "log_softmax", dim=-1),
               S.table_call(F.log_softmax, "F.log_softmax", dim=-1), S.sample_input,
               LogSoftmaxFunction.dtypes, "log_softmax", public=log_softmax),
        OpSpec("conv1d", "conv", S.table_call(C.conv1d, "conv1d", stride=2, padding=1),
               S.table_call(F.conv1d, "F.conv1d", stride=2, padding=1), S.sample_conv(1),
               C.ConvFunction.dtypes, "nn.functional.conv1d", public=C.conv1d),
        OpSpec("conv2d", "conv", S.table_call(C.conv2d, "conv2d", stride=2, padding=1),
               S.table_call(F.conv2d, "F.conv2d", stride=2, padding=1), S.sample_conv(2),
               C.ConvFunction.dtypes, "nn.functional.conv2d", public=C.conv2d),
        *[OpSpec(f"{kind}_pool{d}d", "pool",
                 S.table_call(getattr(P, f"{kind}_pool{d}d"), f"{kind}_pool{d}d", **args),
                 S.table_call(getattr(F, f"{kind}_pool{d}d"), f"F.{kind}_pool{d}d", **args),
                 S.sample_pool(d), P.POOL, f"nn.functional.{kind}_pool{d}d",
                 public=getattr(P, f"{kind}_pool{d}d"))
          for kind, args in [("max", dict(kernel_size=3, stride=2, padding=1)),
                             ("avg", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                          count_include_pad=False))]
          for d in (1, 2)],
        OpSpec("layer_norm", "norm", S.layer_norm_call(N.layer_norm, "layer_norm"),
               S.layer_norm_call(F.layer_norm, "F.layer_norm"), S.sample_layer_norm,
               N.LAYER_NORM, "nn.functional.layer_norm", public=N.layer_norm),
        OpSpec("batch_norm", "norm", S.batch_norm_call(N.batch_norm, "batch_norm"),
               S.batch_norm_call(F.batch_norm, "F.batch_norm"), S.sample_batch_norm,
               N.BATCH_NORM, "nn.functional.batch_norm", public=N.batch_norm),
        OpSpec("dropout", "dropout", S.seeded(S.table_call(dropout, "dropout", p=0.3),
                                              "dropout (seeded)"),
               S.seeded(S.table_call(F.dropout, "F.dropout", p=0.3), "F.dropout (seeded)"),
               S.sample_input, DROPOUT, "nn.functional.dropout",
               public=S.seeded(dropout, "dropout (seeded)")),
        OpSpec("embedding", "embedding",
               S.padded_embedding_call(embedding, "embedding", S.PADDING_IDX),
               S.padded_embedding_call(F.embedding, "F.embedding", S.PADDING_IDX),
               S.sample_embedding, EMBEDDING, "nn.functional.embedding",
               public=S.embedding_call(embedding, "embedding")),
    ]
}


def _identity(input: Tensor) -> Tensor:
    return input


@dataclass(frozen=True)
class Activation:
    """An activation a config can name: our op, torch's, and its gain for Kaiming init,
    √(1 / E[a(z)²]) for z ~ N(0, 1)-ish: relu √2 (half the inputs are zeroed); tanh 5/3 and
    sigmoid 1 as ``torch.nn.init.calculate_gain``; gelu and softplus are relu-like, so √2."""

    name: str
    manual: Callable[[Tensor], Tensor]
    reference: Callable[[Tensor], Tensor]
    gain: float


@dataclass(frozen=True)
class Loss:
    """A loss a config can name (``model.loss``): our op, torch's, and whether it takes the
    network's logits (bce and cross_entropy fuse the sigmoid/softmax) or its outputs (mse)."""

    name: str
    manual: Callable[..., Tensor]
    reference: Callable[..., Tensor]
    takes_logits: bool


_GAINS = {"sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0),
          "leaky_relu": math.sqrt(2.0 / (1 + 0.01**2)), "gelu": math.sqrt(2.0),
          "softplus": math.sqrt(2.0)}

# activations by the name a config uses
ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation("identity", _identity, _identity, 1.0),
    **{name: Activation(name, spec.manual, spec.reference, _GAINS[name])
       for name, spec in OPS.items() if spec.kind == "activation"},
}

# losses by their short config name
LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", L.mse_loss, F.mse_loss, takes_logits=False),
    "bce": Loss("bce", L.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits,
                takes_logits=True),
    "cross_entropy": Loss("cross_entropy", L.cross_entropy, F.cross_entropy, takes_logits=True),
}

BACKPROP_MODES = ("manual", "autograd")


def get_activation(name: str, backprop: str = "manual") -> Callable[[Tensor], Tensor]:
    """The activation called ``name``, manual (our Function) or autograd (plain torch)."""
    if name not in ACTIVATIONS:
        raise unknown_choice("activation", name, ACTIVATIONS)
    check_backprop(backprop)
    entry = ACTIVATIONS[name]
    return entry.manual if backprop == "manual" else entry.reference


def get_loss(name: str, backprop: str = "manual") -> Callable[..., Tensor]:
    """The loss called ``name`` (mse, bce, cross_entropy), manual or autograd."""
    if name not in LOSSES:
        raise unknown_choice("loss", name, LOSSES)
    check_backprop(backprop)
    entry = LOSSES[name]
    return entry.manual if backprop == "manual" else entry.reference


def check_backprop(backprop: str) -> str:
    if backprop not in BACKPROP_MODES:
        raise unknown_choice("backprop", backprop, BACKPROP_MODES)
    return backprop
