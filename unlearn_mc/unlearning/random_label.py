"""Random labelling (RL): fit the forget set to wrong labels while keeping the retain set."""

from __future__ import annotations

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.unlearning.base import Batches, Forward, UnlearningModule
from unlearn_mc.unlearning.common import cross_entropy_per_sample, joint_logits


def random_other_labels(targets: Tensor, num_classes: int) -> Tensor:
    """ỹ = (y + k) mod C with k ~ U{1, …, C−1}: uniform over the C−1 classes other than y (global torch RNG)."""
    if num_classes < 2:
        raise UnlearnMCError(f"random labels need at least 2 classes, but the network outputs {num_classes} logit(s).")
    offsets = torch.randint(1, num_classes, targets.shape, device=targets.device)
    return (targets + offsets) % num_classes


class RandomLabel(UnlearningModule):
    """Random labelling (Golatkar et al. 2020; the RL baseline of Fan et al. 2024, SalUn):

    L = λ_f·(1/|B_f|)·Σ_{(x,y) ∈ B_f} ℓ(x, ỹ) + λ_r·(1/|B_r|)·Σ_{(x,y) ∈ B_r} ℓ(x, y),
    with ℓ(x, y) = −log softmax(f(x))[y] and ỹ drawn uniformly from the classes other than y,
    afresh at every step. SalUn's code trains on the union of the relabelled D_f and D_r, so
    each of its batches is a fraction s ≈ |D_f|/|D| forget samples: λ_f = s, λ_r = 1 − s
    reproduces its expected step at the same learning rate. As there, both batches go through
    the network in one call (shared BatchNorm batch statistics).

    Args:
        forget_weight: λ_f, the weight of the random-label term (1.0).
        retain_weight: λ_r, the weight of the retain cross-entropy (1.0; 0 drops the term and the
            module then trains on ``forget`` only).
        (the other arguments are those of ``UnlearningModule``)
    """

    train_streams = ("forget", "retain")

    def __init__(
        self,
        net: nn.Module,
        original: str,
        retrain: str | None = None,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
        min_retain_acc: float | None = None,
        curriculum: nn.Module | None = None,
        forget_weight: float = 1.0,
        retain_weight: float = 1.0,
    ) -> None:
        if forget_weight <= 0:
            raise UnlearnMCError(f"forget_weight={forget_weight} must be positive.")
        if retain_weight < 0:
            raise UnlearnMCError(f"retain_weight={retain_weight} must be at least 0.")
        super().__init__(net, original, retrain, optimizer, lr_scheduler, min_retain_acc, curriculum)
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight
        self.train_streams = ("forget", "retain") if retain_weight > 0 else ("forget",)

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        forget_inputs, forget_targets = batches["forget"]
        if self.retain_weight > 0:
            retain_inputs, retain_targets = batches["retain"]
            forget_logits, retain_logits = joint_logits(forward, forget_inputs, retain_inputs)
        else:
            forget_logits = forward(forget_inputs)
        wrong = random_other_labels(forget_targets, forget_logits.shape[-1])
        loss = self.forget_weight * self.reduce(cross_entropy_per_sample(forget_logits, wrong), "forget")
        if self.retain_weight > 0:
            loss = loss + self.retain_weight * self.reduce(cross_entropy_per_sample(retain_logits, retain_targets), "retain")
        return loss
