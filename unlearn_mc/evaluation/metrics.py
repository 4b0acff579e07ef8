"""``UnlearningMetrics``: per-split accumulation (synchronised across processes) and the metric dict."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics.aggregation import CatMetric

from unlearn_mc.evaluation.mia import mia_efficacy, mia_loss_accuracy
from unlearn_mc.evaluation.per_sample import per_sample_stats


class UnlearningMetrics:
    """Collects per-sample loss, correctness and confidence for each evaluation split.

    ``compute()`` returns, for every split s seen, ``s_acc`` = mean correctness and
    ``s_loss`` = mean cross-entropy; with forget, retain and test present also
    ``mia_efficacy`` and (unless ``loss_attack=False``, which saves its cross-validated fits)
    ``mia_loss_acc`` (see ``unlearn_mc.evaluation.mia``). The per-sample
    values live in torchmetrics ``CatMetric`` states, so under DDP ``compute()`` gathers
    every process's samples before any metric is formed.
    """

    STATS = ("loss", "correct", "confidence")

    def __init__(self, mia_seed: int = 0, sync: bool = True, loss_attack: bool = True) -> None:
        self.mia_seed = mia_seed
        self.sync = sync
        self.loss_attack = loss_attack
        self._states: dict[str, dict[str, CatMetric]] = {}

    def update(self, split: str, logits: Tensor, targets: Tensor) -> None:
        stats = per_sample_stats(logits, targets)
        if split not in self._states:
            self._states[split] = {name: CatMetric(sync_on_compute=self.sync).to(logits.device) for name in self.STATS}
        for name, values in stats.items():
            self._states[split][name].update(values)

    def gathered(self) -> dict[str, dict[str, Tensor]]:
        """Per-split, per-statistic tensors over every process's samples (on CPU)."""
        out = {}
        for split, states in self._states.items():
            out[split] = {name: torch.atleast_1d(metric.compute()).detach().cpu() for name, metric in states.items()}
        return out

    def compute(self) -> dict[str, float]:
        stats = self.gathered()
        metrics: dict[str, float] = {}
        for split, values in stats.items():
            metrics[f"{split}_acc"] = float(values["correct"].mean()) if len(values["correct"]) else math.nan
            metrics[f"{split}_loss"] = float(values["loss"].mean()) if len(values["loss"]) else math.nan
        if {"forget", "retain", "test"} <= stats.keys():
            metrics["mia_efficacy"] = mia_efficacy(
                stats["retain"]["confidence"].numpy(), stats["test"]["confidence"].numpy(), stats["forget"]["confidence"].numpy(), self.mia_seed
            )
            if self.loss_attack:
                metrics["mia_loss_acc"] = mia_loss_accuracy(stats["forget"]["loss"].numpy(), stats["test"]["loss"].numpy(), self.mia_seed)
        return metrics

    def reset(self) -> None:
        self._states.clear()
