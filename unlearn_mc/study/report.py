"""The study's answer: tables, figures and ``report.md`` from the finished stages and the analyses."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from unlearn_mc.study.plan import curve_stage_id, endpoint_stage_id  # noqa: E402
from unlearn_mc.study.plane import plane_section  # noqa: E402
from unlearn_mc.study.spec import StudySpec  # noqa: E402
from unlearn_mc.study.tables import Failures, Row, markdown_table, write_csv  # noqa: E402
from unlearn_mc.unlearning.base import GAP_METRICS, average_gap  # noqa: E402

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


def endpoint_statuses(study: StudySpec, results: dict[str, dict], num_classes: int | None = None) -> dict[str, dict[str, Any]]:
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


def method_table(study: StudySpec, results: dict[str, dict], statuses: dict[str, dict[str, Any]] | None = None) -> list[Row]:
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


def curve_rows(results: dict[str, dict], statuses: dict[str, dict[str, Any]] | None = None) -> list[Row]:
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


def recalibration_rows(study: StudySpec, results: dict[str, dict], statuses: dict[str, dict[str, Any]] | None = None) -> list[Row]:
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


def path_rows(study: StudySpec, results: dict[str, dict], source: str, statuses: dict[str, dict[str, Any]] | None = None) -> list[Row]:
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


def intermediate_rows(results: dict[str, dict], statuses: dict[str, dict[str, Any]] | None = None) -> list[Row]:
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
    attacks = list(dict.fromkeys(row["attack"] for row in rows))
    figure, axes = plt.subplots(1, len(attacks), figsize=(6 * len(attacks), 3.8), squeeze=False)
    for axis, attack in zip(axes[0], attacks):
        for row in rows:
            if row["attack"] != attack:
                continue
            steps = sorted(int(key.split("_")[-1]) for key in row if key.startswith("forget_acc_step_"))
            label = f"{row['curve']}: {row['model']}" if row["curve"] else row["model"]
            axis.plot(steps, [row[f"forget_acc_step_{s}"] for s in steps], marker="o", markersize=3, label=label,
                      linestyle="--" if row["model"] in ("original", "retrain") else "-")
        axis.set_xlabel("relearning steps on part of D_f" if attack == "forget" else "fine-tuning steps on D_r only")
        axis.set_ylabel("accuracy on the held-out part of D_f")
        axis.set_title(f"attack: {attack}")
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
def relearn_calibration(study: StudySpec, rows: list[Row]) -> list[str]:
    """What went wrong with each control (``original``, ``retrain``) and attack whose test accuracy fell during the
    attack by more than ``analyses.relearn.test_drop_margin`` (default 0.05), or whose attack went non-finite."""
    margin = float((study.analyses.get("relearn") or {}).get("test_drop_margin", 0.05))
    problems = []
    for row in rows:
        if row["model"] not in ("original", "retrain") or row["curve"]:
            continue
        if row["status"] != "ok":
            problems.append(f"the {row['attack']} attack on the {row['model']} control went non-finite")
        elif row["test_acc_before"] - row["test_acc_after"] > margin:
            problems.append(f"the {row['attack']} attack lowered the {row['model']} control's test accuracy from "
                            f"{row['test_acc_before']:.4f} to {row['test_acc_after']:.4f}, by more than {margin}")
    return problems


def relearn_section(study: StudySpec, rows: list[Row]) -> str:
    spec = study.analyses.get("relearn") or {}
    forget = next((row for row in rows if row["attack"] == "forget"), rows[0])
    text = ("## Relearning attack\nThe attacker fine-tunes a copy of each model (SGD, momentum 0.9, "
            f"lr={float(spec.get('lr', 0.01))}, batch {int(spec.get('batch_size', 16))}, BatchNorm frozen) on a seeded "
            f"{float(spec.get('forget_fraction', 0.1))} of D_f ({forget['fine_tune_n']} samples, listed in `relearn_split.json`); "
            f"`forget_acc_step_s` is the accuracy after s steps on the other {forget['scored_n']} samples of D_f only. "
            "The `retain_only` rows fine-tune on D_r alone with the same steps: does forget accuracy come back without D_f? "
            "`gain` = accuracy after the last step − before; `gain_beyond_retrain` = gain − the retrain control's gain under "
            "the same attack, what a model recovers beyond what a model never trained on D_f learns from the same data.")
    problems = relearn_calibration(study, rows)
    if problems:
        text += (f"\n\n**The attack is miscalibrated (its step size, lr={float(spec.get('lr', 0.01))}), so these numbers are not "
                 "recovery**: " + "; ".join(problems) + ". Lower `analyses.relearn.lr` until both controls keep their test accuracy "
                 "(under class forgetting, fine-tuning on D_f alone shows the model the forgotten classes only, which lowers test accuracy quickly).")
    non_finite = [row for row in rows if row["status"] != "ok"]
    if non_finite:
        text += "\n\nNon-finite attacks: " + "; ".join(f"{row['model']} ({row['attack']}): {row['reason'].rstrip('.')}" for row in non_finite) + "."
    return text + "\n\n" + markdown_table(rows) + "\n\n![relearn](relearn.png)"


def write_report(study: StudySpec, results: dict[str, dict], analyses: dict[str, list[Row]], wall_s: float,
                 statuses: dict[str, dict[str, Any]] | None = None, failures: Failures | None = None,
                 num_classes: int | None = None, plane: dict[str, Any] | None = None) -> Path:
    """Write every table as CSV, the figures as PNG and ``report.md`` embedding them (and, with ``plane``, the
    plane analysis of ``run_plane_analysis``); return the report's path.

    Each table, figure and section is built on its own: one that fails is left out and named, with its
    reason, in the section "Analyses that failed" (tracebacks in ``analysis_failures.log``); every other
    table's CSV is written as soon as it is built.
    """
    root = study.output_dir
    failures = failures if failures is not None else Failures()
    if statuses is None:
        statuses = failures.attempt("endpoint status", lambda: endpoint_statuses(study, results, num_classes)) or {}
    builders = {"methods": lambda: method_table(study, results, statuses), "curves": lambda: curve_rows(results, statuses),
                "intermediate_points": lambda: intermediate_rows(results, statuses), "bn_recalibration": lambda: recalibration_rows(study, results, statuses)}
    for source in study.paths_from:
        builders[f"paths_from_{source}"] = lambda source=source: path_rows(study, results, source, statuses)
    tables: dict[str, list[Row]] = {}
    for name, build in builders.items():
        rows = failures.attempt(name, build)
        if rows is None:
            (root / f"{name}.csv").unlink(missing_ok=True)  # no stale table from an earlier run beside this report
            continue
        tables[name] = rows
        if rows:
            write_csv(rows, root / f"{name}.csv")
    for name, rows in analyses.items():
        tables[name] = rows
        if rows:
            write_csv(rows, root / f"{name}.csv")

    figures: dict[str, str] = {}

    def figure(name: str, draw) -> None:
        if failures.attempt(f"figure {name}.png", lambda: draw(root / f"{name}.png")) is not None:
            figures[name] = f"{name}.png"

    if len(study.matrix) >= 2:
        for family, matrices in (failures.attempt("barrier matrices", lambda: barrier_matrices(study, results)) or {}).items():
            figure(f"barriers_{family}", lambda path, family=family, matrices=matrices: heatmap_figure(study.matrix, matrices, f"barriers between methods: {family}", path) or True)
    for source in study.paths_from:
        figure(f"paths_from_{source}", lambda path, source=source: paths_figure(study, results, source, path) or True)
    if analyses.get("relearn"):
        figure("relearn", lambda path: relearn_figure(analyses["relearn"], path) or True)

    tolerance = study.evaluation["tolerance"]
    sections: list[str] = []

    def section(name: str, build) -> None:
        text = failures.attempt(f"report section {name}", build)
        if text:
            sections.append(text)

    def table(name: str) -> str:
        return markdown_table(tables[name]) if name in tables else f"_(not built: {failures.reasons.get(name, 'see Analyses that failed')})_"

    section("title", lambda: f"# Mode-connectivity unlearning study: `{study.path.name}`")
    section("summary", lambda: f"Dataset `{study.data.get('dataset', 'digits')}`, forget rule `{study.data.get('forget_rule', 'random')}`, "
            f"{len(study.methods)} unlearned endpoints, {len(tables.get('curves', []))} curves, {len(study.evaluation['t_grid'])} points per curve. "
            f"Wall time of this run: {wall_s:.0f} s. TensorBoard: `tensorboard --logdir {root / 'tensorboard'}` (one run per stage; the run `curves` draws each curve along t, one Custom Scalars section per curve).")
    problem_at = len(sections)  # the collapsed endpoints and the failures go here, at the top, once everything was tried
    section("methods", lambda: "## Methods\nStatus (`ok`, `collapsed`: retain or test accuracy at most max(1.5 × chance, "
            "evaluation.collapse_floor); `diverged`: training stopped on a non-finite loss or weights), accuracies on D_f, D_r "
            "and the test set, MIA efficacy, the average gap to retrain (mean |metric − retrain's| over the four) and the "
            "unlearning runtime.\n\n" + table("methods"))
    section("curves", lambda: "## Curves\nRetain barrier B_r = max_t [L_r(φ(t)) − ((1−t)·L_r(φ(0)) + t·L_r(φ(1)))], forget barrier "
            "B_f = max_t [((1−t)·L_f(φ(0)) + t·L_f(φ(1))) − L_f(φ(t))]; the MCU condition holds when both are within the tolerance "
            f"({tolerance}). `endpoint_status` names an endpoint that collapsed or diverged.\n\n" + table("curves"))
    if tables.get("bn_recalibration"):
        def bn_section() -> str:
            moved = [row["model"] for row in tables["bn_recalibration"] if row["max_shift"] > tolerance]
            return ("## BatchNorm statistics at the endpoints\nCurves evaluate every t, the endpoints included, after recalibrating "
                    "BatchNorm on the retain data (Garipov et al. 2018), so an endpoint reads there with recalibrated statistics and in "
                    "the methods table with its own. "
                    + (f"Shifted by more than {tolerance}: {', '.join(moved)}; their measured unlearning depends in part on the BatchNorm "
                       "statistics, and the curve tables compare the recalibrated models." if moved else f"No endpoint shifts by more than {tolerance}.")
                    + "\n\n" + markdown_table(tables["bn_recalibration"]))
        section("bn_recalibration", bn_section)
    if len(study.matrix) >= 2:
        section("connectivity", lambda: "## Connectivity between methods\n" + "\n\n".join(f"![{name}]({file})" for name, file in figures.items() if name.startswith("barriers_")))
    for source in study.paths_from:
        title = "Original → unlearned: does unlearning progress linearly?" if source == "original" else "Linear connectivity to retraining"
        figure_line = f"\n\n![paths from {source}]({figures[f'paths_from_{source}']})" if f"paths_from_{source}" in figures else ""
        section(f"paths_from_{source}", lambda title=title, source=source, figure_line=figure_line: f"## {title}\n" + table(f"paths_from_{source}") + figure_line)
    section("intermediate_points", lambda: "## Intermediate points\nAn interior t that beats both endpoints: a smaller gap to retrain, or a lower forget accuracy "
            "at a retain accuracy at least the lower endpoint's.\n\n" + table("intermediate_points"))
    if analyses.get("ensemble"):
        section("ensemble", lambda: "## Ensembling along the curve\nPredictions averaged over the points "
                f"{study.analyses['ensemble'].get('points', [0.25, 0.5, 0.75])}, against the endpoints; `status` is `non-finite` "
                "(with the `reason`) where a member's outputs were not finite.\n\n" + markdown_table(analyses["ensemble"]))
    if analyses.get("relearn"):
        section("relearn", lambda: relearn_section(study, analyses["relearn"]))
    if plane:
        section("plane", lambda: plane_section(study, plane))
    files = [f"- `{name}.csv`" for name, rows in tables.items() if rows]
    if analyses.get("relearn"):
        files.append("- `relearn_split.json`: the D_f samples the relearning attack fine-tunes on and those it scores")
    if plane:
        files.append(f"- `{Path(plane['folder']).relative_to(root)}/`: the plane's `plane.csv`, `plane_models.csv`, `plane.npz`, `plane.json` and `plane.png`")
    sections.append("## Files\n" + "\n".join(files)
                    + "\n- `stages/<stage>/`: each stage's `config.yaml` (runnable with `unlearn-mc fit --config`), `model.ckpt`, `result.json`; "
                    "curves also `curve_eval.csv`, `curve_summary.json`, `curve_metrics.png` and `best_t.pt`.")

    top = []
    flagged = [entry["reason"] for entry in (statuses or {}).values() if entry["status"] != "ok"]
    if flagged:
        top.append("## Collapsed or diverged endpoints\n" + "\n".join(f"- {reason}" for reason in flagged)
                   + "\n\nRows of the curve and analysis tables built on them say so in `endpoint_status`.")
    failures.write_log(root / "analysis_failures.log")
    if failures.reasons:
        top.append("## Analyses that failed\nEach failure left out its own table or figure only (tracebacks in "
                   "`analysis_failures.log`).\n\n" + "\n".join(f"- {name}: {reason}" for name, reason in failures.reasons.items()))
    sections[problem_at:problem_at] = top
    path = root / "report.md"
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text("\n\n".join(sections) + "\n")
    os.replace(temporary, path)
    return path
