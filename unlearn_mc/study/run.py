"""``unlearn-mc study --config <study.yaml>``: every stage, the analyses and the report, in one command."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Subset

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.config_objects import instantiate
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.run_guard import folder_lock
from unlearn_mc.study.analyses import NonFiniteError, ensemble_metrics, relearn_attack, relearn_split
from unlearn_mc.study.datamodule import endpoint_net, study_datamodule
from unlearn_mc.study.endpoint_status import MODEL_COLUMNS, declared_num_classes, endpoint_statuses, pair_status
from unlearn_mc.study.lira_analysis import lira_rows, log_lira
from unlearn_mc.study.stages import endpoint_stage_id, stage_checkpoint, stage_directory, stage_result_path
from unlearn_mc.study.plane import run_plane_analysis
from unlearn_mc.study.report import write_report, write_seeds_report
from unlearn_mc.study.report_figures import relearn_steps
from unlearn_mc.study.runner import check_stages, default_device, run_stages, write_json_atomically
from unlearn_mc.study.seeds import SeedRun, seed_replicas
from unlearn_mc.study.spec import StudySpec, load_study
from unlearn_mc.study.tables import Failures, Row, write_csv
from unlearn_mc.study.tensorboard import log_study_curves
from unlearn_mc.study.tuning.calibrate import apply_tuning


def _finite_or_reason(metrics: dict[str, float], where: str) -> tuple[str, str]:
    bad = [column for column in MODEL_COLUMNS if not math.isfinite(metrics.get(column, 0.0))]
    return ("ok", "") if not bad else ("non-finite", f"{', '.join(bad)} of {where} are non-finite.")


def _ensemble_rows(study: StudySpec, trained: list[dict], curves, loaders, statuses, device) -> list[Row]:
    spec = study.analyses["ensemble"]
    points = [float(t) for t in spec["points"]]
    bn_batches = study.evaluation.get("bn_batches")
    rows: list[Row] = []
    for result in trained:
        info, curve_rows = result["info"], result["curve"]["rows"]
        status = pair_status(statuses, info["start"], info["end"])
        try:
            ensemble = ensemble_metrics(curves[result["stage"]], points, loaders, loaders["retain"], bn_batches, device)
            ensemble_status, reason = _finite_or_reason(ensemble, "the ensemble")
        except NonFiniteError as error:
            ensemble, ensemble_status, reason = {}, "non-finite", str(error)
        for label, metrics, (row_status, row_reason) in (("t=0", curve_rows[0], _finite_or_reason(curve_rows[0], "t=0")),
                                                         ("t=1", curve_rows[-1], _finite_or_reason(curve_rows[-1], "t=1")),
                                                         ("ensemble", ensemble, (ensemble_status, reason))):
            rows.append({"curve": result["stage"], "model": label, "endpoint_status": status,
                         **{c: metrics.get(c, math.nan) for c in MODEL_COLUMNS}, "status": row_status, "reason": row_reason})
    return rows


def _relearn_models(study: StudySpec, trained: list[dict], curves, loaders, statuses, device) -> Iterator[tuple[str, str, str, torch.nn.Module]]:
    """(curve, model, endpoint_status, net), one at a time: the controls and every method endpoint once, then (unless
    ``relearn.curve_points`` is false) each trained curve's best t and ensemble members (BatchNorm recalibrated on the retain data at each t, as in the curve evaluation)."""
    for name in study.endpoints:
        yield "", name, pair_status(statuses, name), endpoint_net(study, name, device)
    if not study.analyses["relearn"]["curve_points"]:
        return
    bn_batches = study.evaluation.get("bn_batches")
    for result in trained:
        status = pair_status(statuses, result["info"]["start"], result["info"]["end"])
        best_t = result["curve"]["summary"]["best"]["t"]
        yield result["stage"], f"best t={best_t:.2f}", status, load_network_weights(instantiate(study.net), stage_directory(study.output_dir, result["stage"]) / "best_t.pt").to(device).eval()
        for t in (study.analyses.get("ensemble") or {}).get("points", []):
            curves[result["stage"]].recalibrate_bn(float(t), loaders["retain"], bn_batches)
            yield result["stage"], f"member t={float(t):.2f}", status, curves[result["stage"]].network_at(float(t)).eval()


