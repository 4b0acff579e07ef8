"""Random labelling (RL): fit the forget set to wrong labels while keeping the retain set."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.unlearning.base import Batches, Forward, UnlearningModule
from unlearn_mc.unlearning.common import cross_entropy_per_sample, forget_loader_length, joint_logits

Passes = Literal["concatenated", "forget_then_retain"]
LabelDraw = Literal["other_classes", "all_classes"]
Phase = Literal["joint", "forget", "retain"]
PASSES = ("concatenated", "forget_then_retain")
LABEL_DRAWS = ("other_classes", "all_classes")


def _check_classes(num_classes: int) -> None:
    if num_classes < 2:
        raise UnlearnMCError(f"random labels need at least 2 classes, but the network outputs {num_classes} logit(s).")


def random_other_labels(targets: Tensor, num_classes: int) -> Tensor:
    """ỹ = (y + k) mod C with k ~ U{1, …, C−1}: uniform over the C−1 classes other than y (global torch RNG)."""
    _check_classes(num_classes)
    offsets = torch.randint(1, num_classes, targets.shape, device=targets.device)
    return (targets + offsets) % num_classes


def random_any_labels(targets: Tensor, num_classes: int) -> Tensor:
    """ỹ ~ U{0, …, C−1}: uniform over all C classes, so ỹ = y with probability 1/C (global torch RNG).

    Unlearn-Saliency's RL draws its labels so (``randint(0, num_classes)``) on every dataset.
    """
    _check_classes(num_classes)
    return torch.randint(0, num_classes, targets.shape, device=targets.device)


def random_labels(targets: Tensor, num_classes: int, draw: LabelDraw = "other_classes") -> Tensor:
    """``random_other_labels`` (``draw="other_classes"``) or ``random_any_labels`` (``draw="all_classes"``)."""
    if draw == "other_classes":
        return random_other_labels(targets, num_classes)
    if draw == "all_classes":
        return random_any_labels(targets, num_classes)
    raise UnlearnMCError(f"label_draw={draw!r} is not a convention; use one of {', '.join(LABEL_DRAWS)}.")


class RandomLabel(UnlearningModule):
    """Random labelling (Golatkar et al. 2020; the RL baseline of Fan et al. 2024, SalUn):

    L = λ_f·(1/|B_f|)·Σ_{(x,y) ∈ B_f} ℓ(x, ỹ) + λ_r·(1/|B_r|)·Σ_{(x,y) ∈ B_r} ℓ(x, y),
    with ℓ(x, y) = −log softmax(f(x))[y] and ỹ a random label drawn afresh at every step:
    ``label_draw="other_classes"`` (default) draws ỹ uniformly from the C−1 classes other than y
    (``random_other_labels``), ``"all_classes"`` uniformly from all C classes, y included
    (``random_any_labels``, Unlearn-Saliency's convention).

    Unlearn-Saliency's RL code has two schedules, both offered as ``passes``:

    - ``"concatenated"`` (default; its CIFAR-100 / TinyImageNet path, which shuffles D_f ∪ D_r into one
      loader): every step takes a forget batch and a retain batch, both through the network in one call
      (shared BatchNorm batch statistics, as in a mixed batch) with the loss above. Its batches are a
      fraction s ≈ |D_f|/|D| forget samples, so λ_f = s, λ_r = 1 − s reproduce its expected step at
      the same learning rate.
    - ``"forget_then_retain"`` (its CIFAR-10 / SVHN path: a pass over the relabelled D_f, then a pass over
      D_r, in every epoch): the first n_f steps of each epoch (n_f = the number of batches of the
      training ``forget`` loader) are forget steps, L = λ_f·mean_{B_f} ℓ(x, ỹ) on the batch's forget part
      alone, and the remaining steps retain steps, L = λ_r·mean_{B_r} ℓ(x, y) on its retain part alone;
      the reference's unweighted steps are λ_f = λ_r = 1. An epoch being one pass over the longer
      (retain) loader, the retain pass is n_f batches shorter than a full pass over D_r.

    ``training_step`` sets ``self.phase`` ("forget" / "retain" under ``forget_then_retain``, "joint"
    otherwise) before calling ``loss``. Outside training (e.g. a curve's objective) the phase is "joint":
    both terms, the two batches through the network together (``concatenated``) or each on its own
    (``forget_then_retain``).

    The shared arguments (``net``, ``original``, ``optimizer``, …) are ``UnlearningModule``'s, documented there.

    Args:
        forget_weight: λ_f, the weight of the random-label term (1.0).
        retain_weight: λ_r, the weight of the retain cross-entropy (1.0; 0 drops the term and the
            module then trains on ``forget`` only, every step a forget step).
        passes: ``"concatenated"`` or ``"forget_then_retain"``, as above.
        label_draw: ``"other_classes"`` or ``"all_classes"``, as above.
    """

    train_streams = ("forget", "retain")

    def __init__(self, *args, forget_weight: float = 1.0, retain_weight: float = 1.0, passes: Passes = "concatenated",
                 label_draw: LabelDraw = "other_classes", **kwargs) -> None:
        if forget_weight <= 0:
            raise UnlearnMCError(f"forget_weight={forget_weight} must be positive.")
        if retain_weight < 0:
            raise UnlearnMCError(f"retain_weight={retain_weight} must be at least 0.")
        if passes not in PASSES:
            raise UnlearnMCError(f"passes={passes!r} is not a schedule; use one of {', '.join(PASSES)}.")
        if label_draw not in LABEL_DRAWS:
            raise UnlearnMCError(f"label_draw={label_draw!r} is not a convention; use one of {', '.join(LABEL_DRAWS)}.")
        super().__init__(*args, **kwargs)
        self.forget_weight, self.retain_weight = forget_weight, retain_weight
        self.passes, self.label_draw = passes, label_draw
        self.phase: Phase = "joint"
        self.train_streams = ("forget", "retain") if retain_weight > 0 else ("forget",)

    # -------------------------------------------------------------- schedule
    def phase_at(self, batch_idx: int) -> Phase:
        """The kind of step ``batch_idx`` of an epoch is: "joint" (``concatenated``), else "forget" for the first n_f steps and "retain" after."""
        if self.passes == "concatenated":
            return "joint"
        if "retain" not in self.train_streams:
            return "forget"
        forget_steps = forget_loader_length(self.trainer)
        if forget_steps is None:
            raise UnlearnMCError("passes='forget_then_retain' needs a sized 'forget' training loader to know where the forget pass ends.")
        return "forget" if batch_idx < forget_steps else "retain"

    def training_step(self, batch, batch_idx: int) -> Tensor | None:
        self.phase = self.phase_at(batch_idx)
        try:
            return super().training_step(batch, batch_idx)
        finally:
            self.phase = "joint"

    # ------------------------------------------------------------- objective
    def _forget_term(self, logits: Tensor, targets: Tensor) -> Tensor:
        wrong = random_labels(targets, logits.shape[-1], self.label_draw)
        return self.forget_weight * self.reduce(cross_entropy_per_sample(logits, wrong), "forget")

    def _retain_term(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self.retain_weight * self.reduce(cross_entropy_per_sample(logits, targets), "retain")

    def loss(self, forward: Forward, batches: Batches) -> Tensor:
        forget_inputs, forget_targets = batches["forget"]
        if self.phase == "forget" or self.retain_weight == 0:
            return self._forget_term(forward(forget_inputs), forget_targets)
        retain_inputs, retain_targets = batches["retain"]
        if self.phase == "retain":
            return self._retain_term(forward(retain_inputs), retain_targets)
        if self.passes == "concatenated":
            forget_logits, retain_logits = joint_logits(forward, forget_inputs, retain_inputs)
        else:
            forget_logits, retain_logits = forward(forget_inputs), forward(retain_inputs)
        return self._forget_term(forget_logits, forget_targets) + self._retain_term(retain_logits, retain_targets)
