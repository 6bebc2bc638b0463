"""The concepts as modules, by concept: dense layers (``Neuron``, ``Layer``, ``MLP``), the
layers past the MLP (``Conv1d``, ``Conv2d``, ``MaxPool``, ``AvgPool``, ``LayerNorm``,
``BatchNorm1d``/``2d``, ``Dropout``, ``Embedding``), the networks built of them (``CNN``,
``ResMLP``, ``EmbeddingMLP``) and the models built by name from config (``ModelConfig``, ``MODELS``,
``build_network``)."""

from .cnn import CNN
from .conv import Conv1d, Conv2d
from .dense import MLP, Layer, Neuron
from .dropout import Dropout
from .embedding import Embedding
from .embedmlp import EmbeddingMLP
from .models import MODELS, NEURON_LOSSES, ModelConfig, build_network
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AvgPool, MaxPool
from .resmlp import ResMLP

__all__ = ["CNN", "MLP", "MODELS", "NEURON_LOSSES", "AvgPool", "BatchNorm1d", "BatchNorm2d",
           "Conv1d", "Conv2d", "Dropout", "Embedding", "EmbeddingMLP", "Layer", "LayerNorm",
           "MaxPool", "ModelConfig", "Neuron", "ResMLP", "build_network"]
