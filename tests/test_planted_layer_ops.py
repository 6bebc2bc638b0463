# pytest tests/test_planted_layer_ops.py
"""``neuronlab-check`` fails every planted bug of the layer ops (``check_function`` catching
them is ``test_planted_bugs.py``): the suite's rows for the op, run with the plant in."""

from __future__ import annotations

import pytest
from planted import PLANTS

from neuronlab.functional import OPS
from neuronlab.functional.samplers import LAYER_KINDS
from neuronlab.gradcheck import run_checks

LAYER_PLANTS = [name for name, p in PLANTS.items() if OPS[p.op].kind in LAYER_KINDS]


def test_every_layer_op_has_a_plant():
    assert {PLANTS[n].op for n in LAYER_PLANTS} == {
        name for name, spec in OPS.items() if spec.kind in LAYER_KINDS}


@pytest.mark.parametrize("name", LAYER_PLANTS)
def test_neuronlab_check_fails_the_planted_bug(name, monkeypatch):
    plant = PLANTS[name]
    assert run_checks(ops=[plant.op], dtypes=["float64"], devices=["cpu"], mlp=False).ok
    plant.install(monkeypatch)
    result = run_checks(ops=[plant.op], dtypes=["float64"], devices=["cpu"], mlp=False)
    assert not result.ok and result.failed >= 1, result.summary()
