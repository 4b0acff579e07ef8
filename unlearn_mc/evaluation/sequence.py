"""Per-sample losses of sequence outputs: the answer tokens of a causal LM, the others ignored.

A causal-LM batch has logits z (B, L, V) and targets y (B, L), where y_{i,k} is the token that follows
position k when it belongs to the answer, and ``IGNORE_INDEX`` (−100) elsewhere (question, padding).
With A_i = {k : y_{i,k} ≠ −100} the answer positions of sample i:

    ℓ_i = (1/|A_i|)·Σ_{k ∈ A_i} −log softmax(z_{i,k})[y_{i,k}]          (answer NLL; perplexity = exp ℓ_i)
    acc_i = (1/|A_i|)·Σ_{k ∈ A_i} 1[argmax z_{i,k} = y_{i,k}]            (teacher-forced token accuracy)

For class logits (B, C) these are the usual cross-entropy and correctness, so every method's loss and
every metric reads both kinds of output through the same functions.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from unlearn_mc.data.padding import IGNORE_INDEX


def answer_mask(targets: Tensor) -> Tensor:
    """1.0 at the positions scored (y ≠ IGNORE_INDEX), 0.0 elsewhere."""
    return (targets != IGNORE_INDEX).float()


def _mean_over_answer(values: Tensor, targets: Tensor) -> Tensor:
    mask = answer_mask(targets)
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def cross_entropy_per_sample(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """ℓ_i in fp32: −log softmax(z_i)[y_i] for (B, C) logits, the answer NLL (mean over A_i) for (B, L, V) logits."""
    logits = logits.float()
    if logits.ndim == 2:
        return F.cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)
    tokens = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
    return _mean_over_answer(tokens, targets)


def correct_per_sample(logits: Tensor, targets: Tensor) -> Tensor:
    """1[argmax z_i = y_i] for class logits; acc_i (the fraction of answer tokens predicted) for sequences."""
    hits = (logits.argmax(dim=-1) == targets).float()
    return hits if logits.ndim == 2 else _mean_over_answer(hits, targets)


def kl_per_sample(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 1.0, targets: Tensor | None = None) -> Tensor:
    """KL_i(p_T ‖ p_S) = Σ_c p_T,c·(log p_T,c − log p_S,c), p = softmax(z / T), in fp32; for sequences the mean over
    the answer positions of ``targets`` (all positions when None)."""
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(dim=-1)
    if kl.ndim == 1:
        return kl
    return kl.mean(dim=1) if targets is None else _mean_over_answer(kl, targets)
