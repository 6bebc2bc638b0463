"""The chain rule, op by op: one ``torch.autograd.Function`` per op, called like
``torch.nn.functional``. See ``registry.OPS`` for the table of ops."""

from .activations import gelu, leaky_relu, relu, sigmoid, softplus, tanh
from .conv import conv1d, conv2d
from .dropout import dropout
from .embedding import embedding
from .linear import linear
from .losses import binary_cross_entropy_with_logits, cross_entropy, mse_loss
from .norm import batch_norm, layer_norm
from .pooling import avg_pool1d, avg_pool2d, max_pool1d, max_pool2d
from .precision import DtypeRule
from .registry import (
    ACTIVATIONS,
    BACKPROP_MODES,
    LOSSES,
    OPS,
    OpSpec,
    check_backprop,
    get_activation,
    get_loss,
)
from .softmax import log_softmax, softmax

__all__ = [
    "ACTIVATIONS",
    "BACKPROP_MODES",
    "DtypeRule",
    "LOSSES",
    "OPS",
    "OpSpec",
    "avg_pool1d",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "check_backprop",
    "conv1d",
    "conv2d",
    "cross_entropy",
    "gelu",
    "dropout",
    "embedding",
    "get_activation",
    "get_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "max_pool1d",
    "max_pool2d",
    "mse_loss",
    "relu",
    "sigmoid",
    "softmax",
    "softplus",
    "tanh",
]
