"""The study's answer: tables, figures and ``report.md`` from the finished stages and the analyses."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from unlearn_mc.study.plan import curve_stage_id, endpoint_stage_id  # noqa: E402
from unlearn_mc.study.spec import StudySpec  # noqa: E402
from unlearn_mc.study.tables import Row, markdown_table, write_csv  # noqa: E402
from unlearn_mc.unlearning.base import GAP_METRICS, average_gap  # noqa: E402

MODEL_COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")


def method_table(study: StudySpec, results: dict[str, dict]) -> list[Row]:
    """Per endpoint: forget/retain/test accuracy, MIA efficacy, average gap to retrain and runtime."""
    reference = results["retrain"]["metrics"]
    rows = []
    for name in study.endpoints:
        result = results[endpoint_stage_id(name)]
        metrics = result["metrics"]
        row: Row = {"model": name, "method": result["info"].get("method", name)}
        row.update({column: metrics.get(column, math.nan) for column in MODEL_COLUMNS})
        row["avg_gap"] = average_gap(metrics, reference) if all(m in metrics for m in GAP_METRICS) else math.nan
        row["runtime_s"] = float(result.get("runtime_s") or math.nan)
        rows.append(row)
    return rows


def curve_rows(results: dict[str, dict]) -> list[Row]:
    """Per curve: endpoints, family, both barriers, the MCU condition and the best t with its metrics."""
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
    return rows


def recalibration_rows(study: StudySpec, results: dict[str, dict]) -> list[Row]:
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
        row: Row = {"model": name, "curve": curve["stage"]}
        for column in MODEL_COLUMNS:
            row[f"{column}_own"], row[f"{column}_recalibrated"] = own[column], recalibrated[column]
        row["max_shift"] = max(abs(own[column] - recalibrated[column]) for column in MODEL_COLUMNS)
        rows.append(row)
    return rows


def barrier_matrices(study: StudySpec, results: dict[str, dict]) -> dict[str, dict[str, np.ndarray]]:
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


def path_rows(study: StudySpec, results: dict[str, dict], source: str) -> list[Row]:
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
            "method": method, "retain_barrier": summary.get("retain_barrier", math.nan), "forget_barrier": summary.get("forget_barrier", math.nan),
            "forget_acc_t0": forget[0], "forget_acc_t0.5": forget[midpoint], "forget_acc_t1": forget[-1],
            "max_deviation_from_linear": deviation,
        })
    return rows


def intermediate_rows(results: dict[str, dict]) -> list[Row]:
    """Does an interior t beat both endpoints? (a) a smaller average gap to retrain than either
    endpoint; (b) a lower forget accuracy than both endpoints at a retain accuracy at least the lower endpoint's."""
    rows = []
    for result in results.values():
        if result["kind"] != "curve":
            continue
        ts, values = result["curve"]["ts"], result["curve"]["rows"]
        interior = range(1, len(ts) - 1)
        row: Row = {"curve": result["stage"]}
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


# ---------------------------------------------------------------------- figures
def heatmap_figure(names: list[str], matrices: dict[str, np.ndarray], title: str, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(4 + 1.2 * len(names), 2 + 0.6 * len(names)))
    for axis, (key, matrix) in zip(axes, matrices.items()):
        image = axis.imshow(matrix, cmap="viridis")
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set_yticks(range(len(names)), names)
        axis.set_title(key.replace("_", " "))
        for i in range(len(names)):
            for j in range(len(names)):
                if not np.isnan(matrix[i, j]):
                    axis.text(j, i, f"{matrix[i, j]:.3f}", ha="center", va="center", color="white", fontsize=7)
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)


def paths_figure(study: StudySpec, results: dict[str, dict], source: str, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for method in study.methods:
        result = results.get(curve_stage_id("line", source, method))
        if result is None:
            continue
        ts = result["curve"]["ts"]
        for axis, metric in zip(axes, ("forget_acc", "retain_acc")):
            axis.plot(ts, [row[metric] for row in result["curve"]["rows"]], marker="o", markersize=3, label=method)
    for axis, metric in zip(axes, ("forget_acc", "retain_acc")):
        axis.set_xlabel(f"t ({source} → method)")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    _save(figure, path)


def relearn_figure(rows: list[Row], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 3.8))
    for row in rows:
        steps = sorted(int(key.split("_")[-1]) for key in row if key.startswith("forget_acc_step_"))
        axis.plot(steps, [row[f"forget_acc_step_{s}"] for s in steps], marker="o", markersize=3, label=f"{row['curve']}: {row['model']}")
    axis.set_xlabel("relearning steps on part of D_f")
    axis.set_ylabel("forget accuracy")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=5)
    figure.tight_layout()
    _save(figure, path)


def _save(figure, path: Path) -> None:
    temporary = path.with_name(f"tmp-{os.getpid()}-{path.name}")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    os.replace(temporary, path)


