# pytest tests/test_cache.py
"""A damaged cache entry is made again, with one line saying so (issue 16, point 5): truncated,
empty, garbage, another program's `.npz`, and an `.npz` with the wrong arrays or shapes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from neuronlab.data.cache import PARAMS_KEY, _params_json, cache_path, cached_arrays
from neuronlab.data.mnist1d import make_mnist1d

PARAMS = {"n": 30, "kind": "test"}


def _make() -> dict[str, np.ndarray]:
    return {"x": np.arange(60, dtype=np.float32).reshape(30, 2), "y": np.arange(30) % 3}


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _check(arrays: dict[str, np.ndarray]) -> str | None:
    x = arrays.get("x")
    return None if x is not None and x.shape == (30, 2) else "holding other arrays"


def _good_entry() -> bytes:
    return _npz(**_make(), **{PARAMS_KEY: np.array(_params_json(PARAMS))})


DAMAGED = {
    "truncated": lambda: _good_entry()[: len(_good_entry()) // 2],
    "empty": lambda: b"",
    "garbage": lambda: b"\x00\xffnot a zip file at all" * 50,
    "a plain .npy": lambda: (lambda b: (np.save(b, np.ones(3)), b.getvalue())[1])(io.BytesIO()),
    "no parameters": lambda: _npz(**_make()),
    "wrong arrays": lambda: _npz(z=np.ones(3), **{PARAMS_KEY: np.array(_params_json(PARAMS))}),
    "wrong shapes": lambda: _npz(x=np.ones((5, 7), np.float32), y=np.ones(5),
                                 **{PARAMS_KEY: np.array(_params_json(PARAMS))}),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED))
def test_a_damaged_entry_is_made_again_with_one_line(damage, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NEURONLAB_CACHE_DIR", str(tmp_path))
    path = cache_path("toy", PARAMS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(DAMAGED[damage]())
    calls = []

    def make():
        calls.append(1)
        return _make()

    arrays = cached_arrays("toy", PARAMS, make, check=_check)
    assert calls == [1] and np.array_equal(arrays["x"], _make()["x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "making it again" in err[0], err
    # the entry is whole again: read back without making
    assert cached_arrays("toy", PARAMS, make, check=_check)["x"].shape == (30, 2)
    assert calls == [1] and capsys.readouterr().err == ""


def test_a_missing_entry_is_made_silently(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NEURONLAB_CACHE_DIR", str(tmp_path))
    cached_arrays("toy", PARAMS, _make, check=_check)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("damage", ["truncated", "wrong shapes"])
def test_mnist1d_remakes_a_damaged_entry(damage, monkeypatch, tmp_path, capsys):
    """The issue's case: the cached MNIST-1D `.npz` cut short (a 41-line BadZipFile before)."""
    monkeypatch.setenv("NEURONLAB_CACHE_DIR", str(tmp_path))
    first = make_mnist1d(n_samples=200, seed=3)
    (path,) = tmp_path.glob("mnist1d-*.npz")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
    else:
        with np.load(path) as stored:
            params = stored[PARAMS_KEY]
        path.write_bytes(_npz(x=np.ones((200, 3), np.float32), y=np.zeros(200, np.int64),
                              **{PARAMS_KEY: params}))
    capsys.readouterr()
    again = make_mnist1d(n_samples=200, seed=3)
    assert np.array_equal(again.x.numpy(), first.x.numpy())
    assert np.array_equal(again.y.numpy(), first.y.numpy())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "making it again" in err[0], err