def _relearn_rows(study: StudySpec, trained: list[dict], curves, datamodule: UnlearningDataModule, loaders, statuses, device,
                  say: Callable[[str], None]) -> list[Row]:
    """The relearning attack (``forget``: fine-tune on a seeded part of D_f) and its ``retain_only`` variant (fine-tune on
    D_r alone, same steps) on every model of ``_relearn_models``; recovery is scored on the rest of D_f only.

    Per row: ``forget_acc_step_s`` = accuracy on the held-out part after s steps, ``gain`` = forget_acc_step_S −
    forget_acc_step_0 (S the last step) and ``gain_beyond_retrain`` = gain − the retrain control's gain under the same attack.
    """
    spec = study.analyses["relearn"]
    steps, attacks = list(spec["steps"]), list(spec["attacks"])
    fraction, lr, batch_size = float(spec["forget_fraction"]), float(spec["lr"]), int(spec["batch_size"])
    forget = datamodule.scoring_dataset("forget")
    fine_tune, scored = relearn_split(len(forget), fraction, study.seed)
    forget_indices = list(datamodule.split.forget)
    write_json_atomically({"forget_fraction": fraction, "seed": study.seed,
                           "fine_tune": [int(forget_indices[p]) for p in fine_tune], "scored": [int(forget_indices[p]) for p in scored]},
                          study.output_dir / "relearn_split.json")
    data = {"forget": Subset(forget, fine_tune.tolist()), "retain_only": datamodule.scoring_dataset("retain")}
    scored_loader = DataLoader(Subset(forget, scored.tolist()), batch_size=datamodule.hparams.eval_batch_size, collate_fn=datamodule.source.collate_fn)
    rows: list[Row] = []
    for curve, label, status, net in _relearn_models(study, trained, curves, loaders, statuses, device):
        say(f"  analyses: relearning attack on {f'{curve}: ' if curve else ''}{label}")
        for attack in attacks:
            record = relearn_attack(net, data[attack], scored_loader, loaders["test"], steps, lr=lr, batch_size=batch_size,
                                    seed=study.seed, device=device)
            accuracies = [record.forget_acc[s] for s in sorted(record.forget_acc)]
            rows.append({"curve": curve, "model": label, "attack": attack, "endpoint_status": status, "status": record.status,
                         "fine_tune_n": len(data[attack]), "scored_n": len(scored),
                         **{f"forget_acc_step_{s}": v for s, v in sorted(record.forget_acc.items())},
                         "gain": accuracies[-1] - accuracies[0], "gain_beyond_retrain": math.nan,
                         "test_acc_before": record.test_acc_before, "test_acc_after": record.test_acc_after, "reason": record.reason})
    for attack in attacks:
        reference = next(row["gain"] for row in rows if row["model"] == "retrain" and not row["curve"] and row["attack"] == attack)
        for row in rows:
            if row["attack"] == attack:
                row["gain_beyond_retrain"] = row["gain"] - reference
    return rows


