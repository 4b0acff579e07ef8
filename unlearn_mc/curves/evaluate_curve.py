"""Evaluation along a curve: the one function behind the callback, ``unlearn-mc validate`` and Python use."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from unlearn_mc.curves.curve import curve_of
from unlearn_mc.curves.summary import summarize
from unlearn_mc.data.batches import split_batch
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.evaluate import evaluate_model
from unlearn_mc.evaluation.gap import GAP_METRICS, average_gap
from unlearn_mc.models.modes import module_mode

DEFAULT_POINTS = 31


def make_t_grid(grid: int | Sequence[float] = DEFAULT_POINTS) -> list[float]:
    """The sorted grid of t: ``n`` evenly spaced points on [0, 1] for an integer n ≥ 2, or the given values.

    Every value must lie in [0, 1]; 0 and 1 are added when missing, since the barriers are
    measured against the endpoints.
    """
    if isinstance(grid, bool):
        raise UnlearnMCError(f"t_grid={grid!r} is not a grid; use a number of points ≥ 2 or a non-empty list of t in [0, 1].")
    if isinstance(grid, int):
        if grid < 2:
            raise UnlearnMCError(f"t_grid={grid} is too few points; use at least 2 (the endpoints) or a non-empty list of t in [0, 1].")
        return [k / (grid - 1) for k in range(grid)]
    values = list(grid)
    if not values:
        raise UnlearnMCError("t_grid=[] is empty; use a number of points ≥ 2 or a non-empty list of t in [0, 1].")
    for value in values:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
            raise UnlearnMCError(f"t_grid contains {value!r}, outside [0, 1]; every t must lie in [0, 1].")
    return sorted({0.0, 1.0, *(float(value) for value in values)})


class LabelledLoader:
    """A loader whose batches, of any form ``split_batch`` reads (tuples, dicts), come out as ``(inputs, labels)``."""

    def __init__(self, loader: Iterable, label_key: str | int | None = None) -> None:
        self.loader, self.label_key = loader, label_key

    def __iter__(self):
        for batch in self.loader:
            yield split_batch(batch, self.label_key)

    def __len__(self) -> int:
        return len(self.loader)


def labelled(loaders: Mapping[str, Iterable], label_key: str | int | None = None) -> dict[str, LabelledLoader]:
    """Each loader wrapped in ``LabelledLoader``: ``(x, y)`` batches pass unchanged."""
    return {name: LabelledLoader(loader, label_key) for name, loader in loaders.items()}


@dataclass
class CurveResult:
    """Metrics at each t of the grid (``rows[k]`` belongs to ``ts[k]``) and their ``summary``."""

    ts: list[float]
    rows: list[dict[str, float]]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def metric_names(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []


@torch.no_grad()
def evaluate_curve(
    curve,
    loaders: Mapping[str, DataLoader],
    t_grid: int | Sequence[float] = DEFAULT_POINTS,
    bn_loader: Iterable | None = None,
    bn_batches: int | None = None,
    reference: Mapping[str, float] | None = None,
    tolerance: float = 0.01,
    best_by: str = "auto",
    retain_floor: float = 0.9,
    sync: bool = False,
    context: Callable[[], AbstractContextManager] = nullcontext,
    mia_seed: int = 0,
    label_key: str | int | None = None,
) -> CurveResult:
    """Evaluate φ(t) at every t of the grid and summarise.

    At each t: BatchNorm recalibration over ``bn_loader`` (at most ``bn_batches`` batches; skipped
    when ``bn_loader`` is None, in which case 0 < t < 1 runs with whatever statistics the network
    holds and the curve warns once), then ``evaluate_model`` on ``loaders`` in eval mode: loss and
    accuracy of every split (``forget``, ``retain``, ``test`` …), ``mia_efficacy`` and
    ``mia_loss_acc``; with ``reference`` (the retrain model's metrics) also
    ``avg_gap`` = mean |metric − reference| over forget/retain/test accuracy and MIA efficacy.
    The summary (see ``summarize``) holds the retain/forget barriers, the MCU condition within
    ``tolerance``, the curve length, min/max/mean/length-weighted mean of each metric and the
    best t by ``best_by``.

    Args:
        curve: a ``Curve``, or a ``CurveModule`` (its curve and, unless ``label_key`` is given, its label_key).
        sync: gather the per-sample values of all processes (each evaluated its own shard).
        context: entered around each evaluation, e.g. the Trainer's precision context.
        label_key: where the batches keep their labels (``split_batch``).
    """
    curve, label_key = curve_of(curve, label_key)
    ts = make_t_grid(t_grid)
    device = curve.device
    loaders = labelled(loaders, label_key)
    rows: list[dict[str, float]] = []
    with module_mode(curve, training=False):
        for t in ts:
            if bn_loader is not None:
                curve.recalibrate_bn(t, bn_loader, bn_batches, label_key)
            with context():
                metrics = evaluate_model(curve.network_fn(t), loaders, device, mia_seed=mia_seed, sync=sync)
            if reference is not None and all(name in metrics and name in reference for name in GAP_METRICS):
                metrics["avg_gap"] = average_gap(metrics, reference)
            rows.append(metrics)
    summary = summarize(ts, rows, curve.segment_lengths(ts), tolerance, best_by, retain_floor)
    summary["curve"] = {"family": curve.family.name, "num_bends": curve.family.num_bends}
    summary["reference"] = dict(reference) if reference is not None else None
    return CurveResult(ts, rows, summary)


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN/∞ float replaced by ``None`` (recursively), so the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value
