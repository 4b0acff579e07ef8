"""``unlearn-mc study --config <study.yaml>``: every stage, the analyses and the report, in one command."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.run_guard import folder_lock
from unlearn_mc.study.analysis_runs import log_analyses, run_analyses
from unlearn_mc.study.datamodule import study_datamodule
from unlearn_mc.study.endpoint_status import declared_num_classes, endpoint_statuses
from unlearn_mc.study.stages import StageResult, endpoint_stage_id, stage_result_path
from unlearn_mc.study.plane import run_plane_analysis
from unlearn_mc.study.report import write_report, write_seeds_report
from unlearn_mc.study.stage_runner import check_stages, run_stages
from unlearn_mc.study.results import SeedRun, StudyResults
from unlearn_mc.study.seeds import seed_replicas
from unlearn_mc.study.spec import StudySpec, load_study
from unlearn_mc.study.tables import Failures
from unlearn_mc.study.tensorboard import log_study_curves
from unlearn_mc.study.tuning.calibrate import apply_tuning


def check_collapse(study: StudySpec, statuses: dict[str, dict]) -> None:
    """With ``evaluation.on_collapse: stop``, refuse to go on past a collapsed endpoint, in one sentence."""
    if study.evaluation["on_collapse"] != "stop":
        return
    collapsed = [entry["reason"].rstrip(".") for entry in statuses.values() if entry["collapsed"]]
    if collapsed:
        raise UnlearnMCError(f"{'; '.join(collapsed)}; the study stops here because evaluation.on_collapse is 'stop' "
                             "(set it to 'report' to go on and mark the endpoint).")


def _statuses(study: StudySpec, results: dict[str, StageResult], failures: Failures,
              datamodule: UnlearningDataModule | None) -> dict[str, dict] | None:
    num_classes = datamodule.num_classes if datamodule is not None else None
    return failures.attempt("endpoint status", lambda: endpoint_statuses(study, results, num_classes))


def _run_replica(study: StudySpec, say: Callable[[str], None]) -> SeedRun | None:
    """One seed's stages, analyses and report (in its folder); None on a DDP process other than 0."""
    started = time.perf_counter()
    if study.evaluation["on_collapse"] == "stop":  # the endpoints first, so no curve is fitted to a collapsed one
        endpoints_only = dataclasses.replace(study, pairs=[], matrix=[], paths_from=[])
        endpoint_results = run_stages(endpoints_only, say)
        check_collapse(study, endpoint_statuses(study, endpoint_results, declared_num_classes(study) or study_datamodule(study).num_classes))
    results = run_stages(study, say)
    if rank_zero_only.rank != 0:  # under DDP every process runs the stages; one writes the analyses
        return None
    failures = Failures()
    datamodule = failures.attempt("analysis data", lambda: study_datamodule(study))
    statuses = _statuses(study, results, failures, datamodule)
    analyses = run_analyses(study, results, say, statuses, failures, datamodule) if datamodule is not None else {}
    failures.attempt("TensorBoard scalars of the analyses", lambda: log_analyses(study, analyses))
    failures.attempt("TensorBoard curves", lambda: log_study_curves(study.output_dir, results))
    plane = None
    if study.analyses.get("plane") is not None and datamodule is not None:
        say("  analyses: plane")
        plane = failures.attempt("plane", lambda: run_plane_analysis(study, datamodule, say))
        if plane is None:
            say(f"  analyses: plane failed: {failures.reasons['plane']}")
    write_report(study, results, analyses, time.perf_counter() - started, statuses=statuses, failures=failures, plane=plane)
    return SeedRun(study, results, analyses, statuses)


def lira_cost(study: StudySpec) -> str:
    """``shadow_cost`` with the pool size and the original stage's wall time when a finished run left them."""
    import json

    from unlearn_mc.study.shadows import shadow_cost

    def read(path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    sizes = read(study.output_dir / "split.json").get("sizes", {})
    pool = sizes["forget"] + sizes["retain"] + sizes["val"] if sizes else None
    method_s = {m: read(stage_result_path(study.output_dir, endpoint_stage_id(m))).get("wall_s", 0.0) for m in study.analyses["lira"]["methods"]}
    return shadow_cost(study, pool, read(stage_result_path(study.output_dir, "original")).get("wall_s"), method_s)


def run_study(path: str | Path, say: Callable[[str], None] = print) -> StudyResults:
    """Validate the study, run or reuse every stage (once per seed), run the analyses and write ``report.md``
    (with several seeds: each seed's in ``seeds/seed-<s>/``, and the one across seeds); return the results
    (``StudyResults``: the study, each seed's stages and analyses, the report's path)."""
    started = time.perf_counter()
    study = load_study(path)
    study = apply_tuning(study, say)  # methods with tune: run with their calibrated settings (searched now, or reused)
    replicas = seed_replicas(study)
    for replica in replicas:
        check_stages(replica)  # refuse a changed stage before the folder is locked (and so created)
    say(f"study {study.path} -> {study.output_dir}" + (f" ({len(replicas)} seeds: {study.seeds})" if len(replicas) > 1 else ""))
    if study.analyses.get("lira") is not None:
        say(lira_cost(replicas[0]) + (f", per seed ({len(replicas)} seeds)" if len(replicas) > 1 else ""))
    with contextlib.ExitStack() as held:
        if rank_zero_only.rank == 0:  # DDP's other processes re-run this command while process 0 holds the lock
            held.enter_context(folder_lock(study.output_dir, "study folder"))
        runs = []
        for replica in replicas:
            if len(replicas) > 1:
                say(f"seed {replica.seed} -> {replica.output_dir}")
            runs.append(_run_replica(replica, say))
        if rank_zero_only.rank != 0:
            return StudyResults(study, study.output_dir / "report.md", wall_s=time.perf_counter() - started)
        if len(replicas) == 1:
            report = study.output_dir / "report.md"
        else:
            report = write_seeds_report(study, runs, time.perf_counter() - started)
    say(f"report: {report}")
    return StudyResults(study, report, runs, time.perf_counter() - started)
