"""BatchNorm's chain rule, node by node and as one formula, beside autograd's numbers — the
*backprop ninja* exercise (Karpathy, makemore part 4), done and verified.

Forward, over a batch of n rows (per feature)::

    μ = 1/n Σ x                 (bnmeani)        d = x − μ                  (bndiff)
    v = 1/(n−1) Σ d²            (bnvar; Bessel)  s = (v + ε)^(−½)           (bnvar_inv)
    x̂ = d · s                   (bnraw)          y = γ·x̂ + β

Backward, each node's gradient = its local derivative × the upstream gradient, summed over
every path (d reaches y through x̂ directly *and* through v; x reaches y through d and μ).
Collapsed into one formula (σ = √(v + ε))::

    ∂x = γ·σ⁻¹/n · (n·∂y − Σ∂y − n/(n−1)·x̂·Σ(∂y·x̂))

With the biased variance (1/n, what ``torch.nn.functional.batch_norm`` normalizes with,
``bessel=False``) the factor n/(n−1) is 1. ``Σ∂y`` is the mean term: every x moved μ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

TOLERANCE = 1e-10  # float64: the same sums in another order


@dataclass
class NodeRow:
    """One node's gradient: by hand (local × upstream) and by autograd."""

    node: str
    formula: str
    manual: Tensor
    autograd: Tensor

    @property
    def diff(self) -> float:
        return float((self.manual - self.autograd).abs().max())

    @property
    def ok(self) -> bool:
        return self.diff <= TOLERANCE * max(1.0, float(self.autograd.abs().max()))


@dataclass
class BatchNormReport:
    n: int
    features: int
    bessel: bool
    nodes: list[NodeRow] = field(default_factory=list)  # node by node, last to first
    formulas: list[NodeRow] = field(default_factory=list)  # ∂x in one formula, and the op
    without_mean_term: float = 0.0  # max |∂x| error of the formula with Σ∂y left out

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.nodes + self.formulas)


def batchnorm_chain(n: int = 32, features: int = 4, bessel: bool = True, eps: float = 1e-5,
                    seed: int = 0) -> BatchNormReport:
    """BatchNorm on a float64 batch ``(n, features)`` under the loss L = Σ G ⊙ y (G fixed,
    random: the upstream ∂L/∂y), its backward by hand node by node and in one formula, each
    against autograd; with ``bessel=False`` also ``neuronlab.functional.batch_norm`` (when
    this build has it) against ``torch.nn.functional.batch_norm``."""
    if n < 2:
        raise ValueError(f"n={n} must be ≥ 2 (the variance of one row is undefined)")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g, dtype=torch.float64) * 2 + 0.5
    gamma = torch.rand(features, generator=g, dtype=torch.float64) + 0.5
    beta = torch.randn(features, generator=g, dtype=torch.float64)
    dy = torch.randn(n, features, generator=g, dtype=torch.float64)  # ∂L/∂y
    k = 1.0 / (n - 1) if bessel else 1.0 / n

    # autograd, op by op
    leaves = [t.clone().requires_grad_() for t in (x, gamma, beta)]
    xa, ga, ba = leaves
    nodes = {}
    nodes["bnmeani"] = xa.mean(0, keepdim=True)
    nodes["bndiff"] = xa - nodes["bnmeani"]
    nodes["bndiff2"] = nodes["bndiff"] ** 2
    nodes["bnvar"] = k * nodes["bndiff2"].sum(0, keepdim=True)
    nodes["bnvar_inv"] = (nodes["bnvar"] + eps) ** -0.5
    nodes["bnraw"] = nodes["bndiff"] * nodes["bnvar_inv"]
    y = ga * nodes["bnraw"] + ba
    for t in nodes.values():
        t.retain_grad()
    (y * dy).sum().backward()
    auto = {name: t.grad for name, t in nodes.items()}
    auto.update(x=xa.grad, gamma=ga.grad, beta=ba.grad)

    # by hand: the same nodes, values without a graph
    mu = x.mean(0, keepdim=True)
    d = x - mu
    v = k * (d**2).sum(0, keepdim=True)
    s = (v + eps) ** -0.5
    xhat = d * s
    report = BatchNormReport(n, features, bessel)
    rows = report.nodes
    dgamma = (dy * xhat).sum(0)
    rows.append(NodeRow("γ", "Σ_n ∂y·x̂", dgamma, auto["gamma"]))
    rows.append(NodeRow("β", "Σ_n ∂y", dy.sum(0), auto["beta"]))
    dxhat = dy * gamma
    rows.append(NodeRow("bnraw x̂", "∂y·γ", dxhat, auto["bnraw"]))
    ds = (dxhat * d).sum(0, keepdim=True)
    rows.append(NodeRow("bnvar_inv s", "Σ_n ∂x̂·d", ds, auto["bnvar_inv"]))
    dv = ds * -0.5 * (v + eps) ** -1.5
    rows.append(NodeRow("bnvar v", "∂s · (−½)(v+ε)^(−3/2)", dv, auto["bnvar"]))
    dd2 = torch.ones_like(d) * k * dv
    kname = "1/(n−1)" if bessel else "1/n"
    rows.append(NodeRow("bndiff2 d²", f"{kname} · ∂v (to every row)", dd2, auto["bndiff2"]))
    dd = dxhat * s + 2 * d * dd2
    rows.append(NodeRow("bndiff d", "∂x̂·s + 2d·∂d²  (two paths)", dd, auto["bndiff"]))
    dmu = -dd.sum(0, keepdim=True)
    rows.append(NodeRow("bnmeani μ", "−Σ_n ∂d", dmu, auto["bnmeani"]))
    dx = dd + dmu / n
    rows.append(NodeRow("x", "∂d + ∂μ/n  (two paths)", dx, auto["x"]))

    # one formula
    corr = n / (n - 1) if bessel else 1.0
    sigma_inv = s
    one = gamma * sigma_inv / n * (n * dy - dy.sum(0) - corr * xhat * (dy * xhat).sum(0))
    label = "n/(n−1)·" if bessel else ""
    report.formulas.append(NodeRow(
        "x", f"γ·σ⁻¹/n·(n∂y − Σ∂y − {label}x̂·Σ(∂y·x̂))", one, auto["x"]))
    no_mean = gamma * sigma_inv / n * (n * dy - corr * xhat * (dy * xhat).sum(0))
    report.without_mean_term = float((no_mean - auto["x"]).abs().max())
    if not bessel:
        _add_op_rows(report, x, gamma, beta, dy, eps)
    return report


def _add_op_rows(report: BatchNormReport, x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor,
                 eps: float) -> None:
    """``neuronlab.functional.batch_norm``'s ∂x, ∂γ, ∂β against torch's batch_norm."""
    from .. import functional

    op = getattr(functional, "batch_norm", None)
    if op is None:
        return
    grads = {}
    for name, fn in (("neuronlab", op), ("torch", torch.nn.functional.batch_norm)):
        leaves = [t.clone().requires_grad_() for t in (x, gamma, beta)]
        out = fn(leaves[0], None, None, leaves[1], leaves[2], True, 0.1, eps)
        grads[name] = torch.autograd.grad((out * dy).sum(), leaves)
    for i, what in enumerate(("x", "γ", "β")):
        report.formulas.append(NodeRow(what, "neuronlab.functional.batch_norm's backward",
                                       grads["neuronlab"][i], grads["torch"][i]))
