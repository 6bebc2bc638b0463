"""neuronlab: how a neural network learns, written out and verified."""

from . import functional, init, optim
from .init import initialize_, zeros_
from .modules import MLP, Layer, Neuron

__all__ = ["MLP", "Layer", "Neuron", "functional", "init", "initialize_", "optim", "zeros_"]
__version__ = "0.1.0"
