# python scripts/break_audit_fixes.py [--fix dropout,derivative] CASE ...  (cases as break_audit.py)
"""The two fixes suggested by scripts/break_audit.py's counterexamples, tried from the outside
(monkeypatched; src/ unchanged), so the same runs can be compared with and without them.

``dropout``: ``network_gradient_terms`` runs its forward without the training step's dropout
mask — the values (so each f'(z), f''(z), a norm's statistics, the softmax) are a network
with no unit dropped, and only the sizes are scaled by 1/(1 − p). A unit on in training can be
off there (ReLU: carry 0) and every term below it is 0: ``T`` no longer covers the gradient.
The fix draws the same mask (the step's RNG state, which the audit keeps for its autograd
pass) and applies it to the values and the sizes, at the same places as the forward.

``derivative``: the carry ``|f'(z)| + |f''(z)|·Z̃`` assumes f' is computed to a few u of its
value; tanh' = 1 − a² (and gelu' = ½(1 + erf) + zφ) are differences that cancel where the
unit saturates, so two correct implementations differ there by ~u in absolute terms. The fix
uses the size of f''s own terms (tanh: 1 + a²; gelu: ½(1 + |erf|) + |z|φ; sigmoid:
a(1 + a)) in place of |f'| in the carry.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys

import torch
from torch import nn

import neuronlab.gradcheck.conv_terms as ct
import neuronlab.gradcheck.rounding as rd
import neuronlab.training.audit as audit_mod
from neuronlab.functional import get_activation
from neuronlab.functional.dropout import dropout_noise

_STEP_RNG: list = [None]  # the audited step's RNG state, set around on_after_backward


def _term_sizes(name: str, z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The size of the terms the derivative f'(z) is computed from (≥ |f'(z)|)."""
    if name == "tanh":
        a = torch.tanh(z)
        return 1 + a * a
    if name == "sigmoid":
        a = torch.sigmoid(z)
        return a * (1 + a)
    if name == "gelu":
        return 0.5 * (1 + torch.erf(z.abs() / math.sqrt(2))) + z.abs() * torch.exp(
            -0.5 * z * z) / math.sqrt(2 * math.pi)
    return d


def _carry(name, z, z_size):
    d, dd = rd._derivatives(name, z)
    return d, torch.maximum(d, _term_sizes(name, z, d)) + dd * z_size


FIXES = {"derivative": False, "dropout": False}


def _mask_like(model, h):
    """The step's dropout noise for ``h`` (drawn in the forward's order), or None."""
    drop = getattr(model, "dropout", None)
    if drop is None or not model.training or drop.p == 0 or not FIXES["dropout"]:
        return None
    return dropout_noise(h, drop.p)


