"""The study's tables, built from the finished stages' results (one replica, i.e. one seed)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from unlearn_mc.study.endpoint_status import MODEL_COLUMNS, endpoint_statuses, pair_status
from unlearn_mc.study.stages import StageResult, curve_stage_id, endpoint_stage_id
from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.tables import Failures, Row
from unlearn_mc.evaluation.gap import GAP_METRICS, average_gap


def method_table(study: StudySpec, results: dict[str, StageResult], statuses: dict[str, dict[str, Any]] | None = None) -> list[Row]:
    """Per endpoint: status, forget/retain/test accuracy, MIA efficacy, average gap to retrain and runtime."""
    statuses = statuses if statuses is not None else endpoint_statuses(study, results)
    reference = results["retrain"]["metrics"]
    rows = []
    for name in study.endpoints:
        result = results[endpoint_stage_id(name)]
        metrics = result["metrics"]
        row: Row = {"model": name, "method": result["info"].get("method", name), "status": statuses.get(name, {"status": "unknown"})["status"]}
        row.update({column: metrics.get(column, math.nan) for column in MODEL_COLUMNS})
        row["avg_gap"] = average_gap(metrics, reference) if all(m in metrics for m in GAP_METRICS) else math.nan
        row["runtime_s"] = float(result.get("runtime_s") or math.nan)
        rows.append(row)
    return rows


def curve_rows(results: dict[str, StageResult], statuses: dict[str, dict[str, Any]] | None = None) -> list[Row]:
    """Per curve: endpoints, family, both barriers, the MCU condition and the best t with its metrics; with
    ``statuses``, also ``endpoint_status`` (``ok`` or which endpoint collapsed or diverged)."""
    rows = []
    for result in results.values():
        if result["kind"] != "curve":
            continue
        info, summary = result["info"], result["curve"]["summary"]
        best = summary["best"]
        rows.append({
            "curve": result["stage"], "family": info["family"], "start": info["start"], "end": info["end"],
            "retain_barrier": summary.get("retain_barrier", math.nan), "forget_barrier": summary.get("forget_barrier", math.nan),
            "mcu_holds": summary.get("mcu_condition", {}).get("holds"), "best_by": best["criterion"], "best_t": best["t"],
            "best_forget_acc": best["metrics"].get("forget_acc", math.nan), "best_retain_acc": best["metrics"].get("retain_acc", math.nan),
            "best_test_acc": best["metrics"].get("test_acc", math.nan),
        })
        if statuses is not None:
            rows[-1]["endpoint_status"] = pair_status(statuses, info["start"], info["end"])
    return rows


def recalibration_rows(study: StudySpec, results: dict[str, StageResult], statuses: dict[str, dict[str, Any]] | None = None) -> list[Row]:
    """Per endpoint: its metrics with its own BatchNorm statistics (as trained) next to the same model's
    metrics at t = 0 or 1 of a curve, where BatchNorm is recalibrated on the ``bn_split`` like every t;
    ``max_shift`` = max over forget/retain/test accuracy and MIA efficacy of |own − recalibrated|."""
    rows = []
    for name in study.endpoints:
        own = results[endpoint_stage_id(name)]["metrics"]
        curve = next((r for r in results.values() if r["kind"] == "curve" and name in (r["info"]["start"], r["info"]["end"])), None)
        if curve is None or not all(column in own for column in MODEL_COLUMNS):
            continue
        recalibrated = curve["curve"]["rows"][0 if curve["info"]["start"] == name else -1]
        row: Row = {"model": name, "curve": curve["stage"], "endpoint_status": pair_status(statuses, name)}
        for column in MODEL_COLUMNS:
            row[f"{column}_own"], row[f"{column}_recalibrated"] = own[column], recalibrated[column]
        row["max_shift"] = max(abs(own[column] - recalibrated[column]) for column in MODEL_COLUMNS)
        rows.append(row)
    return rows


def barrier_matrices(study: StudySpec, results: dict[str, StageResult]) -> dict[str, dict[str, np.ndarray]]:
    """For each family: the symmetric matrices of retain and forget barriers over ``curves.matrix``."""
    names = study.matrix
    matrices = {}
    for family in study.families:
        found = {"retain_barrier": np.full((len(names), len(names)), np.nan), "forget_barrier": np.full((len(names), len(names)), np.nan)}
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                result = results.get(curve_stage_id(family, a, b)) or results.get(curve_stage_id(family, b, a))
                if result is None:
                    continue
                for key in found:
                    found[key][i, j] = result["curve"]["summary"].get(key, np.nan)
            for key in found:
                found[key][i, i] = 0.0
        matrices[family] = found
    return matrices


def path_rows(study: StudySpec, results: dict[str, StageResult], source: str, statuses: dict[str, dict[str, Any]] | None = None) -> list[Row]:
    """Straight lines from ``source`` to each method: barriers, and how linearly unlearning progresses
    (the largest |forget_acc(t) − ((1−t)·forget_acc(0) + t·forget_acc(1))| along the grid)."""
    rows = []
    for method in study.methods:
        result = results.get(curve_stage_id("line", source, method))
        if result is None:
            continue
        ts, curve_values = result["curve"]["ts"], result["curve"]["rows"]
        forget = [row["forget_acc"] for row in curve_values]
        deviation = max(abs(value - ((1 - t) * forget[0] + t * forget[-1])) for t, value in zip(ts, forget))
        midpoint = min(range(len(ts)), key=lambda k: abs(ts[k] - 0.5))
        summary = result["curve"]["summary"]
        rows.append({
            "method": method, "endpoint_status": pair_status(statuses, source, method),
            "retain_barrier": summary.get("retain_barrier", math.nan), "forget_barrier": summary.get("forget_barrier", math.nan),
            "forget_acc_t0": forget[0], "forget_acc_t0.5": forget[midpoint], "forget_acc_t1": forget[-1],
            "max_deviation_from_linear": deviation,
        })
    return rows


def intermediate_rows(results: dict[str, StageResult], statuses: dict[str, dict[str, Any]] | None = None) -> list[Row]:
    """Does an interior t beat both endpoints? (a) a smaller average gap to retrain than either
    endpoint; (b) a lower forget accuracy than both endpoints at a retain accuracy at least the lower endpoint's."""
    rows = []
    for result in results.values():
        if result["kind"] != "curve":
            continue
        ts, values = result["curve"]["ts"], result["curve"]["rows"]
        interior = range(1, len(ts) - 1)
        row: Row = {"curve": result["stage"], "endpoint_status": pair_status(statuses, result["info"]["start"], result["info"]["end"])}
        if all("avg_gap" in v for v in values) and len(ts) > 2:
            best = min(interior, key=lambda k: values[k]["avg_gap"])
            row.update(gap_t0=values[0]["avg_gap"], gap_t1=values[-1]["avg_gap"], best_interior_t=ts[best], best_interior_gap=values[best]["avg_gap"],
                       gap_beats_both=values[best]["avg_gap"] < min(values[0]["avg_gap"], values[-1]["avg_gap"]))
        floor = min(values[0]["retain_acc"], values[-1]["retain_acc"])
        ceiling = min(values[0]["forget_acc"], values[-1]["forget_acc"])
        better = [k for k in interior if values[k]["retain_acc"] >= floor and values[k]["forget_acc"] < ceiling]
        chosen = min(better, key=lambda k: values[k]["forget_acc"]) if better else None
        row.update(forget_beats_both=bool(better), forget_t=ts[chosen] if chosen is not None else None,
                   forget_acc_at_t=values[chosen]["forget_acc"] if chosen is not None else None)
        rows.append(row)
    return rows


def build_tables(study: StudySpec, results: dict[str, StageResult], statuses: dict[str, dict[str, Any]] | None,
                 failures: Failures) -> dict[str, list[Row]]:
    """Every table of the report but the analyses', by name; a table whose builder raises is recorded in
    ``failures`` and left out."""
    builders = {"methods": lambda: method_table(study, results, statuses), "curves": lambda: curve_rows(results, statuses),
                "intermediate_points": lambda: intermediate_rows(results, statuses),
                "bn_recalibration": lambda: recalibration_rows(study, results, statuses)}
    for source in study.paths_from:
        builders[f"paths_from_{source}"] = lambda source=source: path_rows(study, results, source, statuses)
    tables: dict[str, list[Row]] = {}
    for name, build in builders.items():
        rows = failures.attempt(name, build)
        if rows is not None:
            tables[name] = rows
    return tables
