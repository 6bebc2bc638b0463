# pytest tests/test_planted_bugs.py
"""check_function never passes a wrong backward: every bug of the planted-bug table
(``tests/planted.py``) is caught, against the torch reference and on finite differences alone,
and the same check without the plant passes — so a failure is the bug's, not the inputs'."""

from __future__ import annotations

import pytest
import torch
from planted import PLANTS, Helper, Plant, params

import neuronlab.functional.activations as A
from neuronlab.functional import OPS
from neuronlab.gradcheck import GOOD, check_function

NAMES = params()



def _check(plant: Plant, with_reference: bool = True, shape: tuple[int, ...] | None = None):
    return check_function(plant.manual, *plant.inputs(shape),
                          reference=plant.reference if with_reference else None)


def _assert_caught(plant: Plant, report, error: str) -> None:
    assert not report.ok and "FAILED" in str(report), str(report)
    if plant.finding is None:  # a value-level bug: the numbers themselves are off
        assert any(r.grade == "wrong" and getattr(r, error) > GOOD
                   for r in report.inputs), str(report)
    elif plant.blamed is None:
        assert any(plant.finding in e for e in report.errors), str(report)
    else:
        row = report.inputs[plant.blamed]
        assert row.grade == "error" and any(plant.finding in p for p in row.problems), str(report)


def test_the_table_covers_every_kind_of_bug():
    kinds = {p.breaks for p in PLANTS.values()}
    assert {"sign", "factor", "near-miss constant", "region", "mirrored", "missing term",
            "upstream ignored", "batch size 1 only", "mean as sum", "normalization",
            "reduction axis", "missing gradient", "broadcast", "shape", "transpose",
            "wrong input", "dtype", "device", "in place", "stride"} <= kinds
    assert {p.op for p in PLANTS.values()} == set(OPS)  # every op has a bug planted in it


@pytest.mark.parametrize("name", list(PLANTS))
def test_each_plant_swaps_a_real_piece_of_neuronlab(name):
    """A subclass of the Function the op runs (named where it lives), or a derivative helper
    that exists: never a re-implementation."""
    swap = PLANTS[name].swap
    if isinstance(swap, Helper):
        assert callable(getattr(A, swap.name)) and swap.formula is not getattr(A, swap.name)
    else:
        real = swap.__base__
        assert real.__module__.startswith("neuronlab.functional.")
        assert issubclass(real, torch.autograd.Function) and "backward" in vars(swap)


@pytest.mark.parametrize("name", NAMES)
def test_without_the_plant_the_same_check_passes(name):
    report = _check(PLANTS[name])
    assert report.ok and report.grade == "good", str(report)
    assert report.worst_relative < GOOD and not report.warnings, str(report)


@pytest.mark.parametrize("name", NAMES)
def test_planted_bug_is_caught_against_the_reference(name, monkeypatch):
    plant = PLANTS[name]
    plant.install(monkeypatch)
    _assert_caught(plant, _check(plant), "reference_rel_error")


@pytest.mark.parametrize("name", NAMES)
def test_planted_bug_is_caught_by_finite_differences_alone(name, monkeypatch):
    plant = PLANTS[name]
    plant.install(monkeypatch)
    report = _check(plant, with_reference=False)
    assert report.inputs and all(r.reference_rel_error is None for r in report.inputs)
    _assert_caught(plant, report, "fd_rel_error")


@pytest.mark.parametrize("name", [n for n, p in PLANTS.items()
                                  if p.breaks == "batch size 1 only"])
def test_batch_size_one_bugs_hide_at_batch_size_one(name, monkeypatch):
    """Why the sampled batches have N > 1: at N = 1 these are right, and pass."""
    plant = PLANTS[name]
    plant.install(monkeypatch)
    assert _check(plant, shape=(1, *plant.shape[1:])).ok
    assert not _check(plant).ok


def test_a_wrong_region_is_pinned_on_an_entry_of_that_region(monkeypatch):
    plant = PLANTS["leaky_relu slope forgotten"]  # wrong for z < 0 only
    plant.install(monkeypatch)
    (z,) = plant.inputs()
    report = check_function(plant.manual, z, reference=plant.reference)
    assert report.grade == "wrong" and report.inputs[0].kinks == 0, str(report)
    assert z[report.inputs[0].worst_entry] < 0


def test_a_plant_is_undone_with_its_monkeypatch():
    plant = PLANTS["tanh derivative 1 - a"]
    with pytest.MonkeyPatch.context() as mp:
        plant.install(mp)
        assert not _check(plant).ok
    assert _check(plant).ok
