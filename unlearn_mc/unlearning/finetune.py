"""Fine-tuning (FT): keep training the original model on the retain set only."""

from __future__ import annotations

from torch import Tensor

from unlearn_mc.evaluation.sequence import cross_entropy_per_sample
from unlearn_mc.unlearning.base import Batches, Forward, UnlearningModule


class FineTune(UnlearningModule):
    """Minimises CE on D_r: L = (1/|B_r|)·Σ_{(x,y) ∈ B_r} −log softmax(f(x))[y].

    Forgetting comes only from catastrophic forgetting of D_f (Warnecke et al. 2023; Golatkar et al. 2020).
    Its arguments are ``UnlearningModule``'s, documented there.
    """

    train_streams = ("retain",)

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        inputs, targets = batches["retain"]
        return self.reduce(cross_entropy_per_sample(forward(inputs), targets), "retain")
