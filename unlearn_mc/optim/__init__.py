"""Optimiser set-up shared by every module."""

from unlearn_mc.optim.configure import build_optimizers

__all__ = ["build_optimizers"]
