"""Bad Teacher: distil the original model on the retain set and a random network on the forget set."""

from __future__ import annotations

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.unlearning.base import Batches, Forward, frozen_copy
from unlearn_mc.unlearning.common import WithFrozenReferences, joint_logits, kl_per_sample, randomly_initialised_copy


class BadTeacher(WithFrozenReferences):
    """Competent/incompetent teacher distillation (Chundawat et al. 2023, "Can Bad Teaching Induce
    Forgetting? Unlearning in Deep Networks Using an Incompetent Teacher"):

    L = λ_r·(1/|B_r|)·Σ_{x ∈ B_r} KL(p_o(x) ‖ p_θ(x)) + λ_f·(1/|B_f|)·Σ_{x ∈ B_f} KL(p_d(x) ‖ p_θ(x)),
    KL(p ‖ q) = Σ_c p_c·(log p_c − log q_c), p_•(x) = softmax(f_•(x) / T),

    where f_o is the competent teacher (the frozen original model), f_d the incompetent teacher
    (a frozen copy of the architecture, randomly initialised from ``teacher_seed``) and f_θ the
    student. This is the paper's implementation (``F.kl_div(log p_θ, p_teacher)``) with each
    sample's KL summed over classes rather than averaged (a constant factor C) and each stream
    averaged on its own rather than over a mixed batch (λ_f = s, λ_r = 1 − s, with s the forget
    share of the paper's mixed data, restores its weighting); as in the paper the student sees the
    forget and retain samples in one forward call (shared BatchNorm batch statistics).

    The other shared arguments (``net``, ``original``, ``retrain``, …) are ``UnlearningModule``'s, documented there.

    Args:
        optimizer: optimiser factory, Adam by default (the paper's; the other methods default to SGD).
        temperature: T of the softened distributions (1.0 in the paper).
        teacher_seed: seed of the incompetent teacher's random initialisation.
        forget_weight: λ_f (1.0).
        retain_weight: λ_r (1.0).
    """

    train_streams = ("forget", "retain")

    def __init__(
        self,
        *args,
        optimizer: OptimizerCallable = torch.optim.Adam,
        temperature: float = 1.0,
        teacher_seed: int = 0,
        forget_weight: float = 1.0,
        retain_weight: float = 1.0,
        **kwargs,
    ) -> None:
        if temperature <= 0:
            raise UnlearnMCError(f"temperature={temperature} must be positive.")
        if forget_weight < 0 or retain_weight < 0:
            raise UnlearnMCError(f"forget_weight={forget_weight} and retain_weight={retain_weight} must be at least 0.")
        super().__init__(*args, optimizer=optimizer, **kwargs)
        self.temperature = temperature
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight
        self.add_reference("competent_teacher", frozen_copy(self.net))
        self.add_reference("incompetent_teacher", randomly_initialised_copy(self.net, teacher_seed))

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        forget_inputs, _ = batches["forget"]
        retain_inputs, _ = batches["retain"]
        with torch.no_grad():
            competent = self.competent_teacher(retain_inputs)
            incompetent = self.incompetent_teacher(forget_inputs)
        student_forget, student_retain = joint_logits(forward, forget_inputs, retain_inputs)
        retain = self.reduce(kl_per_sample(competent, student_retain, self.temperature), "retain_kl")
        forget = self.reduce(kl_per_sample(incompetent, student_forget, self.temperature), "forget_kl")
        return self.retain_weight * retain + self.forget_weight * forget
