"""The study's analyses after its stages: ensembles along the trained curves, the relearning attack and LiRA.

Each writes its own CSV (``ensemble.csv``, ``relearn.csv``, ``lira.csv``) and TensorBoard scalars; one that raises
is recorded, never raised (``Failures``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Subset

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.config_objects import instantiate
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.study.analyses import NonFiniteError, ensemble_metrics, relearn_attack, relearn_split
from unlearn_mc.study.datamodule import endpoint_net, study_datamodule
from unlearn_mc.study.endpoint_status import MODEL_COLUMNS, pair_status
from unlearn_mc.study.lira_analysis import lira_rows, log_lira
from unlearn_mc.study.report_figures import relearn_steps
from unlearn_mc.study.stage_runner import default_device, write_json_atomically
from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.stages import StageResult, stage_checkpoint, stage_directory
from unlearn_mc.study.tables import Failures, Row, write_csv


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


def run_analyses(study: StudySpec, results: dict[str, StageResult], say: Callable[[str], None] = print,
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


def log_analyses(study: StudySpec, analyses: dict[str, list[Row]]) -> None:
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
