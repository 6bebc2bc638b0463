"""A network by name, from config primitives: ``ModelConfig`` (the ``model.*`` group),
``MODELS`` and ``build_network``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import is_number, require, require_bool, require_choice, unknown_choice
from ..functional import ACTIVATIONS, BACKPROP_MODES, LOSSES
from ..schema import GroupConfig
from .cnn import CNN, NORMS, POOLS
from .dense import GRANULARITIES, MLP, Neuron
from .embedmlp import EmbeddingMLP
from .resmlp import ResMLP

MODELS = ("neuron", "mlp", "cnn", "resmlp", "embedmlp")
NEURON_LOSSES = ("bce", "mse")  # one output: cross_entropy needs one output per class


@dataclass
class ModelConfig(GroupConfig):
    """``model.*``: which network, and how its backward is computed. Defaults are
    ``conf/model/mlp.yaml``'s.

    Attributes:
        kind: ``neuron`` (one sigmoid unit, two classes), ``mlp``, ``cnn``, ``resmlp`` or
            ``embedmlp`` (see ``conf/model/<kind>.yaml``).
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
        norm: ``batch``, ``layer`` or ``None``: each hidden layer normalized between its
            weighted sum and its activation (mlp, cnn, resmlp).
        dropout: drop probability of the hidden features (mlp, cnn, resmlp, embedmlp);
            0 = none.
        pool: ``max``, ``avg`` or ``None``: cnn only, a window-2 pooling after each
            convolution's activation (the convolutions then run with stride 1).
        vocab, embedding_dim, padding_idx: embedmlp only: each input feature is a token in
            ``[0, vocab)``, looked up as a vector of ``embedding_dim``; the ``padding_idx``
            token's vector stays zero.

    For ``cnn``, ``hidden`` lists each convolution's output channels; for ``resmlp``, the
    widths (the residual ones equal).
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
    norm: str | None = None
    dropout: float = 0.0
    pool: str | None = None
    vocab: int | None = None
    embedding_dim: int = 4
    padding_idx: int | None = None

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
        self._check_past_mlp()
        if self.kind == "neuron":  # one output: no hidden layers, no softmax over classes
            require(not self.hidden, "model.hidden", self.hidden,
                    "must be [] with model.kind=neuron (one neuron has no hidden layers); use "
                    "model=mlp for hidden layers")
            require(self.loss in NEURON_LOSSES, "model.loss", self.loss,
                    f"does not fit model.kind=neuron (one output); use one of: "
                    f"{', '.join(NEURON_LOSSES)}, or model=mlp")
            require(self.output_activation is None, "model.output_activation",
                    self.output_activation, "is only used with model.kind=mlp; leave it null")


    def _check_past_mlp(self) -> None:
        """``norm``, ``dropout`` and what ``cnn``/``resmlp`` need of ``hidden``."""
        if self.norm is not None:
            require_choice("model.norm", self.norm, NORMS)
        require(is_number(self.dropout) and 0 <= self.dropout < 1, "model.dropout",
                self.dropout, "must be a number in [0, 1)")
        if self.kind == "neuron":
            require(self.norm is None and self.dropout == 0, "model.norm/dropout",
                    (self.norm, self.dropout), "need hidden layers; use model=mlp")
        if self.pool is not None:
            require_choice("model.pool", self.pool, POOLS)
            require(self.kind == "cnn", "model.pool", self.pool,
                    f"is only used with model.kind=cnn, not {self.kind}; leave it null")
        self._check_embedding()
        if self.kind in ("cnn", "resmlp", "embedmlp"):
            require(bool(self.hidden), "model.hidden", self.hidden,
                    f"must list at least one size with model.kind={self.kind}")
            require(not self.fused, "model.fused", self.fused,
                    f"is only used with model.kind=mlp or neuron, not {self.kind}")
        if self.norm is not None or self.dropout:
            require(not self.fused, "model.fused", self.fused,
                    "is not used with model.norm or model.dropout (no fused layer has them)")
        if self.kind == "resmlp":
            require(len(set(self.hidden)) == 1, "model.hidden", self.hidden,
                    "must repeat one width with model.kind=resmlp (h + layer(h))")
        if self.kind in ("cnn", "resmlp", "embedmlp") or self.norm or self.dropout:
            require(self.output_activation is None, "model.output_activation",
                    self.output_activation, f"must be null with model.kind={self.kind}, "
                    "norm or dropout (logits out)")

    def _check_embedding(self) -> None:
        """``vocab``, ``embedding_dim``, ``padding_idx``: set for embedmlp only."""
        def size(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1
        if self.kind != "embedmlp":
            require(self.vocab is None and self.padding_idx is None, "model.vocab/padding_idx",
                    (self.vocab, self.padding_idx),
                    f"are only used with model.kind=embedmlp, not {self.kind}; leave them null")
            return
        require(size(self.vocab), "model.vocab", self.vocab,
                "must be an integer ≥ 1 with model.kind=embedmlp (the number of tokens)")
        require(size(self.embedding_dim), "model.embedding_dim", self.embedding_dim,
                "must be an integer ≥ 1")
        if self.padding_idx is not None:
            require(isinstance(self.padding_idx, int) and not isinstance(self.padding_idx, bool)
                    and 0 <= self.padding_idx < self.vocab, "model.padding_idx",
                    self.padding_idx, f"must be null or a token in [0, {self.vocab})")


def build_network(config: ModelConfig, n_in: int, n_classes: int,
                  layout: Sequence[int] | None = None
                  ) -> Neuron | MLP | CNN | ResMLP | EmbeddingMLP:
    """A ``Neuron`` (two classes: one output) or an ``MLP`` ``[n_in, *hidden, n_out]``; with
    ``bce`` on two classes an MLP has one output (the logit of class 1). ``cnn`` views each
    row as ``layout`` (the data set's; ``None``: one channel of ``n_in`` positions);
    ``resmlp``, or ``mlp`` with ``norm``/``dropout``, is a ``ResMLP``."""
    if config.kind == "neuron":
        if n_classes != 2:
            raise ValueError(
                f"model=neuron needs a two-class data set, this one has {n_classes} classes; "
                "use model=mlp"
            )
        return Neuron(n_in, activation=config.activation, backprop=config.backprop,
                      granularity=config.granularity)
    n_out = 1 if (config.loss == "bce" and n_classes == 2) else n_classes
    if config.kind == "cnn":
        return CNN(tuple(layout) if layout else (1, n_in), n_out, channels=config.hidden,
                   activation=config.activation, norm=config.norm, dropout=config.dropout,
                   pool=config.pool, backprop=config.backprop,
                   granularity=config.granularity)
    if config.kind == "embedmlp":
        return EmbeddingMLP(n_in, config.vocab, config.embedding_dim, [*config.hidden, n_out],
                            padding_idx=config.padding_idx, activation=config.activation,
                            norm=config.norm, dropout=config.dropout, backprop=config.backprop)
    if config.kind == "resmlp" or config.norm or config.dropout:
        return ResMLP([n_in, *config.hidden, n_out], activation=config.activation,
                      residual=config.kind == "resmlp", norm=config.norm,
                      dropout=config.dropout, backprop=config.backprop,
                      granularity=config.granularity)
    if config.kind == "mlp":
        return MLP([n_in, *config.hidden, n_out], activation=config.activation,
                   output_activation=config.output_activation, backprop=config.backprop,
                   granularity=config.granularity)
    raise unknown_choice("model.kind", config.kind, MODELS)


def check_batch_rows(config: ModelConfig, n_train: int, batch_size: int | None) -> None:
    """``ValueError`` naming ``data.batch_size`` where a dense batch norm would see a training
    batch of one row (its variance over the batch is then 0/0: torch refuses it too)."""
    if config.norm != "batch" or config.kind == "cnn":  # a conv's channel spans positions
        return
    size = n_train if batch_size is None else min(batch_size, n_train)
    last = n_train % size or size
    if size == 1 or last == 1:
        fits = next((b for b in range(max(size, 2), n_train + 1) if n_train % b != 1), None)
        hint = f"pick one that does not (e.g. {fits}) or " if fits else "use "
        raise ValueError(
            f"model.norm=batch needs ≥ 2 rows in every training batch: data.batch_size="
            f"{batch_size} on {n_train} training rows leaves a batch of 1; {hint}"
            "model.norm=layer")
