"""Training: the LightningModule, its callbacks, and ``train(cfg)``."""

from .audit import GradientAudit, GradientMismatch
from .checkpoint import CheckpointError, SafeCheckpointIO, load_checkpoint
from .divergence import Diverged, DivergenceGuard
from .flow import GradientFlow
from .task import LearnTask

__all__ = [
    "CheckpointError",
    "Diverged",
    "DivergenceGuard",
    "GradientAudit",
    "GradientFlow",
    "GradientMismatch",
    "LearnTask",
    "SafeCheckpointIO",
    "load_checkpoint",
]
