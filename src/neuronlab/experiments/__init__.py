"""The experiments behind the text's claims: callbacks they add to runs, signal propagation at
init, the learning-rate range test, the init sweep driver, and the sweep report."""

from .callbacks import FitMetrics, InitFingerprint, WeightTrace

__all__ = ["FitMetrics", "InitFingerprint", "WeightTrace"]
