# pytest tests/
"""Shared test helpers: skip ``cuda`` tests without a GPU, and run device tests on every device.

The markers ``slow`` and ``cuda`` are declared in ``pyproject.toml``; nothing is registered here.

A test that takes a ``device`` argument runs once per entry of ``DEVICES`` (``"cpu"``, plus
``"cuda"`` when a GPU is present, that run marked ``cuda``), so CUDA runs the same checks.
The ``devices`` fixture gives the same list to a test that wants to loop itself.
"""

from __future__ import annotations

import pytest
import torch

DEVICES: list[str] = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        params = [
            pytest.param(d, id=d, marks=[pytest.mark.cuda] if d == "cuda" else [])
            for d in DEVICES
        ]
        metafunc.parametrize("device", params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip_cuda)


@pytest.fixture
def devices() -> list[str]:
    """The devices to check on: ``["cpu"]``, plus ``"cuda"`` when available."""
    return list(DEVICES)


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    """Generated data sets (MNIST-1D) are cached under a folder of this test session, not the
    user's ``~/.cache/neuronlab``; subprocesses inherit it."""
    import os

    before = os.environ.get("NEURONLAB_CACHE_DIR")
    os.environ["NEURONLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("neuronlab-cache"))
    yield
    if before is None:
        os.environ.pop("NEURONLAB_CACHE_DIR", None)
    else:
        os.environ["NEURONLAB_CACHE_DIR"] = before


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The tests' tensors are tiny: one thread is fastest, and torch's thread pool on busy
    cores is many times slower (``train()`` picks one thread for small models too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