@torch.no_grad()
def network_gradient_terms(model, inputs, targets, loss, scale=1.0):
    """conv_terms.network_gradient_terms with the two fixes (marked FIX)."""
    if isinstance(model, ct.Neuron | ct.Layer | ct.MLP):
        return ct.gradient_terms(model, inputs, targets, loss, scale)
    if not isinstance(model, ct.CNN | ct.ResMLP):
        raise ct.TermsNotCovered(f"no rounding bound for a {type(model).__name__} yet")
    if loss not in ct.LOSS_TERMS or loss == "mse":
        raise ct.TermsNotCovered("loss")
    p0 = model.layers[0].weight
    dtype = torch.promote_types(p0.dtype, torch.float32)
    k = ct._dropout_factor(model)
    pools = getattr(model, "pools", None) if getattr(model, "pool", None) else None
    named = {id(p): n for n, p in model.named_parameters()}
    terms = {}
    noises = []  # FIX dropout: the masks the step drew, in order

    def keep(layer, t_w, t_b):
        if t_w is not None and layer.weight is not None:
            terms[named[id(layer.weight)]] = t_w
        if t_b is not None and getattr(layer, "bias", None) is not None:
            terms[named[id(layer.bias)]] = t_b

    rng = audit_mod._same_rng(_STEP_RNG[0]) if FIXES["dropout"] else contextlib.nullcontext()
    with torch.autocast(p0.device.type, enabled=False), rng:
        if isinstance(model, ct.EmbeddingMLP):
            h, size = ct._embedding_terms(model, inputs, dtype)
        else:
            h = inputs.detach().to(device=p0.device, dtype=dtype).reshape(inputs.shape[0], -1)
            if isinstance(model, ct.CNN):
                h = h.reshape(h.shape[0], *model.layout)
            size = h.abs()
        sizes, carries, norms, pooled = [], [], [], []
        hidden = list(model.layers[:-1])
        for i, layer in enumerate(hidden):
            z, z_size = ct._sized(layer, h, size, dtype)
            sizes.append(size)
            if model.norm is not None:
                z, z_size, ctx = ct._norm_forward(model.norms[i], z, z_size, dtype)
                norms.append(ctx)
            a = get_activation(model.activation, "autograd")(z)
            if FIXES["derivative"]:
                d, carry = _carry(model.activation, z, z_size)
            else:
                d, dd = ct._derivatives(model.activation, z)
                carry = d + dd * z_size
            carries.append(carry)
            a_size = ct._activation_terms(model.activation, z, a) + d * z_size
            if pools is not None:
                a, a_size, ctx = ct._pool_forward(pools[i], a, a_size)
                pooled.append(ctx)
            if isinstance(model, ct.ResMLP) and model.residual and i > 0:
                h, size = h + a, size + a_size
            else:
                h, size = a, a_size
            if isinstance(model, ct.ResMLP):
                noise = _mask_like(model, h)
                noises.append(noise)
                if noise is None:
                    size = size * k
                else:  # FIX dropout: the step's mask on the values and the sizes
                    h, size = h * noise, size * noise
        shape = h.shape
        if isinstance(model, ct.CNN):
            h, size = h.flatten(1), size.flatten(1)
            noise = _mask_like(model, h)
            noises.append(noise)
            if noise is None:
                size = size * k
            else:
                h, size = h * noise, size * noise
        last = model.layers[-1]
        z, z_size = ct._sized(last, h, size, dtype)
        m = ct._loss_gradient_terms(loss, ct.LayerPass(size, z, z_size, z, z_size),
                                    targets.to(p0.device)).reshape(z.shape) * scale
        t_w, t_b, m = ct._back(last, size, m, dtype)
        keep(last, t_w, t_b)
        if isinstance(model, ct.CNN):
            m = m * (k if noises[-1] is None else noises[-1])
            m = m.reshape(shape)
        for i in range(len(hidden) - 1, -1, -1):
            if isinstance(model, ct.ResMLP):
                m = m * (k if noises[i] is None else noises[i])
            m_z = (m if pools is None else ct._pool_back(pooled[i], m)) * carries[i]
            if model.norm is not None:
                t_g, t_n, m_z = ct._norm_back(norms[i], m_z)
                keep(model.norms[i], t_g, t_n)
            t_w, t_b, m_in = ct._back(hidden[i], sizes[i], m_z, dtype)
            keep(hidden[i], t_w, t_b)
            skip = isinstance(model, ct.ResMLP) and model.residual and i > 0
            m = m + m_in if skip else m_in
        if isinstance(model, ct.EmbeddingMLP):
            keep(model.embedding, ct._embedding_back(model, inputs, m), None)
    return terms


def _dense_forward(layer: nn.Module, x, x_size, dtype):
    """rounding._dense_forward with the derivative fix in the carry."""
    p = _ORIGINAL_DENSE_FORWARD(layer, x, x_size, dtype)
    if not FIXES["derivative"]:
        return p
    _, carry = _carry(layer.activation, p.z, p.z_size)
    return rd.LayerPass(p.x_size, p.z, p.z_size, p.out, p.out_size, carry)


_ORIGINAL_DENSE_FORWARD = rd._dense_forward


def install(mp, fixes: list[str]) -> None:
    """Monkeypatch the audit with the fixes named (``dropout``, ``derivative``)."""
    for f in fixes:
        if f not in FIXES:
            raise ValueError(f"--fix {f!r} is not one of: {', '.join(FIXES)}")
        FIXES[f] = True
    original = audit_mod.GradientAudit.on_after_backward

    def on_after_backward(self, trainer, pl_module):
        _STEP_RNG[0] = self._rng
        return original(self, trainer, pl_module)

    mp.setattr(audit_mod.GradientAudit, "on_after_backward", on_after_backward)
    mp.setattr(audit_mod, "network_gradient_terms", network_gradient_terms)
    mp.setitem(rd.TERM_RULES, rd.Layer, rd.TermRule(_dense_forward, rd._dense_backward))


def main(argv: list[str] | None = None) -> int:
    import pytest

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import break_audit

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fix", default="dropout,derivative")
    args, rest = parser.parse_known_args(argv)
    with pytest.MonkeyPatch.context() as mp:
        install(mp, [f for f in args.fix.split(",") if f])
        return break_audit.main(rest)


if __name__ == "__main__":
    sys.exit(main())
