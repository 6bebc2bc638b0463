"""The numbers :func:`~neuronlab.gradcheck.check_function` compares: the vector-Jacobian
product Jᵀv by backprop, and the same by central finite differences, in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .grading import F64


def flatten_outputs(out: Any) -> list[Tensor]:
    """A function's output as a list of its tensors (a tensor, or a tuple/list holding some)."""
    return [t for t in (out if isinstance(out, (tuple, list)) else (out,))
            if isinstance(t, Tensor)]


def upstream_gradients(outs: Sequence[Tensor], seed: int) -> list[Tensor]:
    """v: magnitudes in [0.5, 1.5), random signs — no entry near 0 hides an error, and no
    coincidence with inputs drawn by ``randn`` from the same seed."""
    gen = torch.Generator().manual_seed(seed)
    return [((torch.rand(o.shape, generator=gen, dtype=F64) + 0.5)
             * (torch.randint(0, 2, o.shape, generator=gen) * 2 - 1)).to(o) for o in outs]


def vjp(outs: Sequence[Tensor], leaves: Sequence[Tensor],
        vs: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Jᵀv for each leaf (zeros where unused), and the copies of v that backward was given."""
    given = [v.clone() for v in vs]
    grads = torch.autograd.grad(outs, leaves, given, retain_graph=True, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]
    return grads, given


def finite_differences(fn: Callable[..., Any], args: Sequence[Any], i: int,
                       keep: Sequence[int], vs: Sequence[Tensor], f0: Sequence[Tensor],
                       eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """v·(f(x + eps·e_j) − f(x − eps·e_j)) / 2eps for every entry j of ``args[i]``; also the
    jump between the one-sided slopes (large at a kink) and FD's rounding noise, per entry.

    Args:
        fn: the function checked; ``args`` its (float64) arguments.
        i: which argument to perturb.
        keep: the indices of ``fn``'s outputs that are compared (floating, requiring grad).
        vs: one upstream gradient per kept output; ``f0`` those outputs at ``args``.
        eps: the step.

    Returns three tensors shaped like ``args[i]``: the FD estimate of Jᵀv, the jump, the noise.
    """
    base = args[i].detach()
    fd, jump, noise = (torch.zeros(base.numel(), dtype=F64) for _ in range(3))
    for j in range(base.numel()):
        fs = []
        for delta in (eps, -eps):
            x = base.clone(memory_format=torch.contiguous_format)
            x.view(-1)[j] += delta
            fs.append([flatten_outputs(fn(*args[:i], x, *args[i + 1:]))[k] for k in keep])
        terms = list(zip(vs, fs[0], f0, fs[1], strict=True))
        fd[j] = sum((v * (p - m)).sum() for v, p, _, m in terms).item() / (2 * eps)
        jump[j] = abs(sum((v * (p - 2 * o + m)).sum() for v, p, o, m in terms).item()) / eps
        noise[j] = sum((v.abs() * (p.abs() + m.abs()) * (p != m)).sum()
                       for v, p, _, m in terms).item() * torch.finfo(F64).eps / eps
    return fd.view(base.shape), jump.view(base.shape), noise.view(base.shape)
