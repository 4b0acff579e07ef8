"""Unlearning methods: one LightningModule per method on ``UnlearningModule``."""

from unlearn_mc.unlearning.base import UnlearningModule, average_gap
from unlearn_mc.unlearning.finetune import FineTune
from unlearn_mc.unlearning.grad_ascent import GradientAscent

__all__ = ["UnlearningModule", "average_gap", "FineTune", "GradientAscent"]
