"""ℓ1-sparse unlearning: fine-tune on the retain set with a decaying ℓ1 penalty on the weights."""

from __future__ import annotations

from torch import Tensor

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.unlearning.base import Batches, Forward, UnlearningModule
from unlearn_mc.unlearning.common import cross_entropy_per_sample, forward_parameters


class L1Sparse(UnlearningModule):
    """ℓ1-sparse MU (Jia et al. 2023, "Model Sparsity Can Simplify Machine Unlearning"):

    L_t = (1/|B_r|)·Σ_{(x,y) ∈ B_r} −log softmax(f_θ(x))[y] + α_t·‖θ‖₁,
    α_t = α·(1 − t/S), ‖θ‖₁ = Σ_j |θ_j| over all trainable weights,

    where t is the optimiser step and S = ``trainer.estimated_stepping_batches`` (the paper decays
    α linearly per epoch; here per step). Outside a Trainer, t = 0. ``loss`` reads θ from
    ``forward`` (see ``common.forward_parameters``): an ``nn.Module``, or a callable exposing
    ``parameters()`` or a ``params`` mapping.

    The shared arguments (``net``, ``original``, ``optimizer``, …) are ``UnlearningModule``'s, documented there.

    Args:
        alpha: α, the initial ℓ1 weight (5e-4).
    """

    train_streams = ("retain",)

    def __init__(self, *args, alpha: float = 5e-4, **kwargs) -> None:
        if alpha < 0:
            raise UnlearnMCError(f"alpha={alpha} must be at least 0 (the initial weight of the l1 penalty).")
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self._total_steps: float | None = None

    def on_train_start(self) -> None:
        super().on_train_start()
        total = self.trainer.estimated_stepping_batches
        self._total_steps = float(total) if total and total != float("inf") else None

    def current_alpha(self) -> float:
        """α_t = α·max(0, 1 − t/S); α outside training (no Trainer, or S unknown)."""
        trainer = self._trainer
        if trainer is None or self._total_steps is None:
            return self.alpha
        return self.alpha * max(0.0, 1.0 - trainer.global_step / self._total_steps)

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        inputs, targets = batches["retain"]
        loss = self.reduce(cross_entropy_per_sample(forward(inputs), targets), "retain")
        alpha = self.current_alpha()
        if alpha > 0:
            l1 = sum(p.abs().sum() for p in forward_parameters(forward))
            loss = loss + alpha * l1
        return loss
