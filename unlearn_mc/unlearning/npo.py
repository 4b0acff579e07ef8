"""Negative preference optimisation (NPO): a bounded, self-damping gradient ascent on the forget set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.unlearning.base import Batches, Forward, frozen_copy
from unlearn_mc.unlearning.common import WithFrozenReferences, batch_statistics, cross_entropy_per_sample, forward_is_training


class NPO(WithFrozenReferences):
    """NPO (Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic Collapse to
    Effective Unlearning"), for classification, with ℓ_θ(x, y) = −log softmax(f_θ(x))[y] and
    ℓ_ref from the frozen original model:

    L = (2/β)·(1/|B_f|)·Σ_{(x,y) ∈ B_f} log(1 + exp(β·(ℓ_ref(x, y) − ℓ_θ(x, y))))
        + λ_r·(1/|B_r|)·Σ_{(x,y) ∈ B_r} ℓ_θ(x, y),

    i.e. (2/β)·softplus(β·log(π_θ/π_ref)). Its gradient is gradient ascent on ℓ_θ weighted by
    2·σ(β·(ℓ_ref − ℓ_θ)), which fades as a sample is forgotten; as β → 0 it becomes GA.

    BatchNorm convention: ℓ_ref is computed in the student's BatchNorm mode. The paper's π_ref is
    the frozen initial model evaluated on the same batch, so at θ = θ_ref the ratio π_θ/π_ref must
    be 1 and every weight 2·σ(0) = 1. A training-mode student normalises with the forget batch's own
    statistics; the reference in eval mode would use its running statistics of all of D instead
    (under class forgetting on digits that gave ℓ_θ = 3.90 against ℓ_ref = 0.088 at step 0, a
    mean weight 0.81). So when the model behind ``forward`` is in training mode, the reference's
    BatchNorm layers also use the batch's statistics (``batch_statistics``: its running statistics
    stay untouched, dropout stays off); in eval mode both use running statistics. The student's
    mode is ``forward.training``, or ``forward.net.training`` for a curve's φ(t), else this module's.
    We keep the student in its own (training) mode rather than forcing it to eval mode, so that it
    trains like every other method here and its BatchNorm statistics keep following its weights.

    The shared arguments (``net``, ``original``, ``optimizer``, …) are ``UnlearningModule``'s, documented there.

    Args:
        beta: β, the inverse temperature (0.1 in the paper).
        retain_weight: λ_r; 0 drops the retain term and the module then trains on ``forget`` only
            (the paper's "NPO"; λ_r > 0 is its "NPO+RT").
    """

    def __init__(self, *args, beta: float = 0.1, retain_weight: float = 1.0, **kwargs) -> None:
        if beta <= 0:
            raise UnlearnMCError(f"beta={beta} must be positive.")
        if retain_weight < 0:
            raise UnlearnMCError(f"retain_weight={retain_weight} must be at least 0 (0 disables the retain term).")
        super().__init__(*args, **kwargs)
        self.beta = beta
        self.retain_weight = retain_weight
        self.train_streams = ("forget", "retain") if retain_weight > 0 else ("forget",)
        self.add_reference("reference", frozen_copy(self.net))

    def forget_losses(self, forward: Forward, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(ℓ_θ, ℓ_ref) per forget sample, the reference in the student's BatchNorm mode (see the class docstring)."""
        current = cross_entropy_per_sample(forward(inputs), targets)
        with torch.no_grad():
            if forward_is_training(forward, self.training):
                with batch_statistics(self.reference):
                    reference = cross_entropy_per_sample(self.reference(inputs), targets)
            else:
                reference = cross_entropy_per_sample(self.reference(inputs), targets)
        return current, reference

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        inputs, targets = batches["forget"]
        current, reference = self.forget_losses(forward, inputs, targets)
        loss = (2.0 / self.beta) * self.reduce(F.softplus(self.beta * (reference - current)), "forget")
        if self.retain_weight > 0:
            retain_inputs, retain_targets = batches["retain"]
            loss = loss + self.retain_weight * self.reduce(cross_entropy_per_sample(forward(retain_inputs), retain_targets), "retain")
        return loss
