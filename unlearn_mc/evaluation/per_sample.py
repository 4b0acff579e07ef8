"""Per-sample quantities every unlearning metric is built from."""

from __future__ import annotations

import torch
from torch import Tensor

from unlearn_mc.evaluation.sequence import correct_per_sample, cross_entropy_per_sample


@torch.no_grad()
def per_sample_stats(logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """For each sample i, in fp32:

    - ``loss``: ℓ_i = −log softmax(z_i)[y_i] (cross-entropy),
    - ``correct``: 1[argmax z_i = y_i],
    - ``confidence``: softmax(z_i)[y_i] = exp(−ℓ_i), the true-class probability the MIA reads.

    For a causal LM's (B, L, V) logits, ℓ_i is the answer NLL and ``correct`` the answer-token accuracy
    (``unlearn_mc.evaluation.sequence``).
    """
    loss = cross_entropy_per_sample(logits, targets)
    return {"loss": loss, "correct": correct_per_sample(logits, targets), "confidence": torch.exp(-loss)}
