"""Gradient ascent (GA, NegGrad): push the forget set's loss up."""

from __future__ import annotations

from torch import Tensor

from unlearn_mc.evaluation.sequence import cross_entropy_per_sample
from unlearn_mc.unlearning.base import Batches, Forward, UnlearningModule


class GradientAscent(UnlearningModule):
    """Minimises −CE on D_f: L = −(1/|B_f|)·Σ_{(x,y) ∈ B_f} −log softmax(f(x))[y] (Thudi et al. 2022).

    Its arguments are ``UnlearningModule``'s, documented there.
    """

    train_streams = ("forget",)

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        inputs, targets = batches["forget"]
        return -self.reduce(cross_entropy_per_sample(forward(inputs), targets), "forget")
