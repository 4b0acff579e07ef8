"""The study's ``analyses.lira``: every endpoint and the chosen curve points attacked with LiRA / U-LiRA.

Writes ``lira.csv`` (through ``run_analyses``: one row per attacked model and attack; contract columns ``model``,
``attack``, ``auc``, ``auc_ci``, ``tpr_at_1pct_fpr``, ``tpr_at_0.1pct_fpr``, then the other intervals, balanced
accuracy, ``curve``, ``t``, counts), ``lira_scores.csv`` (per model and attacked example: φ, Λ per attack, mem_i, so the
most exposed samples can be found) and ``lira_shadows.npz`` (the shadows' scores on the pool, see ``ShadowSet``).
A curve point's model is ``t=<t>`` with its ``curve``; its U-LiRA uses the shadows of the curve's end method (else
its start's) when those were unlearned.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from unlearn_mc.study.lira import ShadowSet, attack_model, build_shadow_set, ordered, score_rows
from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.stages import StageResult, stage_checkpoint
from unlearn_mc.study.tables import Row, write_csv


def lira_rows(study: StudySpec, results: dict[str, StageResult], datamodule, loaders, curve_of: Callable, endpoint_net: Callable,
              device: torch.device, say: Callable[[str], None] = print) -> list[Row]:
    """The rows of ``lira.csv``; ``lira_scores.csv`` and ``lira_shadows.npz`` are written on the way."""
    spec = study.analyses["lira"]
    shadows = build_shadow_set(study, datamodule, device)
    shadows.save(study.output_dir / "lira_shadows.npz")
    classes = datamodule.source.train_targets.numpy()
    rows: list[Row] = []
    per_example: list[Row] = []

    def attack(label: str, net, method: str | None, curve: str = "", t: float = math.nan) -> None:
        found, ratios, target = attack_model(net, shadows, datamodule, device, spec["attacks"], method=method,
                                             variance=spec["variance"], bootstrap=spec["bootstrap"], seed=study.seed)
        rows.extend(ordered({"model": label, **row, "curve": curve, "t": t}) for row in found)
        per_example.extend({"curve": curve, **row} for row in score_rows(label, ratios, target, shadows, classes))

    for name in study.endpoints:
        say(f"  analyses: lira on {name}")
        attack(name, endpoint_net(name), name if name in shadows.unlearned else None)
    bn_batches = study.evaluation.get("bn_batches")
    for stage_id in spec["curves"]:
        info = results[stage_id]["info"]
        method = next((m for m in (info["end"], info["start"]) if m in shadows.unlearned), None)
        curve = _curve(study, results[stage_id], curve_of, device)
        for t in spec["points"]:
            say(f"  analyses: lira on {stage_id} at t={t:.2f}")
            attack(f"t={t:.2f}", curve.network_at(t, loaders["retain"], bn_batches).to(device).eval(), method, stage_id, t)
    write_csv(per_example, study.output_dir / "lira_scores.csv")
    return rows


def _curve(study: StudySpec, result: dict, curve_of: Callable, device: torch.device):
    """A trained curve from its checkpoint; an untrained one (a straight line, a ``validate`` stage) rebuilt from its endpoints."""
    if stage_checkpoint(study.output_dir, result["stage"]).is_file():
        return curve_of(result)
    from unlearn_mc.config_objects import instantiate
    from unlearn_mc.curves import CurveModule

    args = result["config"]["model"]["init_args"]
    return CurveModule(net=instantiate(study.net), start=args["start"], end=args["end"], curve=args["curve"],
                       num_bends=args["num_bends"]).to(device).eval()


def log_lira(writer_for: Callable, rows: list[Row]) -> None:
    """``curve/lira_<attack>_<metric>`` at step round(1000·t) in each attacked curve's TensorBoard run."""
    for row in rows:
        if not row.get("curve"):
            continue
        writer = writer_for(row["curve"])
        for metric in ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "balanced_accuracy"):
            if isinstance(row.get(metric), float) and math.isfinite(row[metric]):
                writer.add_scalar(f"curve/lira_{row['attack']}_{metric}", row[metric], int(round(1000 * row["t"])))


def shadow_summary(shadows: ShadowSet) -> dict[str, float]:
    """Sizes for the report: K, pool, attacked members and non-members, mean shadow accuracy on its OUT examples."""
    out = ~shadows.members
    return {"shadows": shadows.count, "pool": len(shadows.pool), "members": int(shadows.labels.sum()),
            "non_members": int((shadows.labels == 0).sum()),
            "shadow_out_acc": float(np.where(out, shadows.correct, 0).sum() / out.sum())}
