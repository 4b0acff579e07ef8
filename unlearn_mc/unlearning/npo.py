"""Negative preference optimisation (NPO): a bounded, self-damping gradient ascent on the forget set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.unlearning.base import Batches, Forward, frozen_copy
from unlearn_mc.unlearning.common import WithFrozenReferences, cross_entropy_per_sample


class NPO(WithFrozenReferences):
    """NPO (Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic Collapse to
    Effective Unlearning"), for classification, with ℓ_θ(x, y) = −log softmax(f_θ(x))[y] and
    ℓ_ref from the frozen original model:

    L = (2/β)·(1/|B_f|)·Σ_{(x,y) ∈ B_f} log(1 + exp(β·(ℓ_ref(x, y) − ℓ_θ(x, y))))
        + λ_r·(1/|B_r|)·Σ_{(x,y) ∈ B_r} ℓ_θ(x, y),

    i.e. (2/β)·softplus(β·log(π_θ/π_ref)). Its gradient is gradient ascent on ℓ_θ weighted by
    2·σ(β·(ℓ_ref − ℓ_θ)), which fades as a sample is forgotten; as β → 0 it becomes GA.

    Args:
        beta: β, the inverse temperature (0.1 in the paper).
        retain_weight: λ_r; 0 drops the retain term and the module then trains on ``forget`` only
            (the paper's "NPO"; λ_r > 0 is its "NPO+RT").
        (the other arguments are those of ``UnlearningModule``)
    """

    def __init__(
        self,
        net: nn.Module,
        original: str,
        retrain: str | None = None,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
        min_retain_acc: float | None = None,
        curriculum: nn.Module | None = None,
        beta: float = 0.1,
        retain_weight: float = 1.0,
    ) -> None:
        if beta <= 0:
            raise UnlearnMCError(f"beta={beta} must be positive.")
        if retain_weight < 0:
            raise UnlearnMCError(f"retain_weight={retain_weight} must be at least 0 (0 disables the retain term).")
        super().__init__(net, original, retrain, optimizer, lr_scheduler, min_retain_acc, curriculum)
        self.beta = beta
        self.retain_weight = retain_weight
        self.train_streams = ("forget", "retain") if retain_weight > 0 else ("forget",)
        self.add_reference("reference", frozen_copy(self.net))

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        inputs, targets = batches["forget"]
        with torch.no_grad():
            reference = cross_entropy_per_sample(self.reference(inputs), targets)
        current = cross_entropy_per_sample(forward(inputs), targets)
        loss = (2.0 / self.beta) * self.reduce(F.softplus(self.beta * (reference - current)), "forget")
        if self.retain_weight > 0:
            retain_inputs, retain_targets = batches["retain"]
            loss = loss + self.retain_weight * self.reduce(cross_entropy_per_sample(forward(retain_inputs), retain_targets), "retain")
        return loss