# ---------------------------------------------------------------------- the report
def write_report(study: StudySpec, results: dict[str, dict], analyses: dict[str, list[Row]], wall_s: float) -> Path:
    """Write every table as CSV, the figures as PNG and ``report.md`` embedding them; return the report's path."""
    root = study.output_dir
    tables = {"methods": method_table(study, results), "curves": curve_rows(results), "intermediate_points": intermediate_rows(results),
              "bn_recalibration": recalibration_rows(study, results)}
    for source in study.paths_from:
        tables[f"paths_from_{source}"] = path_rows(study, results, source)
    tables.update(analyses)
    for name, rows in tables.items():
        if rows:
            write_csv(rows, root / f"{name}.csv")
    figures: dict[str, str] = {}
    if len(study.matrix) >= 2:
        for family, matrices in barrier_matrices(study, results).items():
            figure_path = root / f"barriers_{family}.png"
            heatmap_figure(study.matrix, matrices, f"barriers between methods: {family}", figure_path)
            figures[f"barriers_{family}"] = figure_path.name
    for source in study.paths_from:
        figure_path = root / f"paths_from_{source}.png"
        paths_figure(study, results, source, figure_path)
        figures[f"paths_from_{source}"] = figure_path.name
    if analyses.get("relearn"):
        relearn_figure(analyses["relearn"], root / "relearn.png")
        figures["relearn"] = "relearn.png"

    tolerance = study.evaluation["tolerance"]
    sections = [
        f"# Mode-connectivity unlearning study: `{study.path.name}`",
        f"Dataset `{study.data.get('dataset', 'digits')}`, forget rule `{study.data.get('forget_rule', 'random')}`, "
        f"{len(study.methods)} unlearned endpoints, {len(tables['curves'])} curves, {len(study.evaluation['t_grid'])} points per curve. "
        f"Wall time of this run: {wall_s:.0f} s. TensorBoard: `tensorboard --logdir {root / 'tensorboard'}` (one run per stage).",
        "## Methods\nAccuracies on D_f, D_r and the test set, MIA efficacy, the average gap to retrain "
        "(mean |metric − retrain's| over the four) and the unlearning runtime.\n\n" + markdown_table(tables["methods"]),
        "## Curves\nRetain barrier B_r = max_t [L_r(φ(t)) − ((1−t)·L_r(φ(0)) + t·L_r(φ(1)))], forget barrier "
        "B_f = max_t [((1−t)·L_f(φ(0)) + t·L_f(φ(1))) − L_f(φ(t))]; the MCU condition holds when both are within the tolerance "
        f"({tolerance}).\n\n" + markdown_table(tables["curves"]),
    ]
    if tables["bn_recalibration"]:
        moved = [row["model"] for row in tables["bn_recalibration"] if row["max_shift"] > tolerance]
        sections.append(
            "## BatchNorm statistics at the endpoints\nCurves evaluate every t, the endpoints included, after recalibrating "
            "BatchNorm on the retain data (Garipov et al. 2018), so an endpoint reads there with recalibrated statistics and in "
            "the methods table with its own. "
            + (f"Shifted by more than {tolerance}: {', '.join(moved)}; their measured unlearning depends in part on the BatchNorm "
               "statistics, and the curve tables compare the recalibrated models." if moved else f"No endpoint shifts by more than {tolerance}.")
            + "\n\n" + markdown_table(tables["bn_recalibration"]))
    if len(study.matrix) >= 2:
        sections.append("## Connectivity between methods\n" + "\n\n".join(f"![{name}]({file})" for name, file in figures.items() if name.startswith("barriers_")))
    for source in study.paths_from:
        title = "Original → unlearned: does unlearning progress linearly?" if source == "original" else "Linear connectivity to retraining"
        sections.append(f"## {title}\n" + markdown_table(tables[f"paths_from_{source}"]) + f"\n\n![paths from {source}]({figures[f'paths_from_{source}']})")
    sections.append("## Intermediate points\nAn interior t that beats both endpoints: a smaller gap to retrain, or a lower forget accuracy "
                    "at a retain accuracy at least the lower endpoint's.\n\n" + markdown_table(tables["intermediate_points"]))
    if analyses.get("ensemble"):
        sections.append("## Ensembling along the curve\nPredictions averaged over the points "
                        f"{study.analyses['ensemble'].get('points', [0.25, 0.5, 0.75])}, against the endpoints.\n\n" + markdown_table(analyses["ensemble"]))
    if analyses.get("relearn"):
        sections.append("## Relearning attack\nForget accuracy after fine-tuning on a part of D_f for each number of steps.\n\n"
                        + markdown_table(analyses["relearn"]) + "\n\n![relearn](relearn.png)")
    sections.append("## Files\n" + "\n".join(f"- `{name}.csv`" for name, rows in tables.items() if rows)
                    + "\n- `stages/<stage>/`: each stage's `config.yaml` (runnable with `unlearn-mc fit --config`), `model.ckpt`, `result.json`; "
                    "curves also `curve_eval.csv`, `curve_summary.json`, `curve_metrics.png` and `best_t.pt`.")
    path = root / "report.md"
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text("\n\n".join(sections) + "\n")
    os.replace(temporary, path)
    return path
