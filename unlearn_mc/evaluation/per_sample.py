"""Per-sample quantities every unlearning metric is built from."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def per_sample_stats(logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """For each sample i, in fp32:

    - ``loss``: ℓ_i = −log softmax(z_i)[y_i] (cross-entropy),
    - ``correct``: 1[argmax z_i = y_i],
    - ``confidence``: softmax(z_i)[y_i] = exp(−ℓ_i), the true-class probability the MIA reads.
    """
    logits = logits.float()
    loss = F.cross_entropy(logits, targets, reduction="none")
    return {"loss": loss, "correct": (logits.argmax(dim=-1) == targets).float(), "confidence": torch.exp(-loss)}
