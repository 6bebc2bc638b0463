"""In which dtype each op computes: autocast's choice, and float32 inner math for half inputs.

Two rules, the ones PyTorch's own kernels follow:

1. **Under ``torch.autocast``** an op computes in the dtype autocast gives its torch twin. The
   GEMM (``linear``) is on autocast's lower-precision list: its inputs are cast to bfloat16 /
   float16. The losses are on its float32 list: inputs cast to float32 (the softmax inside
   cross-entropy too). The activations are on no list: they keep their input's dtype (CUDA's
   autocast puts ``softplus`` on the float32 list, so ours does the same there). As in
   autocast, only floating tensors on the autocast device are cast, and never float64.
2. **Half inputs (bfloat16, float16) get float32 inner math** ("opmath"): upcast, compute the
   formula, round once at the end; forward and backward alike.

The autocast cast happens in each public function, *before* ``Function.apply``, as an ordinary
differentiable ``.to(dtype)``; this is what ``torch.amp.custom_fwd(cast_inputs=...)`` does for a
``forward(ctx, ...)``, written so that it works with the PyTorch 2.x ``forward`` without ctx
(``custom_fwd`` reads ``ctx`` from the first argument). Because the cast is recorded by autograd,
the Function's backward returns gradients in the dtype it computed in and the cast's own
backward hands each input its gradient in its own dtype: a float32 weight gets a float32
gradient although the GEMM ran in bfloat16, exactly as with ``F.linear`` under autocast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LOW_PRECISION = "low precision"  # autocast's lower-precision list: cast to its bf16/fp16 dtype
FLOAT32 = "float32"  # autocast's float32 list: cast to float32
INPUT_DTYPE = "input dtype"  # on no list: keep the input's dtype
AUTOCAST_POLICIES = (LOW_PRECISION, FLOAT32, INPUT_DTYPE)

HALF_DTYPES = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class DtypeRule:
    """Where an op computes: under autocast (by device type), and for half-precision inputs.

    Attributes:
        autocast: the autocast list its torch twin is on: ``LOW_PRECISION``, ``FLOAT32`` or
            ``INPUT_DTYPE``.
        autocast_cuda: the same for CUDA, where its list differs from CPU's (``None``: same).
        opmath: half inputs are computed in float32 and rounded once (elementwise math);
            ``False`` for the GEMM, whose kernels accumulate in float32 themselves.
    """

    autocast: str
    autocast_cuda: str | None = None
    opmath: bool = True

    def __post_init__(self) -> None:
        for key in ("autocast", "autocast_cuda"):
            value = getattr(self, key)
            if value is not None and value not in AUTOCAST_POLICIES:
                raise ValueError(
                    f"DtypeRule.{key}={value!r} is not one of: {', '.join(AUTOCAST_POLICIES)}"
                )

    def policy(self, device_type: str) -> str:
        """The autocast policy on ``device_type`` ('cpu', 'cuda', ...)."""
        if device_type == "cuda" and self.autocast_cuda is not None:
            return self.autocast_cuda
        return self.autocast


def autocast_dtype(rule: DtypeRule, device_type: str) -> torch.dtype | None:
    """The dtype autocast casts this op's inputs to on ``device_type``; ``None``: no cast."""
    if not torch.amp.is_autocast_available(device_type):
        return None
    if not torch.is_autocast_enabled(device_type):
        return None
    policy = rule.policy(device_type)
    if policy == LOW_PRECISION:
        return torch.get_autocast_dtype(device_type)
    if policy == FLOAT32:
        return torch.float32
    return None


def autocast_inputs(rule: DtypeRule, *tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Cast ``tensors`` as autocast would for this op (a no-op outside autocast).

    The device type is the first tensor's (the first not ``None``). Like autocast, only
    floating tensors on that device are cast, float64 never, and ``None`` (an absent bias or
    weight) passes through.
    """
    first = next((t for t in tensors if t is not None), None)
    if first is None:
        return tensors
    device_type = first.device.type
    dtype = autocast_dtype(rule, device_type)
    if dtype is None:
        return tensors
    return tuple(_cast(t, dtype, device_type) for t in tensors)


def _cast(t: Tensor | None, dtype: torch.dtype, device_type: str) -> Tensor | None:
    eligible = (
        t is not None
        and t.is_floating_point()
        and t.dtype != torch.float64
        and t.device.type == device_type
    )
    return t.to(dtype) if eligible else t


def opmath(t: Tensor) -> Tensor:
    """The tensor in its compute dtype: float32 for bfloat16/float16, itself otherwise."""
    return t.float() if t.dtype in HALF_DTYPES else t


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for bfloat16/float16, ``dtype`` itself otherwise."""
    return torch.float32 if dtype in HALF_DTYPES else dtype
