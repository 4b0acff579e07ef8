"""Gradient difference (GradDiff, NegGrad+): descend on the retain set while ascending on the forget set."""

from __future__ import annotations

from torch import Tensor

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.unlearning.base import Batches, Forward, UnlearningModule
from unlearn_mc.unlearning.common import cross_entropy_per_sample


class GradDiff(UnlearningModule):
    """NegGrad+ (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning"):

    L = α·(1/|B_r|)·Σ_{(x,y) ∈ B_r} ℓ(x, y) − (1−α)·(1/|B_f|)·Σ_{(x,y) ∈ B_f} ℓ(x, y),
    with ℓ(x, y) = −log softmax(f(x))[y] the cross-entropy.

    The shared arguments (``net``, ``original``, ``optimizer``, …) are ``UnlearningModule``'s, documented there.

    Args:
        alpha: weight α ∈ [0, 1] of the retain term; 1 − α weighs the forget ascent. NegGrad+
            keeps α near 1 (0.99 here; the SCRUB repository's CIFAR runs use 0.95).
    """

    train_streams = ("forget", "retain")

    def __init__(self, *args, alpha: float = 0.99, **kwargs) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise UnlearnMCError(f"alpha={alpha} must lie in [0, 1] (the weight of the retain term).")
        super().__init__(*args, **kwargs)
        self.alpha = alpha

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        forget_inputs, forget_targets = batches["forget"]
        retain_inputs, retain_targets = batches["retain"]
        retain = self.reduce(cross_entropy_per_sample(forward(retain_inputs), retain_targets), "retain")
        forget = self.reduce(cross_entropy_per_sample(forward(forget_inputs), forget_targets), "forget")
        return self.alpha * retain - (1.0 - self.alpha) * forget
