"""Evaluation: per-sample statistics, membership inference, the metric collector and its Lightning hooks."""

from unlearn_mc.evaluation.evaluate import evaluate_model
from unlearn_mc.evaluation.lightning_hooks import EvaluatesUnlearning
from unlearn_mc.evaluation.metrics import UnlearningMetrics
from unlearn_mc.evaluation.mia import mia_efficacy, mia_loss_accuracy
from unlearn_mc.evaluation.per_sample import per_sample_stats
from unlearn_mc.evaluation.tofu_callback import TofuEvaluation

__all__ = ["evaluate_model", "EvaluatesUnlearning", "UnlearningMetrics", "mia_efficacy", "mia_loss_accuracy", "per_sample_stats", "TofuEvaluation"]
