"""Unlearning methods: one LightningModule per method on ``UnlearningModule``, all named in ``METHODS`` (``registry``)."""

from unlearn_mc.unlearning.bad_teacher import BadTeacher
from unlearn_mc.unlearning.base import UnlearningModule, average_gap
from unlearn_mc.unlearning.finetune import FineTune
from unlearn_mc.unlearning.grad_ascent import GradientAscent
from unlearn_mc.unlearning.grad_diff import GradDiff
from unlearn_mc.unlearning.kl_retain import KLRetain
from unlearn_mc.unlearning.l1_sparse import L1Sparse
from unlearn_mc.unlearning.npo import NPO
from unlearn_mc.unlearning.random_label import RandomLabel
from unlearn_mc.unlearning.registry import METHODS, method_class
from unlearn_mc.unlearning.salun import SalUn, saliency_mask
from unlearn_mc.unlearning.scrub import SCRUB

__all__ = [
    "UnlearningModule",
    "average_gap",
    "FineTune",
    "GradientAscent",
    "KLRetain",
    "GradDiff",
    "RandomLabel",
    "SalUn",
    "saliency_mask",
    "BadTeacher",
    "SCRUB",
    "NPO",
    "L1Sparse",
    "METHODS",
    "method_class",
]
