"""The concepts as modules, by concept: dense layers (``Neuron``, ``Layer``, ``MLP``) and the
models built by name from config (``ModelConfig``, ``MODELS``, ``build_network``)."""

from .dense import MLP, Layer, Neuron
from .models import MODELS, NEURON_LOSSES, ModelConfig, build_network

__all__ = ["MLP", "MODELS", "NEURON_LOSSES", "Layer", "ModelConfig", "Neuron", "build_network"]
