"""SCRUB: a student moves away from the original model on the forget set and stays with it on the retain set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.unlearning.base import Batches, Forward, frozen_copy
from unlearn_mc.unlearning.common import WithFrozenReferences, cross_entropy_per_sample, kl_per_sample

Phase = Literal["max", "min"]


class SCRUB(WithFrozenReferences):
    """SCRUB (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning"), teacher f_o = the
    frozen original model, student f_θ, p_•(x) = softmax(f_•(x) / T),
    KL(p ‖ q) = Σ_c p_c·(log p_c − log q_c) scaled by T² as in the paper's code (DistillKL):

    - max-step on a forget batch:  L_max = −(T²/|B_f|)·Σ_{x ∈ B_f} KL(p_o(x) ‖ p_θ(x));
    - min-step on a retain batch:  L_min = γ·(1/|B_r|)·Σ_{(x,y) ∈ B_r} −log softmax(f_θ(x))[y]
      + α·(T²/|B_r|)·Σ_{x ∈ B_r} KL(p_o(x) ‖ p_θ(x)).

    Schedule, in Lightning's automatic optimisation over the dict batch ``{"forget", "retain"}``:
    in each of the first ``max_steps_epochs`` epochs the first n_max steps are max-steps on the
    batch's ``forget`` part and the remaining steps min-steps on its ``retain`` part, where n_max
    is one pass over the forget loader (``len`` of the training ``forget`` loader) unless
    ``max_steps_per_epoch`` says otherwise; later epochs are min-steps only. This is the paper's
    epoch (a pass over D_f maximising, then a pass over D_r minimising) except that the min-pass
    is n_max retain batches shorter. ``training_step`` sets ``self.phase`` before calling
    ``loss``, so ``loss(forward, batches)`` always returns the objective of the current step;
    outside training ``phase`` keeps its last value ("min" initially) and may be set by hand.

    The shared arguments (``net``, ``original``, ``optimizer``, …) are ``UnlearningModule``'s, documented there.

    Args:
        temperature: T of the distillation (4 in the paper's CIFAR runs).
        gamma: γ, weight of the retain cross-entropy in min-steps (0.99).
        alpha: α, weight of the retain KL in min-steps (0.001).
        max_steps_epochs: number of leading epochs that contain max-steps (2; the paper's
            ``msteps``, whose loop runs max-steps while ``epoch <= msteps``).
        max_steps_per_epoch: max-steps per such epoch; None = one pass over the forget loader.
    """

    train_streams = ("forget", "retain")

    def __init__(
        self,
        *args,
        temperature: float = 4.0,
        gamma: float = 0.99,
        alpha: float = 0.001,
        max_steps_epochs: int = 2,
        max_steps_per_epoch: int | None = None,
        **kwargs,
    ) -> None:
        if temperature <= 0:
            raise UnlearnMCError(f"temperature={temperature} must be positive.")
        if max_steps_epochs < 0:
            raise UnlearnMCError(f"max_steps_epochs={max_steps_epochs} must be at least 0.")
        if max_steps_per_epoch is not None and max_steps_per_epoch < 0:
            raise UnlearnMCError(f"max_steps_per_epoch={max_steps_per_epoch} must be at least 0 (or null for one pass over the forget loader).")
        super().__init__(*args, **kwargs)
        self.temperature, self.gamma, self.alpha = temperature, gamma, alpha
        self.max_steps_epochs, self.max_steps_per_epoch = max_steps_epochs, max_steps_per_epoch
        self.phase: Phase = "min"
        self.add_reference("teacher", frozen_copy(self.net))

    # -------------------------------------------------------------- schedule
    def max_steps_in_epoch(self) -> int:
        """n_max: ``max_steps_per_epoch``, else the number of batches of the training forget loader."""
        if self.max_steps_per_epoch is not None:
            return self.max_steps_per_epoch
        loaders = self.trainer.train_dataloader
        if isinstance(loaders, Mapping) and "forget" in loaders:
            try:
                return len(loaders["forget"])
            except TypeError:
                pass
        raise UnlearnMCError(
            "SCRUB cannot count the forget loader's batches (it needs a sized 'forget' training loader); set max_steps_per_epoch."
        )

    def phase_at(self, epoch: int, batch_idx: int) -> Phase:
        """"max" for the first n_max steps of each of the first ``max_steps_epochs`` epochs, else "min"."""
        if epoch >= self.max_steps_epochs:
            return "min"
        return "max" if batch_idx < self.max_steps_in_epoch() else "min"

    def training_step(self, batch, batch_idx: int) -> Tensor | None:
        self.phase = self.phase_at(self.current_epoch, batch_idx)
        return super().training_step(batch, batch_idx)

    # ------------------------------------------------------------- objective
    def _distillation(self, forward: Forward, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """(student logits, per-sample T²·KL(p_o ‖ p_θ))."""
        with torch.no_grad():
            teacher = self.teacher(inputs)
        student = forward(inputs)
        return student, self.temperature**2 * kl_per_sample(teacher, student, self.temperature)

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        if self.phase == "max":
            _, kl = self._distillation(forward, batches["forget"][0])
            return -self.reduce(kl, "forget_kl")
        inputs, targets = batches["retain"]
        logits, kl = self._distillation(forward, inputs)
        return self.gamma * self.reduce(cross_entropy_per_sample(logits, targets), "retain") + self.alpha * self.reduce(kl, "retain_kl")
