"""Explanations: what the text claims, shown with numbers, each checked against autograd.

- :mod:`.chain`: the chain rule of one sigmoid neuron on one ``cats`` drawing, node by node,
  and the textbook node z = x·y + sin(x);
- :mod:`.chain_drawing`: that neuron's graph as a picture (and Graphviz source);
- :mod:`.loss`: ln C at equal logits and each loss's first gradient, on real batches;
- :mod:`.weights`: a trained neuron's weights, read in words.

``neuronlab-explain`` (``neuronlab.cli.explain``) prints them.
"""

from .chain import (
    NODE_FUNCTION,
    TOLERANCE,
    ChainReport,
    ForwardRow,
    GradRow,
    NodeReport,
    chain_rule_neuron,
    node_example,
)
from .chain_drawing import chain_rule_dot, draw_chain_rule
from .loss import (
    LN_C_DATASETS,
    Claim,
    bce_grad_claim,
    ce_grad_claim,
    ln_c_claim,
    loss_claims,
    mse_grad_claim,
    real_batch,
)
from .weights import read_weights

__all__ = [
    "LN_C_DATASETS",
    "NODE_FUNCTION",
    "TOLERANCE",
    "ChainReport",
    "Claim",
    "ForwardRow",
    "GradRow",
    "NodeReport",
    "bce_grad_claim",
    "ce_grad_claim",
    "chain_rule_dot",
    "chain_rule_neuron",
    "draw_chain_rule",
    "ln_c_claim",
    "loss_claims",
    "mse_grad_claim",
    "node_example",
    "read_weights",
    "real_batch",
]
