"""The chain rule, number by number: one sigmoid neuron, one example, and one textbook node.

Every gradient is computed twice: by hand (plain Python floats, float64), as *local
derivative × upstream gradient*, going back node by node; and by torch's autograd on the same
expression in float64. The rows carry both, so a reader (or a test) sees them agree.

The neuron, on one drawing of the ``cats`` data (features x_i, label y ∈ {0, 1})::

    p_i = x_i · w_i        z = Σ p_i + b        a = σ(z)        L = −[y log a + (1−y) log(1−a)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data import load_dataset
from ..functional import binary_cross_entropy_with_logits

TOLERANCE = 1e-10  # manual vs autograd, both in float64


@dataclass(frozen=True)
class ForwardRow:
    """One node of the forward pass: its name, how it is computed, its value."""

    node: str
    formula: str
    value: float


@dataclass(frozen=True)
class GradRow:
    """One step back: ``manual = local × upstream`` is ∂L/∂node, ``autograd`` is torch's."""

    node: str
    formula: str  # the local derivative, e.g. "∂a/∂z = a(1−a)"
    local: float
    upstream: float
    manual: float
    autograd: float

    @property
    def diff(self) -> float:
        return abs(self.manual - self.autograd)

    @property
    def ok(self) -> bool:
        return self.diff <= TOLERANCE


@dataclass(frozen=True)
class ChainReport:
    """The single neuron on one example: forward nodes, backward steps, the fused ∂L/∂z."""

    features: list[str]
    x: list[float]  # (n_in,)
    w: list[float]  # (n_in,)
    b: float
    y: float
    forward: list[ForwardRow]
    backward: list[GradRow]
    fused: list[GradRow]

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.backward + self.fused)

    def value(self, node: str) -> float:
        return next(row.value for row in self.forward if row.node == node)

    def grad(self, node: str) -> float:
        return next(row.manual for row in self.backward if row.node == node)


def _neuron_autograd(x: list[float], w: list[float], b: float, y: float) -> dict[str, float]:
    """∂L/∂(every node) from torch's autograd, float64, with the same graph as the text."""
    x_t = torch.tensor(x, dtype=torch.float64, requires_grad=True)  # (n_in,)
    w_t = torch.tensor(w, dtype=torch.float64, requires_grad=True)  # (n_in,)
    b_t = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    p = x_t * w_t  # (n_in,)
    z = p.sum() + b_t
    a = torch.sigmoid(z)
    loss = -(y * torch.log(a) + (1 - y) * torch.log(1 - a))
    for node in (p, z, a):
        node.retain_grad()
    loss.backward()
    grads = {"L": 1.0, "a": a.grad.item(), "z": z.grad.item(), "b": b_t.grad.item()}
    for i in range(len(x)):
        grads[f"p{i}"] = p.grad[i].item()
        grads[f"w{i}"] = w_t.grad[i].item()
        grads[f"x{i}"] = x_t.grad[i].item()
    return grads


