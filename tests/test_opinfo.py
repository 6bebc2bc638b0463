# pytest tests/test_opinfo.py        (add `-m slow` for exhaustive gradcheck on every sample)
"""PyTorch's own test inputs against every op in ``OPS``: a peer's suite as the oracle.

Each op's OpInfo entry (``OpSpec.opinfo``) supplies ``reference_inputs`` — 0-dim, empty,
non-contiguous, broadcast, huge, tiny, NaN and inf — in float64, float32 and bfloat16; forward
and first-order gradients must match torch's to ``assert_close``'s default tolerances (the rules,
and the float64 reference for half-precision kernels that round intermediates, are in
``neuronlab.functional.opinfo``). ``gradcheck``/``gradgradcheck`` run in float64 on the samples
finite differences can judge. ``python scripts/opinfo_report.py`` prints the counts per op.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("expecttest")  # torch.testing._internal needs it (the `dev` extra)

import neuronlab.functional.activations as A  # noqa: E402
from neuronlab.functional import OPS  # noqa: E402
from neuronlab.functional.opinfo import as_function, check_op, gradcheck_samples  # noqa: E402

DTYPES = [torch.float64, torch.float32, torch.bfloat16]

# Samples an op deliberately refuses (a TypeError/ValueError naming the argument), per op and
# dtype. Empty: every OpInfo sample of every op is supported today.
REFUSALS_ALLOWED: dict[tuple[str, torch.dtype], int] = {}

# Every op has at least 6 samples per dtype, but embedding: torch gives it 3 with gradients.
MIN_SAMPLES = {"embedding": 3}


# The fast suite checks at most this many samples per op and dtype, evenly spaced (max pooling
# has ~1000: every kernel × stride × padding × dilation × ceil_mode); the slow test checks all.
FAST_SAMPLES = 80


def _lines(results) -> str:
    return "\n".join(f"  sample {r.index} {r.description}: {r.detail}" for r in results[:5])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("name", list(OPS))
def test_reference_inputs_match_torch(name, dtype):
    _assert_matches_torch(name, dtype, FAST_SAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("name", ["max_pool1d", "max_pool2d"])
def test_every_reference_input_matches_torch(name, dtype):
    _assert_matches_torch(name, dtype, None)


def _assert_matches_torch(name, dtype, at_most):
    report = check_op(OPS[name], [dtype], at_most=at_most)
    counts = report.counts[dtype]
    failed = [r for r in report.results if r.outcome == "failed"]
    assert not failed, f"{name} {dtype}: {len(failed)} of {len(report.results)} failed\n" + _lines(
        failed
    )
    refused = [r for r in report.results if r.outcome == "refused"]
    allowed = REFUSALS_ALLOWED.get((name, dtype), 0)
    assert len(refused) <= allowed, f"{name} {dtype}: refused\n" + _lines(refused)
    assert counts["passed"] >= MIN_SAMPLES.get(name, 6), counts


def test_the_oracle_catches_the_old_relu_nan_bug(monkeypatch):
    """relu' as sign(a) made the gradient at NaN a silent 0: the NaN samples catch it."""
    monkeypatch.setattr(A, "relu_derivative", torch.sign)
    report = check_op(OPS["relu"], [torch.float32])
    failed = [r for r in report.results if r.outcome == "failed"]
    assert failed and all("gradient" in r.detail for r in failed)


@pytest.mark.parametrize("name", list(OPS))
def test_gradcheck_on_opinfo_samples(name):
    """float64 finite differences on torch's ``sample_inputs`` (fast mode: v·J·u)."""
    spec = OPS[name]
    samples = gradcheck_samples(spec, at_most=FAST_SAMPLES // 4)
    assert samples, f"{name}: no sample for gradcheck"
    for sample in samples:
        fn, inputs = as_function(spec, sample)
        assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPS))
def test_gradcheck_on_every_judgeable_sample(name):
    """The full Jacobians and batched gradients, on the (small) reference inputs."""
    spec = OPS[name]
    for sample in gradcheck_samples(spec, exhaustive=True, max_numel=512):
        fn, inputs = as_function(spec, sample)
        assert torch.autograd.gradcheck(fn, inputs, check_batched_grad=True)
        assert torch.autograd.gradgradcheck(fn, inputs, check_batched_grad=True)
