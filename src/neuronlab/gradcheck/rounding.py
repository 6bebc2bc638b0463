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
the size of the terms it is made of — the triangle inequality applied at each step:

- forward: ``|x|``, then per layer ``Z̃ = X̃ |W|ᵀ + |b|`` and ``X̃' = |a| + |f'(z)| Z̃`` (what a
  pre-activation is summed from, carried into the activation);
- the loss gradient before its cancellation: cross-entropy ``(softmax(z) + onehot(y))/N``,
  BCE ``(σ(z) + |y|)/N``, MSE ``2(|ŷ| + |y|)/N`` — near a minimum ``p − y`` is tiny, its
  rounding is not;
- backward: ``m ← (m |W|) ⊙ |f'(z)|``, and ``T(W) = mᵀ X̃``, ``T(b) = Σ_batch m``.

``u`` is the compute dtype's (float64 2⁻⁵³, float32 2⁻²⁴ — 2⁻¹¹ with CUDA's TF32 matmuls —,
float16 2⁻¹¹, bfloat16 2⁻⁸). ``c = 16`` (``ROUNDING_FACTOR``): the worst case of a sum of n
terms is n·u·T, but rounding errors add up like a random walk and the two paths share most of
their roundings; what is left is a few ulps (exp, erf, fused vs unfused ops, summation order).
Measured (``scripts/long_runs.py``: 27 runs, 203k steps, 19k audits, float32, float64 and
bf16-mixed) the largest difference was 1.1 u·T (0.07 of the alarm line at 16 u·T); a build of
the ops with other formulas for gelu and mse reached 2.7 u·T. The floor (2⁻¹⁰ of the model's
largest term) keeps a tensor whose terms are tiny next to the model's (dead or saturated units,
underflow) from being judged at a scale no rounding has.

A wrong backward is off by the size of the gradient itself (a sign, a factor, a region): it is
caught whenever the gradient is more than ~c·u of its terms — in float32 ~1e-6, which every
tensor of a training run is until it has converged to rounding noise. In bfloat16 (u = 2⁻⁸) a
batch's gradient is often only a few u of its terms, so a bfloat16 bound can tell only gross
mistakes from rounding; the training audit therefore also recomputes a mixed-precision step
without autocast and holds it to the weights' dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..functional import get_activation
from ..modules import Neuron

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


def _layers(model: nn.Module) -> list[nn.Module]:
    """The chain of ``Layer``s of a neuronlab ``Neuron``, ``Layer`` or ``MLP``."""
    layers = list(model.layers) if hasattr(model, "layers") else [model]
    if not all(hasattr(m, "weight") and hasattr(m, "activation") for m in layers):
        raise TypeError(f"gradient_terms needs a neuronlab Neuron, Layer or MLP, got "
                        f"{type(model).__name__}")
    return layers


def _derivative(name: str, z: Tensor) -> Tensor:
    """|f'(z)| of the activation ``name``, by autograd through its plain-torch twin."""
    z = z.detach().requires_grad_()
    with torch.enable_grad():
        a = get_activation(name, "autograd")(z)
        (d,) = torch.autograd.grad(a, z, torch.ones_like(a))
    return d.abs()


def _loss_gradient_terms(loss: str, out: Tensor, out_size: Tensor, target: Tensor) -> Tensor:
    """The size of the terms ∂L/∂out is the difference of (mean reduction), shaped like out."""
    if loss == "cross_entropy":  # (softmax(z) − onehot(y)) / N, z (N, C)
        onehot = nn.functional.one_hot(target.long(), out.shape[-1]).to(out.dtype)
        return (torch.softmax(out, -1) + onehot) / (out.numel() // out.shape[-1])
    if loss == "mse" and not target.is_floating_point() and out.dim() == target.dim() + 1:
        target = nn.functional.one_hot(target.long(), out.shape[-1])
    y = target.to(out.dtype).reshape(out.shape).abs()
    if loss == "bce":  # (σ(z) − y) / N
        return (torch.sigmoid(out) + y) / out.numel()
    if loss == "mse":  # 2(ŷ − y) / N
        return 2 * (out_size + y) / out.numel()
    raise ValueError(f"loss={loss!r} is not one of: {', '.join(LOSS_TERMS)}")


@torch.no_grad()
def gradient_terms(model: nn.Module, inputs: Tensor, targets: Tensor, loss: str,
                   scale: Tensor | float = 1.0) -> dict[str, Tensor]:
    """For each parameter, the size of the terms its gradient is summed from (see the module
    docstring): rounding moves a correct gradient by a few u times this, at most.

    Args:
        model: a neuronlab ``Neuron``, ``Layer`` or ``MLP``.
        inputs: ``(*, n_in)``, the batch the gradient was computed on.
        targets: as the loss got them: class indices for ``cross_entropy`` (and ``mse`` on an
            MLP: one-hot); float values shaped like the output for ``bce``/``mse``.
        loss: ``cross_entropy``, ``bce`` (both on the logits) or ``mse`` (on the output).
        scale: a factor on the loss (GradScaler's, under ``16-mixed``).

    Returns ``{name: tensor shaped like the parameter}``, in float32 (float64 for a float64
    model), computed outside autocast.
    """
    if loss not in LOSS_TERMS:
        raise ValueError(f"loss={loss!r} is not one of: {', '.join(LOSS_TERMS)}")
    layers = _layers(model)
    dtype = torch.promote_types(layers[0].weight.dtype, torch.float32)
    device = layers[0].weight.device
    with torch.autocast(device.type, enabled=False):
        h = inputs.detach().to(device=device, dtype=dtype)
        h = h.reshape(-1, h.shape[-1])  # (B, n_in), batch dims flat
        size = h.abs()
        xs, zs = [], []  # per layer: the input's size X̃ and the pre-activation z
        for layer in layers:
            w = layer.weight.detach().to(dtype)
            b = None if layer.bias is None else layer.bias.detach().to(dtype)
            z = nn.functional.linear(h, w, b)  # (B, n_out)
            z_size = nn.functional.linear(size, w.abs(), None if b is None else b.abs())
            xs.append(size)
            zs.append(z)
            h = get_activation(layer.activation, "autograd")(z)
            size = h.abs() + _derivative(layer.activation, z) * z_size
        takes_logits = loss in ("cross_entropy", "bce")
        out, out_size = (zs[-1], None) if takes_logits else (h, size)
        if isinstance(model, Neuron):
            out = out.squeeze(-1)  # a Neuron's output drops the unit axis
            out_size = None if out_size is None else out_size.squeeze(-1)
        m = _loss_gradient_terms(loss, out, out_size, targets.to(device)).reshape(zs[-1].shape)
        m = m * scale
        if not takes_logits:  # the last layer's activation is part of the output
            m = m * _derivative(layers[-1].activation, zs[-1])
        named = {id(p): n for n, p in model.named_parameters()}
        terms: dict[str, Tensor] = {}
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            terms[named[id(layer.weight)]] = m.t() @ xs[i]  # (n_out, n_in)
            if layer.bias is not None:
                terms[named[id(layer.bias)]] = m.sum(0)  # (n_out,)
            if i > 0:
                m = (m @ layer.weight.detach().to(dtype).abs()) * _derivative(
                    layers[i - 1].activation, zs[i - 1])
    return terms


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
