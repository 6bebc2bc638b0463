"""neuronlab: how a neural network learns, written out and verified."""

from . import functional, init, optim
from .gradcheck import check_function, compare_gradients, default_tolerance
from .init import initialize_, zeros_
from .modules import MLP, Layer, Neuron

__all__ = [
    "MLP",
    "Layer",
    "Neuron",
    "check_function",
    "compare_gradients",
    "default_tolerance",
    "functional",
    "init",
    "initialize_",
    "optim",
    "zeros_",
]
__version__ = "0.1.0"
