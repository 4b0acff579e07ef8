"""The KL-retain variants (TOFU's "KL", NPO-KL): a forget term plus the KL divergence to the original model on D_r."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.sequence import cross_entropy_per_sample, kl_per_sample
from unlearn_mc.unlearning.base import Batches, Forward, frozen_copy
from unlearn_mc.unlearning.common import WithFrozenReferences


class KLRetain(WithFrozenReferences):
    """L = forget term + λ_r·(1/|B_r|)·Σ_{x ∈ B_r} KL(p_orig(·|x) ‖ p_θ(·|x)), p_orig from the frozen original model.

    Forget terms, with ℓ_θ the per-sample loss (cross-entropy, or for a causal LM the answer NLL):

    - ``grad_ascent``: −(1/|B_f|)·Σ ℓ_θ (TOFU's "KL" baseline, Maini et al. 2024);
    - ``npo``: (2/β)·(1/|B_f|)·Σ softplus(β·(ℓ_orig − ℓ_θ)) (NPO-KL, Zhang et al. 2024).

    For a causal LM the KL is averaged over the answer positions of each retain sample (``kl_per_sample``).
    Both models run in eval mode for the KL target (no dropout in p_orig).

    The shared arguments (``net``, ``original``, ``optimizer``, …) are ``UnlearningModule``'s, documented there.

    Args:
        forget: ``grad_ascent`` or ``npo``.
        beta: NPO's β.
        retain_weight: λ_r.
    """

    train_streams = ("forget", "retain")

    def __init__(self, *args, forget: Literal["grad_ascent", "npo"] = "grad_ascent", beta: float = 0.1, retain_weight: float = 1.0,
                 **kwargs) -> None:
        if forget not in ("grad_ascent", "npo"):
            raise UnlearnMCError(f"forget={forget!r} is not a forget term; use 'grad_ascent' or 'npo'.")
        if beta <= 0 or retain_weight < 0:
            raise UnlearnMCError(f"beta={beta} must be positive and retain_weight={retain_weight} at least 0.")
        super().__init__(*args, **kwargs)
        self.forget, self.beta, self.retain_weight = forget, beta, retain_weight
        self.add_reference("reference", frozen_copy(self.net))

    def forget_term(self, forward: Forward, inputs: Tensor, targets: Tensor) -> Tensor:
        current = cross_entropy_per_sample(forward(inputs), targets)
        if self.forget == "grad_ascent":
            return -self.reduce(current, "forget")
        with torch.no_grad():
            reference = cross_entropy_per_sample(self.reference(inputs), targets)
        return (2.0 / self.beta) * self.reduce(F.softplus(self.beta * (reference - current)), "forget")

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        loss = self.forget_term(forward, *batches["forget"])
        inputs, targets = batches["retain"]
        with torch.no_grad():
            teacher = self.reference(inputs)
        kl = kl_per_sample(teacher, forward(inputs), targets=targets if teacher.ndim == 3 else None)
        return loss + self.retain_weight * self.reduce(kl, "retain_kl")
