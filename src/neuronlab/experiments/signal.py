"""Signal propagation at initialization: how the std of activations and gradients changes with
depth, for a given init (distribution × scheme × scale) — before any training.

A square MLP (``depth`` layers of ``width`` units, the activation on every layer, so each
layer is the same map) takes a standard-normal batch ``x``; a standard-normal vector ``g``
is back-propagated from the top (the loss is ``Σ h_L · g``). Per layer ``l`` we measure

- ``act_var[l]``: Var(h_l), the layer's output after its activation;
- ``grad_var[l]``: Var(∂L/∂z_l), the back-propagated gradient at the layer's weighted sum
  (Glorot & Bengio's ∂Cost/∂s), which sets the size of ∂L/∂W_l = ∂L/∂z_l ⊗ h_(l−1).

Variances are averaged over ``draws`` independent draws of weights, ``x`` and ``g``.
Theory (infinite width): ReLU halves Var(z) per layer unless the weights' variance is 2/n
(Kaiming, He et al. 2015); tanh is ≈ linear near 0, so 1/n (LeCun = Xavier for a square net)
keeps the signal roughly flat while ×s multiplies each layer's gain by ≈ s² in variance
(Glorot & Bengio 2010).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..functional import get_activation
from ..init import initialize_
from ..modules import MLP


@dataclass(frozen=True)
class Signal:
    """Per-layer variances at initialization, averaged over draws (index 0 = first layer)."""

    activation: str
    scheme: str
    distribution: str
    scale: float
    act_var: np.ndarray  # (depth,)
    grad_var: np.ndarray  # (depth,)

    @property
    def act_std(self) -> np.ndarray:
        return np.sqrt(self.act_var)

    @property
    def grad_std(self) -> np.ndarray:
        return np.sqrt(self.grad_var)

    @property
    def act_ratio(self) -> float:
        """Var(h_last) / Var(h_first): < 1 the signal fades going up, > 1 it grows."""
        return float(self.act_var[-1] / self.act_var[0])

    @property
    def grad_ratio(self) -> float:
        """Var(∂L/∂z_first) / Var(∂L/∂z_last): < 1 gradients vanish going down, > 1 explode."""
        return float(self.grad_var[0] / self.grad_var[-1])


def signal_propagation(
    activation: str = "relu",
    scheme: str = "kaiming",
    distribution: str = "normal",
    scale: float = 1.0,
    depth: int = 20,
    width: int = 256,
    batch: int = 512,
    draws: int = 3,
    seed: int = 0,
) -> Signal:
    """Measure per-layer activation and gradient variance of a freshly initialized MLP.

    Args:
        activation: the activation of every layer (a name from ``ACTIVATIONS``).
        scheme, distribution, scale: the init, as ``neuronlab.init.initialize_`` takes them.
        depth: number of layers L (weight matrices), each ``(width, width)``.
        width: units per layer n.
        batch: rows of the standard-normal input ``x`` ``(batch, width)``.
        draws: independent draws (weights, ``x``, ``g``) to average the variances over.
        seed: seeds the ``torch.Generator`` of every draw.
    """
    if depth < 1 or width < 1 or batch < 2 or draws < 1:
        raise ValueError(f"depth={depth}, width={width}, batch={batch}, draws={draws}: need "
                         "depth, width, draws ≥ 1 and batch ≥ 2")
    act_var = np.zeros(depth)
    grad_var = np.zeros(depth)
    act = get_activation(activation, "autograd")
    for draw in range(draws):
        generator = torch.Generator().manual_seed(seed * 10_007 + draw)
        net = MLP([width] * (depth + 1), activation=activation, output_activation=activation,
                  backprop="autograd")
        initialize_(net, distribution=distribution, scheme=scheme, scale=scale,
                    generator=generator)
        h = torch.randn(batch, width, generator=generator)  # (B, n)
        pre: list[torch.Tensor] = []
        outs: list[torch.Tensor] = []
        for layer in net.layers:
            z = layer.pre_activation(h)  # (B, n)
            z.retain_grad()
            h = act(z)
            pre.append(z)
            outs.append(h)
        g = torch.randn(h.shape, generator=generator)  # (B, n)
        (h * g).sum().backward()
        act_var += np.array([float(out.detach().double().var()) for out in outs])
        grad_var += np.array([float(z.grad.double().var()) for z in pre])
    return Signal(activation, scheme, distribution, float(scale), act_var / draws,
                  grad_var / draws)
