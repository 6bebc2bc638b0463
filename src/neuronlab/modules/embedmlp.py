"""``model=embedmlp``: every input feature a token, looked up in one shared embedding table;
an MLP on the looked-up vectors, concatenated.

On the digits (``data=digits data.standardize=false``) each of the 64 pixels holds an
intensity level 0..16: a token of a 17-word vocabulary. Each level is learned as a vector of
``embedding_dim`` numbers instead of read as one number, the 64 vectors are concatenated and
an MLP classifies them. A blank pixel (level 0) is the ``padding_idx``: its vector stays zero
and gets no gradient, so a blank pixel adds nothing, as a zero input adds nothing to a
weighted sum. The lookup's backward is a scatter-add (``neuronlab.functional.embedding``):
each row of the table gathers the gradients of every position that looked it up.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .dense import _check_size
from .embedding import Embedding
from .resmlp import ResMLP


class EmbeddingMLP(ResMLP):
    """``n_tokens`` integer features → ``(B, n_tokens · embedding_dim)`` → an MLP.

    Args:
        n_tokens: features per row, each an integer in ``[0, vocab)`` (a float such as 3.0
            is read as the token 3).
        vocab: rows of the embedding table.
        embedding_dim: the size of each token's vector.
        sizes: ``[*hidden, n_out]``: the MLP after the lookup.
        padding_idx: a token whose vector stays zero (``None``: none).
        activation, norm, dropout, backprop: as :class:`ResMLP`'s (no skips).
    """

    def __init__(self, n_tokens: int, vocab: int, embedding_dim: int, sizes: Sequence[int],
                 padding_idx: int | None = None, activation: str = "relu",
                 norm: str | None = None, dropout: float = 0.0,
                 backprop: str = "manual") -> None:
        n_tokens = _check_size("n_tokens", n_tokens)
        embedding = Embedding(vocab, embedding_dim, padding_idx, backprop=backprop)
        super().__init__([n_tokens * embedding.embedding_dim, *sizes], activation=activation,
                         residual=False, norm=norm, dropout=dropout, backprop=backprop)
        self.embedding = embedding
        self.n_tokens = n_tokens

    def _loops(self) -> bool:
        """Never: the lookup has no math in the network loop (an embedding MLP runs op by op)."""
        return False

    def tokens(self, x: Tensor) -> Tensor:
        """``(B, n_tokens)`` int64 indices of the rows ``x`` (floats holding integers)."""
        return x.reshape(x.shape[0], self.n_tokens).to(torch.int64)

    def embed(self, x: Tensor) -> Tensor:
        """The looked-up vectors of ``x``'s tokens, concatenated: ``(B, n_tokens · dim)``."""
        return self.embedding(self.tokens(x)).flatten(1)

    def features(self, x: Tensor) -> Tensor:
        return super().features(self.embed(x))


def check_tokens(x: Tensor, vocab: int, where: str) -> None:
    """``ValueError`` naming ``where`` unless every entry of ``x`` is an integer in
    ``[0, vocab)`` (what an embedding can look up)."""
    if x.numel() == 0:
        return
    if not torch.equal(x, x.round()):
        raise ValueError(f"{where}: model=embedmlp reads each feature as a token (an integer); "
                         "these features are not integers (standardized? set "
                         "data.standardize=false)")
    low, high = int(x.min()), int(x.max())
    if low < 0 or high >= vocab:
        raise ValueError(f"{where}: tokens run from {low} to {high}, outside [0, model.vocab="
                         f"{vocab}); set model.vocab to at least {high + 1}")
