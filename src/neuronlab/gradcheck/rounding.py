"""How far apart may two correct backward passes be? A bound from floating-point rounding.

Manual and autograd gradients are both rounded; they differ by rounding, and a fixed relative
tolerance cannot say by how much: a gradient is a *sum* (over the batch, over the next layer's
neurons) and near a minimum its terms cancel, so the gradient shrinks while the rounding of its
terms does not. Textbook error analysis bounds a computed sum by the size of its terms,
``|fl(Σ aᵢbᵢ) − Σ aᵢbᵢ| ≲ u · Σ |aᵢ||bᵢ|`` (u the unit roundoff), so the rule here is::

    error(p) = max |g_manual − g_autograd|          over the tensor p
    bound(p) = c · u · (max T(p) + 2⁻¹⁰ · max_q max T(q))
    alarm when error(p) > tolerance · bound(p)      (tolerance 1 by default)

``T(p)``, from :func:`gradient_terms`, is p's gradient recomputed with every quantity replaced by
the size of the terms it is made of — the triangle inequality applied at each step, to first
order in u:

- forward: ``X̃ = |x|``, then per layer ``Z̃ = X̃ |W|ᵀ + |b|`` (what a pre-activation is summed
  from: its computed value is off by ≲ u·Z̃) and ``X̃' = Ã(z) + |f'(z)| Z̃`` — the activation's
  own terms (``|a|``; gelu ``½|z|(1 + |erf(z/√2)|)``, the two terms ``1 + erf`` cancels) and
  the error of z carried through f;
- the loss gradient ``g = ∂L/∂out`` (mean reduction over N), its terms before they cancel
  *plus the forward's error carried through the loss's second derivative* (``δg ≈ H δz``,
  ``|δz| ≲ u·Z̃`` of the logits)::

      cross-entropy  (softmax(z) + onehot(y))/N + p ⊙ (Z̃ + Σⱼ pⱼ Z̃ⱼ)/N      p = softmax(z)
      BCE            (σ(z) + |y|)/N + σ'(z) Z̃/N
      MSE            2(Ỹ + |y|)/N                      Ỹ = X̃' of the output: δŷ ≲ u·Ỹ

  A confident logit (z ≈ −8, σ(z) ≈ 3e−4) that is a cancelling sum of terms of size ~150 is
  off by ~150 u; that reaches every BCE gradient as σ'(z)·150u/N — 150× the σ(z)/N term alone;
- backward, like the gradient: ``m ← (m |W|) ⊙ (|f'(z)| + |f''(z)| Z̃)`` (f' evaluated at a
  z that is off by u·Z̃), ``T(W) = mᵀ X̃``, ``T(b) = Σ_batch m``.

Each layer type brings its rule for those steps (:data:`TERM_RULES`, a dict from module type
to a :class:`TermRule`); the dense ``Layer`` (and so ``Neuron``) is the one here.

``u`` is the compute dtype's (float64 2⁻⁵³, float32 2⁻²⁴ — 2⁻¹¹ with CUDA's TF32 matmuls —,
float16 2⁻¹¹, bfloat16 2⁻⁸). ``c = 16`` (``ROUNDING_FACTOR``): the worst case of a sum of n
terms is n·u·T, but rounding errors add up like a random walk and the two paths share most of
their roundings; what is left is a few ulps (exp, erf, fused vs unfused ops, summation order).
The floor (2⁻¹⁰ of the model's largest term) keeps a tensor whose terms are tiny next to the
model's (dead or saturated units, underflow) from being judged at a scale no rounding has.
Measured: ``scripts/long_runs.py``, ``docs/bench/long_runs.md``.

A wrong backward is off by the size of the gradient itself (a sign, a factor, a region): it is
caught whenever the gradient is more than ~c·u of its terms — in float32 ~1e-6, which every
tensor of a training run is until it has converged to rounding noise. In bfloat16 (u = 2⁻⁸) a
batch's gradient is often only a few u of its terms, so a bfloat16 bound can tell only gross
mistakes from rounding; the training audit therefore also recomputes a mixed-precision step
without autocast and holds it to the weights' dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..functional import get_activation
from ..modules import Layer
from .activation_terms import _activation_terms, carry_terms

ROUNDING_FACTOR = 16.0  # c: the error allowed, in units of u × the size of the terms
MODEL_FLOOR = 2.0**-10  # the floor, as a fraction of the model's largest term
LOSS_TERMS = ("cross_entropy", "bce", "mse")


def unit_roundoff(dtype: torch.dtype, device: str | torch.device = "cpu") -> float:
    """The unit roundoff u = eps/2 of ``dtype``: float64 2⁻⁵³, float32 2⁻²⁴, float16 2⁻¹¹,
    bfloat16 2⁻⁸; float32 on CUDA with TF32 matmuls allowed counts as TF32 (2⁻¹¹)."""
    if not dtype.is_floating_point:
        raise TypeError(f"dtype={dtype} is not one of: float64, float32, float16, bfloat16")
    if dtype == torch.float32 and torch.device(device).type == "cuda" and (
            torch.backends.cuda.matmul.allow_tf32
            or torch.get_float32_matmul_precision() != "highest"):
        return 2.0**-11
    return torch.finfo(dtype).eps / 2


def loss_targets(loss: str, out: Tensor, targets: Tensor) -> Tensor:
    """``targets`` as the loss ``loss`` takes them next to ``out`` — the one rule the training
    task, :func:`~neuronlab.gradcheck.compare_gradients` and the bound share: class indices
    for ``cross_entropy``; for ``bce``/``mse``, integer labels on an output with one unit per
    class (``out`` ``(N, C)``, C > 1) become one-hot rows, and the targets are float, shaped
    like ``out``."""
    y = targets.to(out.device)
    if loss == "cross_entropy":
        return y
    if not y.is_floating_point() and out.dim() == y.dim() + 1 and out.shape[-1] > 1:
        y = nn.functional.one_hot(y.long(), out.shape[-1])
    y = y.to(out.dtype)
    return y.reshape(out.shape) if y.numel() == out.numel() else y


# ---- the term rules, per layer type --------------------------------------------------------


@dataclass(frozen=True)
class LayerPass:
    """What a rule's forward leaves for its backward: input size X̃, pre-activation z (the
    last layer's: the logits) and size Z̃, output a and size."""

    x_size: Tensor
    z: Tensor
    z_size: Tensor
    out: Tensor
    out_size: Tensor
    carry: Tensor | None = None  # dense: T(f') + |f''(z)| Z̃, what m is multiplied by

    def back_to_z(self, m: Tensor) -> Tensor:
        """The terms at the output, carried back to the pre-activation."""
        return m if self.carry is None else m * self.carry


