"""Checkpoints that are written atomically and read without running code.

- Writes go to a temporary file in the same folder, are flushed to disk, then renamed over
  the target: a run killed mid-write leaves the previous checkpoint whole.
- Reads use ``torch.load(weights_only=True)``: a crafted file that would run code when
  unpickled is refused, and a corrupt or truncated file gives a clear error.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class CheckpointError(RuntimeError):
    """A checkpoint could not be read safely."""


def _file_mode() -> int:
    """What a plain ``open(path, "w")`` would give: 0666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes it 0600: readable by its owner only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut after it keeps the new name)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files a killed writer left in ``folder``; return them.

    Only a process killed mid-write (SIGKILL, power cut) leaves one; the checkpoint it was
    replacing is whole. Call it before a run starts writing into ``folder``.
    """
    folder = Path(folder)
    stale = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _unpickler_detail(message: str) -> str:
    """The line of torch's long ``weights_only`` message that says what was refused."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or line.startswith("Unsupported"):
            return line
    return lines[-1] if lines else "no detail"


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` with a
    one-line message that says what is wrong (missing, unsafe, corrupt or truncated)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={str(path)!r}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"ckpt_path={str(path)!r} is empty (0 bytes): a write that "
                              "never finished, or not a checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unpickler_detail(str(e))
        if "GLOBAL" in detail:  # the file names a function or class to import and call
            raise CheckpointError(
                f"ckpt_path={str(path)!r} was refused: it holds objects that are not plain "
                f"weights and could run code when loaded, so it was not unpickled "
                f"(weights_only=True; {detail}). Only load checkpoints you trust"
            ) from None
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is not a readable checkpoint (corrupt, truncated or not "
            f"written by torch.save): {detail}"
        ) from None
    except Exception as e:  # noqa: BLE001 - a damaged file breaks torch in many ways
        text = str(e).splitlines()[0] if str(e) else "no detail"
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is corrupt or truncated and cannot be read "
            f"({type(e).__name__}: {text})"
        ) from None


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O with atomic writes and ``weights_only=True`` reads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu")
