"""Curricula: per-sample reweighting of a loss (SuperLoss) and the order in which data is released (DataCurriculum)."""

from unlearn_mc.curricula.data_curriculum import DataCurriculum
from unlearn_mc.curricula.lambert_w import lambert_w0
from unlearn_mc.curricula.superloss import SuperLoss, superloss_confidence

__all__ = ["DataCurriculum", "lambert_w0", "SuperLoss", "superloss_confidence"]