@dataclass(frozen=True)
class TermRule:
    """How one layer type takes part in :func:`gradient_terms`.

    - ``forward(layer, x, x_size, dtype) -> LayerPass``: the value and the size of the terms,
      from the input's (``(B, n_in)``) value and size, in ``dtype``; its ``carry`` takes the
      terms at the output back to the pre-activation (``m ⊙ carry``; None: m itself);
    - ``backward(layer, p, m_z, dtype) -> ({parameter: T}, m_in)``: the parameters' terms
      (keys as in ``layer.named_parameters()``) and the terms at the layer's input.
    """

    forward: Callable[[nn.Module, Tensor, Tensor, torch.dtype], LayerPass]
    backward: Callable[[nn.Module, LayerPass, Tensor, torch.dtype],
                       tuple[dict[str, Tensor], Tensor]]


def _dense_forward(layer: nn.Module, x: Tensor, x_size: Tensor, dtype: torch.dtype) -> LayerPass:
    w = layer.weight.detach().to(dtype)
    b = None if layer.bias is None else layer.bias.detach().to(dtype)
    z = nn.functional.linear(x, w, b)  # (B, n_out)
    z_size = nn.functional.linear(x_size, w.abs(), None if b is None else b.abs())
    a = get_activation(layer.activation, "autograd")(z)
    d, c = carry_terms(layer.activation, z, z_size)
    return LayerPass(x_size, z, z_size, a, _activation_terms(layer.activation, z, a) + d * z_size,
                     c)


