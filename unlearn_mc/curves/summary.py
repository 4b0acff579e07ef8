"""What a table of metrics along t says: barriers, the MCU condition, statistics per metric and the best t.

All functions take the grid t_0 = 0 < t_1 < … < t_K = 1 and one list of values per metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from unlearn_mc.errors import UnlearnMCError

BEST_BY = ("auto", "avg_gap", "forget_acc", "proxy_gap")
CLASS_FORGETTING_METRIC = "test_forget_class_acc"  # only class forgetting evaluates the forgotten classes' test images


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def barriers(ts: Sequence[float], retain_loss: Sequence[float], forget_loss: Sequence[float]) -> dict[str, float]:
    """Largest violations of the MCU condition along the grid:

    - retain barrier B_r = max_k [L_r(φ(t_k)) − ((1−t_k)·L_r(φ(0)) + t_k·L_r(φ(1)))],
    - forget barrier B_f = max_k [((1−t_k)·L_f(φ(0)) + t_k·L_f(φ(1))) − L_f(φ(t_k))],

    with the t where each is reached. Both are ≥ 0 since the endpoints are on the grid.
    """
    def largest(gaps: list[float]) -> tuple[float, float]:
        index = max(range(len(gaps)), key=lambda k: -math.inf if math.isnan(gaps[k]) else gaps[k])
        return gaps[index], ts[index]

    retain_gaps = [loss - ((1 - t) * retain_loss[0] + t * retain_loss[-1]) for t, loss in zip(ts, retain_loss)]
    forget_gaps = [((1 - t) * forget_loss[0] + t * forget_loss[-1]) - loss for t, loss in zip(ts, forget_loss)]
    retain_barrier, retain_t = largest(retain_gaps)
    forget_barrier, forget_t = largest(forget_gaps)
    return {"retain_barrier": retain_barrier, "retain_barrier_t": retain_t, "forget_barrier": forget_barrier, "forget_barrier_t": forget_t}


def metric_statistics(values: Sequence[float], lengths: Sequence[float]) -> dict[str, float]:
    """min, max, mean over the grid (NaN ignored) and the curve-length-weighted mean

    m̄ = Σ_k ℓ_k·(m_k + m_{k+1})/2 / Σ_k ℓ_k, ℓ_k = ‖φ(t_{k+1}) − φ(t_k)‖ (the trapezoid rule for
    (1/L)∫ m ds); the plain mean when the curve has length 0.
    """
    finite = _finite(values)
    if not finite:
        return {"min": math.nan, "max": math.nan, "mean": math.nan, "length_weighted_mean": math.nan}
    total = sum(lengths)
    if total > 0.0:
        weighted = sum(length * (a + b) / 2 for length, a, b in zip(lengths, values[:-1], values[1:])) / total
    else:
        weighted = sum(finite) / len(finite)
    return {"min": min(finite), "max": max(finite), "mean": sum(finite) / len(finite), "length_weighted_mean": weighted}


def best_point(ts: Sequence[float], rows: Sequence[Mapping[str, float]], best_by: str = "auto", retain_floor: float = 0.9) -> dict[str, Any]:
    """The best t of the grid by ``best_by``:

    - ``avg_gap``: the smallest average gap to the retrain reference (needs an ``avg_gap`` column);
    - ``forget_acc``: the lowest forget accuracy among the t whose retain accuracy is ≥ ``retain_floor``;
    - ``proxy_gap``: a retrain-free stand-in for ``avg_gap`` under random forgetting, where the retrain
      model classifies D_f like unseen data (forget accuracy ≈ test accuracy) and loses no retain or
      test accuracy. Among the t whose retain accuracy is ≥ ``retain_floor``, the smallest
      g_k = (1/3)·(|f_k − s_k| + (max_j r_j − r_k) + (max_j s_j − s_k)), f, r, s the forget, retain and
      test accuracies, max_j over the grid; so a t that forgets below the test accuracy, or buys a lower
      forget accuracy with retain or test accuracy, is not rewarded (needs a ``test_acc`` column);
    - ``auto``: ``avg_gap`` when the rows have it; without a retrain reference, ``forget_acc`` under class
      forgetting (the rows have ``test_forget_class_acc``: the retrain model's forget accuracy is ≈ 0, so
      lower is better) and ``proxy_gap`` otherwise (random forgetting; ``forget_acc`` if there is no
      ``test_acc`` column).

    For ``forget_acc`` and ``proxy_gap``, if no t reaches the floor, the t of highest retain accuracy is
    chosen (``floor_met`` false).
    """
    if best_by not in BEST_BY:
        raise UnlearnMCError(f"best_by={best_by!r} is not a criterion; use one of {', '.join(BEST_BY)}.")
    has_gap = all("avg_gap" in row for row in rows)
    has_test = all("test_acc" in row for row in rows)
    if best_by == "auto":
        if has_gap:
            criterion = "avg_gap"
        elif any(CLASS_FORGETTING_METRIC in row for row in rows) or not has_test:
            criterion = "forget_acc"
        else:
            criterion = "proxy_gap"
    else:
        criterion = best_by
    indices = range(len(ts))

    def value(k: int, name: str, worst: float) -> float:
        v = rows[k].get(name, math.nan)
        return worst if math.isnan(v) else v

    if criterion == "avg_gap":
        if not has_gap:
            raise UnlearnMCError("best_by='avg_gap' needs the retrain reference: set the curve's retrain checkpoint, or use best_by='forget_acc'.")
        index = min(indices, key=lambda k: value(k, "avg_gap", math.inf))
        return {"criterion": "avg_gap", "index": index, "t": ts[index], "value": rows[index]["avg_gap"]}
    if criterion == "proxy_gap":
        if not has_test:
            raise UnlearnMCError("best_by='proxy_gap' needs a test_acc column in the rows; use best_by='forget_acc'.")
        best_retain = max(value(k, "retain_acc", -math.inf) for k in indices)
        best_test = max(value(k, "test_acc", -math.inf) for k in indices)

        def score(k: int) -> float:
            forget, retain, test = (rows[k].get(name, math.nan) for name in ("forget_acc", "retain_acc", "test_acc"))
            gap = (abs(forget - test) + (best_retain - retain) + (best_test - test)) / 3
            return math.inf if math.isnan(gap) else gap

        scores = [score(k) for k in indices]
    else:
        scores = [value(k, "forget_acc", math.inf) for k in indices]
    eligible = [k for k in indices if value(k, "retain_acc", -math.inf) >= retain_floor]
    if eligible:
        index = min(eligible, key=scores.__getitem__)
        floor_met = True
    else:
        index = max(indices, key=lambda k: value(k, "retain_acc", -math.inf))
        floor_met = False
    best = {
        "criterion": criterion, "index": index, "t": ts[index], "value": rows[index].get("forget_acc", math.nan),
        "retain_floor": retain_floor, "floor_met": floor_met,
    }
    if criterion == "proxy_gap":
        best["value"] = scores[index]
    return best


def summarize(
    ts: Sequence[float],
    rows: Sequence[Mapping[str, float]],
    lengths: Sequence[float],
    tolerance: float = 0.01,
    best_by: str = "auto",
    retain_floor: float = 0.9,
) -> dict[str, Any]:
    """Barriers, the MCU condition (both barriers ≤ ``tolerance``), curve length, per-metric statistics and the best t."""
    names = list(rows[0])
    summary: dict[str, Any] = {"t": list(ts), "num_points": len(ts)}
    if "retain_loss" in names and "forget_loss" in names:
        found = barriers(ts, [row["retain_loss"] for row in rows], [row["forget_loss"] for row in rows])
        summary.update(found)
        summary["mcu_condition"] = {
            "holds": bool(found["retain_barrier"] <= tolerance and found["forget_barrier"] <= tolerance),
            "tolerance": tolerance,
        }
    summary["curve_length"] = sum(lengths)
    summary["metrics"] = {name: metric_statistics([row.get(name, math.nan) for row in rows], lengths) for name in names}
    best = best_point(ts, rows, best_by, retain_floor)
    best["metrics"] = dict(rows[best["index"]])
    summary["best"] = best
    return summary
