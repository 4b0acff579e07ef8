"""The study's answer: ``report.md`` with its tables (as CSV) and figures, for one seed or across several."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unlearn_mc.atomic_write import write_text_atomically
from unlearn_mc.study.endpoint_status import endpoint_statuses
from unlearn_mc.study.plane import plane_section
from unlearn_mc.study.report_lira import lira_figure, lira_section
from unlearn_mc.study.report_figures import heatmap_figure, paths_figure, relearn_figure
from unlearn_mc.study.report_tables import barrier_matrices, build_tables
from unlearn_mc.study.results import SeedRun
from unlearn_mc.study.seeds import aggregate_matrices, aggregate_tables
from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.stages import StageResult
from unlearn_mc.study.tables import Failures, Row, markdown_table, write_csv

# ---------------------------------------------------------------------- the report
def relearn_calibration(study: StudySpec, rows: list[Row]) -> list[str]:
    """What went wrong with each control (``original``, ``retrain``) and attack whose test accuracy fell during the
    attack by more than ``analyses.relearn.test_drop_margin``, or whose attack went non-finite."""
    margin = float(study.analyses["relearn"]["test_drop_margin"])
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
    spec = study.analyses["relearn"]
    forget = next((row for row in rows if row["attack"] == "forget"), rows[0])
    text = ("## Relearning attack\nThe attacker fine-tunes a copy of each model (SGD, momentum 0.9, "
            f"lr={float(spec['lr'])}, batch {int(spec['batch_size'])}, BatchNorm frozen) on a seeded "
            f"{float(spec['forget_fraction'])} of D_f ({forget['fine_tune_n']:.0f} samples, listed in `relearn_split.json`); "
            f"`forget_acc_step_s` is the accuracy after s steps on the other {forget['scored_n']:.0f} samples of D_f only. "
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




def _table_names(study: StudySpec) -> list[str]:
    return ["methods", "curves", "intermediate_points", "bn_recalibration", *(f"paths_from_{source}" for source in study.paths_from)]


def write_report(study: StudySpec, results: dict[str, StageResult], analyses: dict[str, list[Row]], wall_s: float,
                 statuses: dict[str, dict[str, Any]] | None = None, failures: Failures | None = None,
                 num_classes: int | None = None, plane: dict[str, Any] | None = None) -> Path:
    """The report of one replica (one seed): every table as CSV, the figures as PNG and ``report.md`` embedding them
    (and, with ``plane``, the plane analysis of ``run_plane_analysis``); return the report's path.

    Each table, figure and section is built on its own: one that fails is left out and named, with its
    reason, in the section "Analyses that failed" (tracebacks in ``analysis_failures.log``).
    """
    failures = failures if failures is not None else Failures()
    if statuses is None:
        statuses = failures.attempt("endpoint status", lambda: endpoint_statuses(study, results, num_classes)) or {}
    tables = {**build_tables(study, results, statuses, failures), **analyses}
    matrices = failures.attempt("barrier matrices", lambda: barrier_matrices(study, results)) if len(study.matrix) >= 2 else None
    flagged = [entry["reason"] for entry in statuses.values() if entry["status"] != "ok"]
    return _write(study, tables, matrices or {}, [results], flagged, failures, wall_s, plane=plane)


def write_seeds_report(study: StudySpec, runs: Sequence[SeedRun], wall_s: float, failures: Failures | None = None) -> Path:
    """The report of a study over several seeds, in ``study.output_dir``: each table of the seeds' reports with every
    numeric column as the mean over seeds beside its 95% interval (``m_ci``) and ``n_seeds``, the MCU condition (and
    every other yes/no column) as the fraction of seeds where it holds, the barrier heatmaps as mean ± interval."""
    failures = failures if failures is not None else Failures()
    per_seed = []
    for run in runs:
        own = Failures()
        per_seed.append({**build_tables(run.study, run.results, run.statuses, own), **run.analyses})
        failures.reasons.update({f"{name} (seed {run.study.seed})": reason for name, reason in own.reasons.items()})
        failures.tracebacks.update({f"{name} (seed {run.study.seed})": text for name, text in own.tracebacks.items()})
    tables = failures.attempt("tables across seeds", lambda: aggregate_tables(per_seed)) or {}
    matrices = {}
    if len(study.matrix) >= 2:
        matrices = failures.attempt("barrier matrices across seeds",
                                    lambda: aggregate_matrices([barrier_matrices(run.study, run.results) for run in runs])) or {}
    flagged = [f"seed {run.study.seed}: {entry['reason']}" for run in runs for entry in (run.statuses or {}).values() if entry["status"] != "ok"]
    seeds = [run.study.seed for run in runs]
    note = (f"Every number is the mean over the {len(seeds)} seeds {seeds} ± the half-width of its two-sided 95% Student-t "
            "interval (t_{0.975, n−1}·s/√n); yes/no columns (`mcu_holds`, …) are the fraction of seeds where they hold; "
            "`n_seeds` counts the seeds behind a row. The seeds change training (initialisation, batch order, the methods' "
            "random draws), not the forget set. Each seed's own report (with its plane, when the study draws one): "
            + ", ".join(f"[seed {run.study.seed}]({run.study.output_dir.relative_to(study.output_dir) / 'report.md'})" for run in runs) + ".")
    return _write(study, tables, matrices, [run.results for run in runs], flagged, failures, wall_s, note)


def _write(study: StudySpec, tables: dict[str, list[Row]], matrices: dict, per_seed_results: list[dict[str, StageResult]],
           flagged: list[str], failures: Failures, wall_s: float, seeds_note: str = "", plane: dict[str, Any] | None = None) -> Path:
    root = study.output_dir
    for name in _table_names(study):
        if name not in tables:
            (root / f"{name}.csv").unlink(missing_ok=True)  # no stale table from an earlier run beside this report
    for name, rows in tables.items():
        if rows:
            write_csv(rows, root / f"{name}.csv")

    figures: dict[str, str] = {}

    def figure(name: str, draw) -> None:
        if failures.attempt(f"figure {name}.png", lambda: draw(root / f"{name}.png")) is not None:
            figures[name] = f"{name}.png"

    for family, family_matrices in matrices.items():
        figure(f"barriers_{family}", lambda path, family=family, found=family_matrices:
               heatmap_figure(study.matrix, found, f"barriers between methods: {family}", path) or True)
    for source in study.paths_from:
        figure(f"paths_from_{source}", lambda path, source=source: paths_figure(study, per_seed_results, source, path) or True)
    if tables.get("relearn"):
        figure("relearn", lambda path: relearn_figure(tables["relearn"], path) or True)
    if tables.get("lira"):
        figure("lira", lambda path: lira_figure(tables["lira"], per_seed_results[0] if len(per_seed_results) == 1 else {}, path) or None)

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
            f"{len(study.methods)} unlearned endpoints, {len(tables.get('curves', []))} curves, {len(study.evaluation['t_grid'])} points per curve"
            f"{f', {len(per_seed_results)} seeds' if len(per_seed_results) > 1 else ''}. "
            f"Wall time of this run: {wall_s:.0f} s. TensorBoard: `tensorboard --logdir {root if len(per_seed_results) > 1 else root / 'tensorboard'}` (one run per stage"
            f"{' and seed' if len(per_seed_results) > 1 else ''}; the run `curves` draws each curve along t, one Custom Scalars section per curve).")
    if seeds_note:
        section("seeds", lambda: seeds_note)
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
    if tables.get("ensemble"):
        section("ensemble", lambda: "## Ensembling along the curve\nPredictions averaged over the points "
                f"{study.analyses['ensemble'].get('points', [0.25, 0.5, 0.75])}, against the endpoints; `status` is `non-finite` "
                "(with the `reason`) where a member's outputs were not finite.\n\n" + markdown_table(tables["ensemble"]))
    if tables.get("relearn"):
        section("relearn", lambda: relearn_section(study, tables["relearn"]))
    if plane:
        section("plane", lambda: plane_section(study, plane))
    if tables.get("lira"):
        section("lira", lambda: lira_section(study, tables["lira"], figures.get("lira")))
    files = [f"- `{name}.csv`" for name, rows in tables.items() if rows]
    if tables.get("relearn") and len(per_seed_results) == 1:
        files.append("- `relearn_split.json`: the D_f samples the relearning attack fine-tunes on and those it scores")
    if plane:
        files.append(f"- `{Path(plane['folder']).relative_to(root)}/`: the plane's `plane.csv`, `plane_models.csv`, `plane.npz`, `plane.json` and `plane.png`")
    where = "seeds/seed-<s>/stages/<stage>/" if len(per_seed_results) > 1 else "stages/<stage>/"
    sections.append("## Files\n" + "\n".join(files)
                    + f"\n- `{where}`: each stage's `config.yaml` (runnable with `unlearn-mc fit --config`), `model.ckpt`, `result.json`; "
                    "curves also `curve_eval.csv`, `curve_summary.json`, `curve_metrics.png` and `best_t.pt`.")

    top = []
    if flagged:
        top.append("## Collapsed or diverged endpoints\n" + "\n".join(f"- {reason}" for reason in flagged)
                   + "\n\nRows of the curve and analysis tables built on them say so in `endpoint_status`.")
    failures.write_log(root / "analysis_failures.log")
    if failures.reasons:
        top.append("## Analyses that failed\nEach failure left out its own table or figure only (tracebacks in "
                   "`analysis_failures.log`).\n\n" + "\n".join(f"- {name}: {reason}" for name, reason in failures.reasons.items()))
    sections[problem_at:problem_at] = top
    return write_text_atomically(root / "report.md", "\n\n".join(sections) + "\n")