def _dense_backward(layer: nn.Module, p: LayerPass, m_z: Tensor,
                    dtype: torch.dtype) -> tuple[dict[str, Tensor], Tensor]:
    terms = {"weight": m_z.t() @ p.x_size}  # (n_out, n_in)
    if layer.bias is not None:
        terms["bias"] = m_z.sum(0)  # (n_out,)
    return terms, m_z @ layer.weight.detach().to(dtype).abs()


DENSE = TermRule(_dense_forward, _dense_backward)
TERM_RULES: dict[type[nn.Module], TermRule] = {Layer: DENSE}  # Neuron: a Layer


def _rule(layer: nn.Module) -> TermRule:
    """The rule of ``layer``'s type or of the nearest base class that has one."""
    for cls in type(layer).__mro__:
        if cls in TERM_RULES:
            return TERM_RULES[cls]
    raise TypeError(f"gradient_terms has no term rule for a {type(layer).__name__} layer; "
                    f"known: {', '.join(sorted(c.__name__ for c in TERM_RULES))}")


def _layers(model: nn.Module) -> list[nn.Module]:
    """The chain of layers of a neuronlab ``Neuron``, ``Layer`` or ``MLP`` (each has a rule)."""
    layers = list(model.layers) if hasattr(model, "layers") else [model]
    return [layer for layer in layers if _rule(layer)]


def _loss_gradient_terms(loss: str, last: LayerPass, target: Tensor) -> Tensor:
    """The size of the terms of ∂L/∂out (mean reduction) plus the forward's error carried
    through the loss's second derivative; shaped like the last layer's output ``(B, n_out)``."""
    z, zs = last.z, last.z_size
    if loss == "cross_entropy":  # (softmax(z) − onehot(y))/N;  H = (diag(p) − ppᵀ)/N
        p = torch.softmax(z, -1)
        onehot = nn.functional.one_hot(target.long().reshape(-1), z.shape[-1]).to(z.dtype)
        carried = p * (zs + (p * zs).sum(-1, keepdim=True))
        return (p + onehot + carried) / z.shape[0]
    y = loss_targets(loss, z, target).abs()
    if loss == "bce":  # (σ(z) − y)/N;  H = σ'(z)/N
        s = torch.sigmoid(z)
        return (s + y + s * (1 - s) * zs) / z.numel()
    if loss == "mse":  # 2(ŷ − y)/N;  H = 2/N, and ŷ is off by ≲ u·Ỹ
        return 2 * (last.out_size + y) / z.numel()
    raise ValueError(f"loss={loss!r} is not one of: {', '.join(LOSS_TERMS)}")


