"""An embedding as a module: a table of vectors, one row per token, looked up by index.

The lookup is a one-hot row times the table, so its backward is a scatter-add: the upstream
gradient of each looked-up vector is added to its row of ∂W (a row used twice gets both),
and the row of ``padding_idx`` gets none (``neuronlab.functional.embedding``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .dense import _check_size, _Switchable
from .switch import op


class Embedding(_Switchable):
    """``num_embeddings`` vectors of size ``embedding_dim``: indices ``(*)`` → ``(*, dim)``.

    Args:
        num_embeddings: rows of the table (the vocabulary).
        embedding_dim: the size of each vector.
        padding_idx: a row that stays zero and gets no gradient (``None``: none).
        backprop: ``"manual"`` or ``"autograd"``.

    ``neuronlab.init.initialize_`` draws the table with fan-in 1 (each output is one entry,
    not a sum), so ``lecun`` gives torch's N(0, 1), and zeroes the ``padding_idx`` row.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 backprop: str = "manual") -> None:
        super().__init__()
        self.num_embeddings = _check_size("num_embeddings", num_embeddings)
        self.embedding_dim = _check_size("embedding_dim", embedding_dim)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, int) or not (
                    -num_embeddings <= padding_idx < num_embeddings):
                raise ValueError(f"padding_idx={padding_idx!r} must be null or an index in "
                                 f"[-{num_embeddings}, {num_embeddings})")
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        self.backprop = backprop
        self.weight = nn.Parameter(torch.randn(num_embeddings, embedding_dim))
        with torch.no_grad():
            self.zero_padding_()

    fan_in = 1  # one entry per output: no sum to keep the variance of

    @property
    def fan_out(self) -> int:
        return self.embedding_dim

    @torch.no_grad()
    def zero_padding_(self) -> None:
        """The ``padding_idx`` row to zero (after any re-initialization)."""
        if self.padding_idx is not None:
            self.weight[self.padding_idx].zero_()

    def forward(self, indices: Tensor) -> Tensor:
        return op("embedding", self._backprop)(indices, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}, "
                f"backprop={self._backprop!r}")
