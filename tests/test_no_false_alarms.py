# pytest tests/test_no_false_alarms.py
"""check_function never fails a right backward: every op in ``OPS``, over seeds, shapes (sizes
1 to 5, one to three dimensions), dtypes and devices, passes against its torch reference with
no warning."""

from __future__ import annotations

import pytest
import torch

from neuronlab.functional import OPS
from neuronlab.gradcheck import check_function


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(OPS))
def test_randomized_correct_ops_raise_no_alarm(name, dtype, device):
    spec, alarms, runs = OPS[name], [], 0
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        for ndim in (1, 2, 3):
            if name == "cross_entropy" and ndim == 3:
                continue  # (N, C) or (C,) only
            shape = tuple(torch.randint(1, 6, (ndim,), generator=gen).tolist())  # sizes 1..5
            inputs = spec.sample(shape, dtype, device, gen)
            report = check_function(spec.manual, *inputs, reference=spec.reference, seed=seed)
            runs += 1
            compared = report.inputs and all(r.reference_rel_error is not None
                                             for r in report.inputs)
            if not report.ok or report.warnings or not compared:
                alarms.append(f"shape={shape} seed={seed}\n{report}")
    assert not alarms, f"{len(alarms)}/{runs} false alarms:\n" + "\n\n".join(alarms)
