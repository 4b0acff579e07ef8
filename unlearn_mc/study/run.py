"""``unlearn-mc study --config <study.yaml>``: every stage, the analyses and the report, in one command."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_only

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.config_objects import instantiate
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.study.analyses import ensemble_metrics, relearn_attack, relearn_subset
from unlearn_mc.study.plan import endpoint_stage_id
from unlearn_mc.study.report import MODEL_COLUMNS, write_report
from unlearn_mc.run_guard import folder_lock
from unlearn_mc.study.runner import check_stages, default_device, run_stages
from unlearn_mc.study.spec import StudySpec, load_study
from unlearn_mc.study.tables import Row


def _datamodule(study: StudySpec) -> UnlearningDataModule:
    datamodule = UnlearningDataModule(**study.data, split_file=str(study.output_dir / "split.json"))
    datamodule.setup()
    return datamodule


def _endpoint_net(study: StudySpec, name: str, device: torch.device):
    path = study.output_dir / "stages" / endpoint_stage_id(name) / "model.ckpt"
    return load_network_weights(instantiate(study.net), path).to(device).eval()


def run_analyses(study: StudySpec, results: dict[str, dict], say: Callable[[str], None] = print) -> dict[str, list[Row]]:
    """Ensembles along each trained curve and the relearning attack on its endpoints, best t and ensemble members."""
    from unlearn_mc.curves import CurveModule

    ensemble_spec, relearn_spec = study.analyses.get("ensemble"), study.analyses.get("relearn")
    trained = [r for r in results.values() if r["kind"] == "curve" and r["info"]["num_bends"] > 2]
    if not trained or (ensemble_spec is None and relearn_spec is None):
        return {}
    device = default_device(study)
    datamodule = _datamodule(study)
    loaders = datamodule.eval_dataloaders()
    bn_batches = study.evaluation.get("bn_batches")
    ensemble_rows: list[Row] = []
    relearn_rows: list[Row] = []
    for result in trained:
        stage_dir = study.output_dir / "stages" / result["stage"]
        curve = CurveModule.load_curve(stage_dir / "model.ckpt", instantiate(study.net)).to(device).eval()
        rows = result["curve"]["rows"]
        if ensemble_spec is not None:
            points = [float(t) for t in ensemble_spec.get("points", [0.25, 0.5, 0.75])]
            say(f"  analyses: ensemble of {len(points)} points on {result['stage']}")
            for label, metrics in (("t=0", rows[0]), ("t=1", rows[-1]), ("ensemble", ensemble_metrics(curve, points, loaders, loaders["retain"], bn_batches, device))):
                ensemble_rows.append({"curve": result["stage"], "model": label, **{c: metrics.get(c) for c in MODEL_COLUMNS}})
        if relearn_spec is not None:
            say(f"  analyses: relearning attack on {result['stage']}")
            steps = list(relearn_spec.get("steps", [5, 10, 15, 20, 25]))
            data = relearn_subset(datamodule.eval_datasets()["forget"], float(relearn_spec.get("forget_fraction", 0.1)), study.seed)
            models = {result["info"]["start"]: _endpoint_net(study, result["info"]["start"], device),
                      result["info"]["end"]: _endpoint_net(study, result["info"]["end"], device)}
            best_t = result["curve"]["summary"]["best"]["t"]
            models[f"best t={best_t:.2f}"] = load_network_weights(instantiate(study.net), stage_dir / "best_t.pt").to(device).eval()
            for t in (ensemble_spec or {}).get("points", []):
                curve.recalibrate_bn(float(t), loaders["retain"], bn_batches)
                models[f"member t={float(t):.2f}"] = curve.network_at(float(t)).eval()
            for label, net in models.items():
                record = relearn_attack(net, data, loaders["forget"], steps, lr=float(relearn_spec.get("lr", 0.01)),
                                        batch_size=int(relearn_spec.get("batch_size", 16)), seed=study.seed, device=device)
                relearn_rows.append({"curve": result["stage"], "model": label, **{f"forget_acc_step_{s}": v for s, v in sorted(record.items())}})
    return {"ensemble": ensemble_rows, "relearn": relearn_rows}


def _log_analyses(study: StudySpec, analyses: dict[str, list[Row]]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(study.output_dir / "tensorboard" / "analyses")) as writer:
        for row in analyses.get("ensemble", []):
            for column in MODEL_COLUMNS:
                if row.get(column) is not None:
                    writer.add_scalar(f"ensemble/{row['curve']}/{row['model']}/{column}", row[column], 0)
        for row in analyses.get("relearn", []):
            for key, value in row.items():
                if key.startswith("forget_acc_step_"):
                    writer.add_scalar(f"relearn/{row['curve']}/{row['model']}", value, int(key.rsplit("_", 1)[-1]))


def run_study(path: str | Path, say: Callable[[str], None] = print) -> Path:
    """Validate the study, run or reuse every stage, run the analyses and write ``report.md``; return its path."""
    started = time.perf_counter()
    study = load_study(path)
    check_stages(study)  # refuse a changed stage before the folder is locked (and so created)
    say(f"study {study.path} -> {study.output_dir}")
    with contextlib.ExitStack() as held:
        if rank_zero_only.rank == 0:  # DDP's other processes re-run this command while process 0 holds the lock
            held.enter_context(folder_lock(study.output_dir, "study folder"))
        results = run_stages(study, say)
        if rank_zero_only.rank != 0:  # under DDP every process runs the stages; one writes the analyses
            return study.output_dir / "report.md"
        analyses = run_analyses(study, results, say)
        report = write_report(study, results, analyses, time.perf_counter() - started)
        _log_analyses(study, analyses)
    say(f"report: {report}")
    return report
