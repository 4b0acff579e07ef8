"""The paper's analyses on finished stages: ensembles along a curve and the relearning attack.

Both work on any curve checkpoint and any network; the tables are assembled in ``report.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from unlearn_mc.evaluation import UnlearningMetrics, evaluate_model


@torch.no_grad()
def _probabilities(forward, loader: DataLoader, device: torch.device) -> tuple[Tensor, Tensor]:
    probabilities, targets = [], []
    for inputs, labels in loader:
        probabilities.append(forward(inputs.to(device)).float().softmax(-1).cpu())
        targets.append(labels)
    return torch.cat(probabilities), torch.cat(targets)


@torch.no_grad()
def ensemble_metrics(curve, points: Sequence[float], loaders: Mapping[str, DataLoader], bn_loader: DataLoader | None,
                     bn_batches: int | None, device: torch.device) -> dict[str, float]:
    """Metrics of the ensemble p̄(y|x) = (1/K)·Σ_k softmax(f_{φ(t_k)}(x)) over the K points ``points`` of ``curve``.

    BatchNorm is recalibrated at each t_k first. Accuracy, loss (−log p̄_y) and both MIA scores are
    computed from p̄ exactly as for a single model (its log-probabilities are fed as logits).
    """
    curve.eval()
    summed: dict[str, Tensor] = {}
    targets: dict[str, Tensor] = {}
    for t in points:
        if bn_loader is not None:
            curve.recalibrate_bn(t, bn_loader, bn_batches)
        forward = curve.network_fn(t)
        for split, loader in loaders.items():
            probabilities, labels = _probabilities(forward, loader, device)
            summed[split] = summed.get(split, 0) + probabilities
            targets[split] = labels
    metrics = UnlearningMetrics(sync=False)
    for split, total in summed.items():
        metrics.update(split, torch.log((total / len(points)).clamp_min(1e-12)), targets[split])
    return metrics.compute()


def relearn_subset(forget: Subset | torch.utils.data.Dataset, fraction: float, seed: int) -> Subset:
    """A seeded fraction (at least one sample) of the forget set: the attacker's relearning data."""
    count = max(1, int(round(fraction * len(forget))))
    chosen = np.sort(np.random.default_rng(seed).permutation(len(forget))[:count])
    return Subset(forget, chosen.tolist())


def relearn_attack(net: nn.Module, relearn_data, forget_loader: DataLoader, steps: Sequence[int], lr: float = 0.01,
                   batch_size: int = 16, seed: int = 0, device: torch.device | str = "cpu") -> dict[int, float]:
    """Forget accuracy after fine-tuning a copy of ``net`` on ``relearn_data`` for each number of ``steps``.

    SGD (momentum 0.9) on the cross-entropy of shuffled mini-batches, cycling over the data;
    BatchNorm statistics stay frozen (eval mode), so the attack moves only the weights. Returns
    ``{0: before, s: forget accuracy after s steps}`` for every s in ``steps``.
    """
    attacked = copy.deepcopy(net).to(device).eval()
    optimizer = torch.optim.SGD(attacked.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(relearn_data, batch_size=batch_size, shuffle=True, generator=generator)

    def forget_acc() -> float:
        return evaluate_model(attacked, {"forget": forget_loader}, device)["forget_acc"]

    record = {0: forget_acc()}
    wanted, step, batches = set(steps), 0, iter(loader)
    while step < max(steps):
        try:
            inputs, targets = next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        optimizer.zero_grad()
        F.cross_entropy(attacked(inputs.to(device)), targets.to(device)).backward()
        optimizer.step()
        step += 1
        if step in wanted:
            record[step] = forget_acc()
    return record
