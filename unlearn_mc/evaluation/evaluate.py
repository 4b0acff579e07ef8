"""Evaluate any model on named loaders outside a Trainer loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from unlearn_mc.evaluation.metrics import UnlearningMetrics


@torch.no_grad()
def evaluate_model(forward: Callable[[Tensor], Tensor], loaders: Mapping[str, DataLoader], device: torch.device | str = "cpu", mia_seed: int = 0, sync: bool = False,
                   loss_attack: bool = True) -> dict[str, float]:
    """Run ``forward`` (inputs → logits, already in eval mode) over each loader and return
    ``UnlearningMetrics.compute()``: ``<split>_acc``, ``<split>_loss``, ``mia_efficacy``, ``mia_loss_acc``.

    With ``sync=True`` the per-sample values of all processes are gathered first (use it when each
    process evaluated its own shard); by default each process's loaders are taken as complete.
    ``loss_attack=False`` leaves out ``mia_loss_acc``."""
    metrics = UnlearningMetrics(mia_seed, sync=sync, loss_attack=loss_attack)
    for split, loader in loaders.items():
        for inputs, targets in loader:
            metrics.update(split, forward(inputs.to(device)), targets.to(device))
    return metrics.compute()