def run_analyses(study: StudySpec, results: dict[str, dict], say: Callable[[str], None] = print,
                 statuses: dict[str, dict] | None = None, failures: Failures | None = None,
                 datamodule: UnlearningDataModule | None = None) -> dict[str, list[Row]]:
    """Ensembles along each trained curve, the relearning attack on the controls, the method endpoints and each
    trained curve's best t and ensemble members, and (``analyses.lira``) LiRA / U-LiRA on the endpoints and chosen
    curve points (``unlearn_mc.study.lira_analysis``).

    Each analysis runs on its own: one that raises is recorded in ``failures`` (one sentence) and its CSV is
    removed, and each that finishes has its CSV written at once, so a failure loses nothing else.
    """
    from unlearn_mc.curves import CurveModule

    failures = failures if failures is not None else Failures()
    wanted = [name for name in ("ensemble", "relearn", "lira") if study.analyses.get(name) is not None]
    trained = [r for r in results.values() if r["kind"] == "curve" and r["info"]["num_bends"] > 2]
    if "ensemble" in wanted and not trained:
        wanted.remove("ensemble")  # nothing to ensemble along
    if not wanted:
        return {}
    device = default_device(study)
    if datamodule is None:
        datamodule = failures.attempt("analysis data", lambda: study_datamodule(study))
        if datamodule is None:
            say(f"  analyses: skipped ({failures.reasons['analysis data']})")
            return {}
    loaders = datamodule.eval_dataloaders()
    curves = {}

    def curve_of(result: dict):
        if result["stage"] not in curves:
            path = stage_checkpoint(study.output_dir, result["stage"])
            curves[result["stage"]] = CurveModule.load_curve(path, instantiate(study.net)).to(device).eval()
        return curves[result["stage"]]

    analyses: dict[str, list[Row]] = {}
    builders = {"ensemble": lambda: _ensemble_rows(study, trained, {r["stage"]: curve_of(r) for r in trained}, loaders, statuses, device),
                "relearn": lambda: _relearn_rows(study, trained, {r["stage"]: curve_of(r) for r in trained}, datamodule, loaders, statuses, device, say),
                "lira": lambda: lira_rows(study, results, datamodule, loaders, curve_of, lambda name: endpoint_net(study, name, device), device, say)}
    for name in wanted:
        say(f"  analyses: {name}")
        rows = failures.attempt(name, builders[name])
        if rows is None:
            say(f"  analyses: {name} failed: {failures.reasons[name]}")
            for leftover in (f"{name}.csv", *(("lira_scores.csv", "lira_shadows.npz") if name == "lira" else ())):
                (study.output_dir / leftover).unlink(missing_ok=True)
            continue
        analyses[name] = rows
        if rows:
            write_csv(rows, study.output_dir / f"{name}.csv")
    return analyses


def _log_analyses(study: StudySpec, analyses: dict[str, list[Row]]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    if analyses.get("lira"):
        writers: dict[str, SummaryWriter] = {}

        def writer_for(curve: str) -> SummaryWriter:
            if curve not in writers:
                writers[curve] = SummaryWriter(str(study.output_dir / "tensorboard" / curve))
            return writers[curve]

        try:
            log_lira(writer_for, analyses["lira"])
        finally:
            for writer in writers.values():
                writer.close()
    with SummaryWriter(str(study.output_dir / "tensorboard" / "analyses")) as writer:
        for row in analyses.get("ensemble", []):
            for column in MODEL_COLUMNS:
                if isinstance(row.get(column), float) and math.isfinite(row[column]):
                    writer.add_scalar(f"ensemble/{row['curve']}/{row['model']}/{column}", row[column], 0)
        for row in analyses.get("relearn", []):
            where = f"{row['curve']}/{row['model']}" if row["curve"] else row["model"]
            for step in relearn_steps(row):
                if math.isfinite(row[f"forget_acc_step_{step}"]):
                    writer.add_scalar(f"relearn/{row['attack']}/{where}", row[f"forget_acc_step_{step}"], step)


def check_collapse(study: StudySpec, statuses: dict[str, dict]) -> None:
    """With ``evaluation.on_collapse: stop``, refuse to go on past a collapsed endpoint, in one sentence."""
    if study.evaluation["on_collapse"] != "stop":
        return
    collapsed = [entry["reason"].rstrip(".") for entry in statuses.values() if entry["collapsed"]]
    if collapsed:
        raise UnlearnMCError(f"{'; '.join(collapsed)}; the study stops here because evaluation.on_collapse is 'stop' "
                             "(set it to 'report' to go on and mark the endpoint).")


def _statuses(study: StudySpec, results: dict[str, dict], failures: Failures,
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
    failures.attempt("TensorBoard scalars of the analyses", lambda: _log_analyses(study, analyses))
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


def run_study(path: str | Path, say: Callable[[str], None] = print) -> Path:
    """Validate the study, run or reuse every stage (once per seed), run the analyses and write ``report.md``
    (with several seeds: each seed's in ``seeds/seed-<s>/``, and the one across seeds); return its path."""
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
            return study.output_dir / "report.md"
        if len(replicas) == 1:
            report = study.output_dir / "report.md"
        else:
            report = write_seeds_report(study, runs, time.perf_counter() - started)
    say(f"report: {report}")
    return report
