"""Is an endpoint usable? ``ok``, ``collapsed`` (retain or test accuracy near chance) or ``diverged`` (non-finite)."""

from __future__ import annotations

import math
import re
from typing import Any

from unlearn_mc.study.stages import StageResult, endpoint_stage_id
from unlearn_mc.study.spec import StudySpec

MODEL_COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
COLLAPSE_FACTOR = 1.5  # an accuracy at most 1.5 × chance (1/num_classes) is a collapsed model
_NON_FINITE_STOP = re.compile(r"non-finite|became -?(nan|inf)", re.IGNORECASE)


def declared_num_classes(study: StudySpec) -> int | None:
    """The network's ``num_classes`` init argument, when the study file gives one."""
    value = study.net.get("init_args", {}).get("num_classes")
    return int(value) if isinstance(value, int) else None


def collapse_threshold(study: StudySpec, num_classes: int | None) -> tuple[float, str]:
    """The accuracy at or below which an endpoint is collapsed, max(1.5 / num_classes, collapse_floor), and how it was set."""
    candidates = []
    if num_classes:
        candidates.append((COLLAPSE_FACTOR / num_classes, f"{COLLAPSE_FACTOR} × chance (1/{num_classes})"))
    floor = study.evaluation.get("collapse_floor")
    if floor is not None:
        candidates.append((float(floor), f"the study's collapse_floor {float(floor)}"))
    return max(candidates) if candidates else (0.0, "no threshold (unknown number of classes)")


def endpoint_statuses(study: StudySpec, results: dict[str, StageResult], num_classes: int | None = None) -> dict[str, dict[str, Any]]:
    """Per endpoint: ``status`` (``ok``, ``collapsed`` or ``diverged``), a one-sentence ``reason`` and ``collapsed``.

    ``collapsed`` is true when the retain or test accuracy a is at most the threshold τ = max(1.5/C, collapse_floor)
    (C = ``num_classes``, else the network's declared ``num_classes``). The status is ``diverged`` when the stage
    stopped on a non-finite loss or non-finite weights (its ``stop_reason``) or its metrics are non-finite, else
    ``collapsed`` when collapsed, else ``ok``.
    """
    threshold, source = collapse_threshold(study, num_classes or declared_num_classes(study))
    statuses = {}
    for name in study.endpoints:
        result = results[endpoint_stage_id(name)]
        metrics, stop = result.get("metrics") or {}, result.get("stop_reason") or ""
        low = {column: metrics[column] for column in ("retain_acc", "test_acc") if column in metrics and metrics[column] <= threshold}
        collapsed = bool(low)
        non_finite = [column for column in MODEL_COLUMNS if column in metrics and not math.isfinite(metrics[column])]
        if _NON_FINITE_STOP.search(stop):
            status, reason = "diverged", f"{name} diverged: {stop}."
        elif non_finite:
            status, reason = "diverged", f"{name} diverged: its {', '.join(non_finite)} are non-finite."
        elif collapsed:
            accuracies = " and ".join(f"{column.replace('_acc', ' accuracy')} {value:.4f}" for column, value in low.items())
            status, reason = "collapsed", f"{name} collapsed: its {accuracies} are at or below {threshold:.4f}, {source}."
        else:
            status, reason = "ok", ""
        statuses[name] = {"status": status, "reason": reason, "collapsed": collapsed}
    return statuses


def pair_status(statuses: dict[str, dict[str, Any]] | None, *names: str) -> str:
    """``ok`` when every named endpoint is ok, else e.g. ``ga collapsed; ft diverged`` (``unknown`` without a status)."""
    found = [(name, (statuses or {}).get(name, {"status": "unknown"})["status"]) for name in dict.fromkeys(names)]
    bad = [f"{name} {status}" for name, status in found if status != "ok"]
    return "; ".join(bad) if bad else "ok"
