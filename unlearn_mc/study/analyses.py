"""The paper's analyses on finished stages: ensembles along a curve and the relearning attack.

Both work on any curve checkpoint and any network; the tables are assembled in ``run.py`` and ``report.py``.
A network whose outputs or weights turn non-finite is reported as such (``NonFiniteError`` or a record
with ``status="non-finite"``), never as a crash inside a metric.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation import UnlearningMetrics
from unlearn_mc.study import defaults

RELEARN_ATTACKS = tuple(defaults.RELEARN["attacks"])  # forget, retain_only


class NonFiniteError(ArithmeticError):
    """A network gave non-finite outputs; the message says where, in one sentence."""


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
    Raises ``NonFiniteError`` when a member's outputs are not finite.
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
            if not torch.isfinite(probabilities).all():
                raise NonFiniteError(f"the curve's network at t={float(t):.2f} gave non-finite outputs on the {split} split.")
            summed[split] = summed.get(split, 0) + probabilities
            targets[split] = labels
    metrics = UnlearningMetrics(sync=False)
    for split, total in summed.items():
        metrics.update(split, torch.log((total / len(points)).clamp_min(1e-12)), targets[split])
    return metrics.compute()


def relearn_split(size: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions 0..size−1 of the forget set split into the attacker's fine-tuning part (a seeded
    ``round(fraction·size)``, at least one) and the held-out part on which recovery is scored (the rest).

    The two are disjoint and together cover the forget set; both are sorted.
    """
    count = max(1, int(round(fraction * size)))
    if count >= size:
        raise UnlearnMCError(f"the forget set has {size} sample(s): fine-tuning on {count} leaves none to score recovery on; "
                             "lower analyses.relearn.forget_fraction.")
    order = np.random.default_rng(seed).permutation(size)
    return np.sort(order[:count]), np.sort(order[count:])


@torch.no_grad()
def accuracy(net: nn.Module, loader: DataLoader, device: torch.device | str) -> float:
    """Mean of [argmax f(x) = y] over ``loader``; NaN when any logit is non-finite (no class is predicted then)."""
    correct, total = 0, 0
    for inputs, targets in loader:
        logits = net(inputs.to(device))
        if not torch.isfinite(logits).all():
            return math.nan
        correct += int((logits.argmax(-1).cpu() == targets).sum())
        total += len(targets)
    return correct / total if total else math.nan


@dataclass
class RelearnRecord:
    """One attack: forget accuracy (on the held-out part of D_f) by step, test accuracy before and after.

    ``status`` is ``ok`` or ``non-finite``; a non-finite attack stopped at the step ``reason`` names, and the
    accuracies of the steps it did not reach are NaN.
    """

    forget_acc: dict[int, float]
    test_acc_before: float
    test_acc_after: float
    status: str = "ok"
    reason: str = ""
    steps_done: int = 0


def relearn_attack(net: nn.Module, fine_tune_data: Dataset, scored_loader: DataLoader, test_loader: DataLoader | None,
                   steps: Sequence[int], lr: float = 0.01, batch_size: int = 16, seed: int = 0,
                   device: torch.device | str = "cpu") -> RelearnRecord:
    """Fine-tune a copy of ``net`` on ``fine_tune_data`` and score it on ``scored_loader`` after each number of ``steps``.

    SGD (momentum 0.9) on the cross-entropy of shuffled mini-batches, cycling over the data; BatchNorm
    statistics stay frozen (eval mode), so the attack moves only the weights. ``forget_acc[s]`` is the
    accuracy on ``scored_loader`` after s steps (s = 0: before); the test accuracy is measured before the
    first step and after the last. A non-finite loss, weight or output stops the attack: the record then
    has ``status="non-finite"`` and a one-sentence ``reason``, never an exception.
    """
    attacked = copy.deepcopy(net).to(device).eval()
    optimizer = torch.optim.SGD(attacked.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(fine_tune_data, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=scored_loader.collate_fn)
    last = max(steps)
    record = RelearnRecord(forget_acc={s: math.nan for s in (0, *sorted(set(steps)))}, test_acc_before=math.nan, test_acc_after=math.nan)
    record.forget_acc[0] = accuracy(attacked, scored_loader, device)
    if test_loader is not None:
        record.test_acc_before = accuracy(attacked, test_loader, device)
    if not math.isfinite(record.forget_acc[0]):
        record.status, record.reason = "non-finite", "the model gave non-finite outputs before the attack."
        return record
    step, batches = 0, iter(loader)
    while step < last:
        try:
            inputs, targets = next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        optimizer.zero_grad()
        loss = F.cross_entropy(attacked(inputs.to(device)), targets.to(device))
        if not torch.isfinite(loss):
            record.status, record.reason = "non-finite", f"the attack's loss became {loss.item()} at step {step + 1}; the attack stopped."
            return record
        loss.backward()
        optimizer.step()
        step += 1
        record.steps_done = step
        if not all(torch.isfinite(p).all() for p in attacked.parameters()):
            record.status, record.reason = "non-finite", f"the weights became non-finite at step {step}; the attack stopped."
            return record
        if step in record.forget_acc:
            record.forget_acc[step] = accuracy(attacked, scored_loader, device)
            if not math.isfinite(record.forget_acc[step]):
                record.status, record.reason = "non-finite", f"the model gave non-finite outputs after step {step}; the attack stopped."
                return record
    if test_loader is not None:
        record.test_acc_after = accuracy(attacked, test_loader, device)
    return record