@torch.no_grad()
def gradient_terms(model: nn.Module, inputs: Tensor, targets: Tensor, loss: str,
                   scale: Tensor | float = 1.0) -> dict[str, Tensor]:
    """For each parameter, the size of the terms its gradient is summed from and of the
    forward's rounding carried into it (module docstring): rounding moves a correct gradient
    by a few u times this, at most.

    Args:
        model: a neuronlab ``Neuron``, ``Layer`` or ``MLP`` (a chain of layers whose types
            have a rule in :data:`TERM_RULES`).
        inputs: ``(*, n_in)``, the batch the gradient was computed on.
        targets: class indices, or float values shaped like the output, as
            :func:`loss_targets` takes them (``bce``/``mse`` on one output per class: labels
            become one-hot rows, as the training task builds them).
        loss: ``cross_entropy``, ``bce`` (both on the logits) or ``mse`` (on the output).
        scale: a factor on the loss (GradScaler's, under ``16-mixed``).

    Returns ``{name: tensor shaped like the parameter}``, in float32 (float64 for a float64
    model), computed outside autocast.
    """
    if loss not in LOSS_TERMS:
        raise ValueError(f"loss={loss!r} is not one of: {', '.join(LOSS_TERMS)}")
    layers = _layers(model)
    first = next(layers[0].parameters())
    dtype, device = torch.promote_types(first.dtype, torch.float32), first.device
    with torch.autocast(device.type, enabled=False):
        h = inputs.detach().to(device=device, dtype=dtype)
        h = h.reshape(-1, h.shape[-1])  # (B, n_in), batch dims flat
        size = h.abs()
        passes = []
        for layer in layers:
            passes.append(_rule(layer).forward(layer, h, size, dtype))
            h, size = passes[-1].out, passes[-1].out_size
        m = _loss_gradient_terms(loss, passes[-1], targets.to(device)) * scale
        if loss not in ("cross_entropy", "bce"):  # the last activation is part of the output
            m = passes[-1].back_to_z(m)
        terms: dict[int, Tensor] = {}  # by id of the parameter
        for i in range(len(layers) - 1, -1, -1):
            rule = _rule(layers[i])
            local, m = rule.backward(layers[i], passes[i], m, dtype)
            terms.update({id(p): local[n] for n, p in layers[i].named_parameters()
                          if n in local})
            if i > 0:
                m = passes[i - 1].back_to_z(m)
    return {n: terms[id(p)] for n, p in model.named_parameters() if id(p) in terms}


def rounding_bounds(terms: Sequence[Tensor], u: float,
                    factor: float = ROUNDING_FACTOR) -> Tensor:
    """``(P,)``: per tensor, ``c · u · (max T(p) + 2⁻¹⁰ · max_q max T(q))``, on the device."""
    sizes = torch.stack([t.abs().amax() if t.numel() else t.new_zeros(()) for t in terms])
    return factor * u * (sizes + MODEL_FLOOR * sizes.amax())


def max_differences(grads: Sequence[Tensor], refs: Sequence[Tensor]) -> Tensor:
    """``(P,)``: per tensor ``max |g − r|`` in float64 (float32 on devices without it); equal
    non-finite entries (both NaN, the same inf) agree, a NaN or inf on one side only is inf."""
    out = []
    for g, r in zip(grads, refs, strict=True):
        wide = torch.float64 if g.device.type != "mps" else torch.float32
        g, r = g.detach().to(wide), r.detach().to(device=g.device, dtype=wide)
        same = (g == r) | (g.isnan() & r.isnan())
        d = torch.where(same, 0.0, (g - r).abs())
        d = torch.where(d.isnan(), torch.inf, d)  # NaN on one side only
        out.append(d.amax() if d.numel() else d.new_zeros(()))
    return torch.stack(out)


def error_ratios(differences: Tensor, bounds: Tensor) -> Tensor:
    """``differences / bounds``: 0 where they agree exactly, inf over a zero bound."""
    bounds = bounds.to(differences.dtype)
    return torch.where(differences == 0, 0.0, differences / bounds)


def compare_to_bound(grads: Sequence[Tensor], refs: Sequence[Tensor],
                     terms: Sequence[Tensor], u: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per tensor, on the device: ``(ratios, differences, bounds)`` — ``max |g − r|``
    (:func:`max_differences`), its rounding bound from the terms ``T`` (:func:`rounding_bounds`)
    and their ratio (:func:`error_ratios`; above 1 is more than rounding explains)."""
    diffs = max_differences(grads, refs)
    bounds = rounding_bounds(terms, u).to(diffs)
    return error_ratios(diffs, bounds), diffs, bounds
