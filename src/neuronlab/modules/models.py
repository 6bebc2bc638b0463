"""A network by name, from config primitives: ``ModelConfig`` (the ``model.*`` group),
``MODELS`` and ``build_network``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import require, require_bool, require_choice, unknown_choice
from ..functional import ACTIVATIONS, BACKPROP_MODES, LOSSES
from ..schema import GroupConfig
from .dense import GRANULARITIES, MLP, Neuron

MODELS = ("neuron", "mlp")
NEURON_LOSSES = ("bce", "mse")  # one output: cross_entropy needs one output per class


@dataclass
class ModelConfig(GroupConfig):
    """``model.*``: which network, and how its backward is computed. Defaults are
    ``conf/model/mlp.yaml``'s.

    Attributes:
        kind: ``neuron`` (one sigmoid unit, two classes) or ``mlp``.
        hidden: hidden layer sizes of an MLP (``[]`` for a neuron).
        activation: the hidden layers' activation (a neuron's own for ``kind=neuron``).
        output_activation: applied to an MLP's output, or ``None`` (logits).
        backprop: ``manual`` (the hand-written Functions) or ``autograd``.
        granularity: with ``manual``, how the backward is cut into hand-written Functions:
            ``op`` (one per op: the node-level chain rule), ``layer`` (one per layer, see
            ``functional.dense``) or ``network`` (the whole network, and the cross-entropy, as
            one Function whose backward is the textbook loop, see ``functional.network``: the
            fastest, so the default). Same gradients at each.
        fused: the old spelling of ``granularity=layer``: ``true`` sets it.
        loss: ``bce``, ``cross_entropy`` or ``mse``.
        compile: ``torch.compile`` the network.
    """

    group: ClassVar[str] = "model"
    kind: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "relu"
    output_activation: str | None = None
    backprop: str = "manual"
    granularity: str = "network"
    fused: bool = False
    loss: str = "cross_entropy"
    compile: bool = False

    def __post_init__(self) -> None:
        require_choice("model.kind", self.kind, MODELS)
        hidden = self.hidden if self.hidden is not None else []
        require(isinstance(hidden, list | tuple), "model.hidden", hidden,
                "must be a list of sizes")
        self.hidden = list(hidden)
        for i, h in enumerate(self.hidden):
            require(isinstance(h, int) and not isinstance(h, bool) and h >= 1,
                    f"model.hidden[{i}]", h, "must be an integer ≥ 1")
        require_choice("model.activation", self.activation, ACTIVATIONS)
        if self.output_activation is not None:
            require_choice("model.output_activation", self.output_activation, ACTIVATIONS)
        require_choice("model.backprop", self.backprop, BACKPROP_MODES)
        require_choice("model.granularity", self.granularity, GRANULARITIES)
        require_bool("model.fused", self.fused)
        if self.fused:  # the old switch: one Function per layer
            self.granularity = "layer"
        require_choice("model.loss", self.loss, LOSSES)
        require_bool("model.compile", self.compile)
        if self.kind == "neuron":  # one output: no hidden layers, no softmax over classes
            require(not self.hidden, "model.hidden", self.hidden,
                    "must be [] with model.kind=neuron (one neuron has no hidden layers); use "
                    "model=mlp for hidden layers")
            require(self.loss in NEURON_LOSSES, "model.loss", self.loss,
                    f"does not fit model.kind=neuron (one output); use one of: "
                    f"{', '.join(NEURON_LOSSES)}, or model=mlp")
            require(self.output_activation is None, "model.output_activation",
                    self.output_activation, "is only used with model.kind=mlp; leave it null")


def build_network(config: ModelConfig, n_in: int, n_classes: int) -> Neuron | MLP:
    """A ``Neuron`` (two classes: one output) or an ``MLP`` ``[n_in, *hidden, n_out]``; with
    ``bce`` on two classes an MLP has one output (the logit of class 1)."""
    if config.kind == "neuron":
        if n_classes != 2:
            raise ValueError(
                f"model=neuron needs a two-class data set, this one has {n_classes} classes; "
                "use model=mlp"
            )
        return Neuron(n_in, activation=config.activation, backprop=config.backprop,
                      granularity=config.granularity)
    if config.kind == "mlp":
        n_out = 1 if (config.loss == "bce" and n_classes == 2) else n_classes
        return MLP([n_in, *config.hidden, n_out], activation=config.activation,
                   output_activation=config.output_activation, backprop=config.backprop,
                   granularity=config.granularity)
    raise unknown_choice("model.kind", config.kind, MODELS)