def chain_rule_neuron(seed: int = 0, example: int = 0, weight_std: float = 0.5) -> ChainReport:
    """The chain rule for one sigmoid neuron with BCE loss on one ``cats`` example.

    Args:
        seed: seeds the data set and the neuron's weights (``torch.Generator``).
        example: which drawing (row) of the data set.
        weight_std: std of the normal draw of the weights and the bias (small weights).

    Returns:
        A `ChainReport`; ``report.ok`` is True when every manual gradient equals autograd's
        within `TOLERANCE`.
    """
    dataset = load_dataset("cats", seed=seed)
    if not 0 <= example < len(dataset):
        raise ValueError(f"example={example} is not a row of the cats data "
                         f"(0..{len(dataset) - 1})")
    gen = torch.Generator().manual_seed(seed)
    params = torch.randn(dataset.n_features + 1, generator=gen, dtype=torch.float64) * weight_std
    x = [float(v) for v in dataset.x[example].double()]
    w, b = [float(v) for v in params[:-1]], float(params[-1])
    y = float(dataset.y[example])
    names = dataset.feature_names  # one per entry of x and of w

    # ---- forward, node by node
    p = [xi * wi for xi, wi in zip(x, w, strict=True)]
    z = sum(p) + b
    a = 1 / (1 + math.exp(-z))
    loss = -(y * math.log(a) + (1 - y) * math.log(1 - a))
    n = len(x)
    forward = [ForwardRow(f"x{i}", f"{names[i]} (input)", x[i]) for i in range(n)]
    forward += [ForwardRow(f"w{i}", f"weight of {names[i]}", w[i]) for i in range(n)]
    forward += [ForwardRow(f"p{i}", f"x{i}·w{i}", p[i]) for i in range(n)]
    forward += [
        ForwardRow("b", "bias", b),
        ForwardRow("z", "Σ x_i·w_i + b", z),
        ForwardRow("a", "σ(z) = 1/(1+e^−z)", a),
        ForwardRow("y", "label (1 = cat)", y),
        ForwardRow("L", "−[y log a + (1−y) log(1−a)]", loss),
    ]

    # ---- backward: ∂L/∂node = local derivative × upstream gradient
    auto = _neuron_autograd(x, w, b, y)
    rows = [GradRow("L", "∂L/∂L = 1", 1.0, 1.0, 1.0, auto["L"])]

    def step(node: str, formula: str, local: float, upstream: float) -> float:
        rows.append(GradRow(node, formula, local, upstream, local * upstream, auto[node]))
        return local * upstream

    dl_da = step("a", "∂L/∂a = −y/a + (1−y)/(1−a)", -y / a + (1 - y) / (1 - a), 1.0)
    da_dz = a * (1 - a)
    dl_dz = step("z", "∂a/∂z = a(1−a)", da_dz, dl_da)
    step("b", "∂z/∂b = 1", 1.0, dl_dz)
    dl_dp = [step(f"p{i}", f"∂z/∂p{i} = 1", 1.0, dl_dz) for i in range(n)]
    for i in range(n):
        step(f"w{i}", f"∂p{i}/∂w{i} = x{i}", x[i], dl_dp[i])
    for i in range(n):
        step(f"x{i}", f"∂p{i}/∂x{i} = w{i}", w[i], dl_dp[i])

    # ---- the fused form: the loss's first gradient with the sigmoid folded in
    z_t = torch.tensor([z], dtype=torch.float64, requires_grad=True)
    binary_cross_entropy_with_logits(z_t, torch.tensor([y], dtype=torch.float64)).backward()
    fused = [
        GradRow("z", "chained: ∂L/∂a · ∂a/∂z", da_dz, dl_da, dl_dz, auto["z"]),
        GradRow("z", "fused: ∂L/∂z = a − y", 1.0, a - y, a - y, auto["z"]),
        GradRow("z", "neuronlab BCEWithLogits backward", 1.0, 1.0, z_t.grad.item(), auto["z"]),
    ]
    return ChainReport(names, x, w, b, y, forward, rows, fused)


@dataclass(frozen=True)
class NodeReport:
    """The textbook node z = h(x, y) = x·y + sin(x), under the loss L = z²."""

    x: float
    y: float
    z: float
    loss: float
    rows: list[GradRow]

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)


NODE_FUNCTION = "z = h(x, y) = x·y + sin(x),  L = z²"


def node_example(x: float = 2.0, y: float = -1.5) -> NodeReport:
    """One node z = x·y + sin(x) with upstream ∂L/∂z = 2z (from L = z²).

    ∂L/∂x = ∂L/∂z · ∂z/∂x = 2z · (y + cos x) and ∂L/∂y = ∂L/∂z · ∂z/∂y = 2z · x, by hand and by
    autograd (float64).
    """
    z = x * y + math.sin(x)
    loss = z * z
    x_t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y_t = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    z_t = x_t * y_t + torch.sin(x_t)
    z_t.retain_grad()
    (z_t * z_t).backward()
    dl_dz = 2 * z
    rows = [
        GradRow("z", "∂L/∂z = 2z", 2 * z, 1.0, dl_dz, z_t.grad.item()),
        GradRow("x", "∂z/∂x = y + cos(x)", y + math.cos(x), dl_dz,
                dl_dz * (y + math.cos(x)), x_t.grad.item()),
        GradRow("y", "∂z/∂y = x", x, dl_dz, dl_dz * x, y_t.grad.item()),
    ]
    return NodeReport(x, y, z, loss, rows)
