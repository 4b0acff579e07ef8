"""The plane analysis of a study: ``analyses: {plane: {models: [original, retrain, <method>], grid: G, margin: m, mia_loss_acc: false}}``.

The plane through three finished endpoints (``unlearn_mc.plane``) is written to ``<output_dir>/plane/<A>--<B>--<C>/``,
its figure to TensorBoard (run ``tensorboard/plane``, image ``plane/<A>--<B>--<C>``) and it becomes a section of the
report. BatchNorm is recalibrated at every point on the retain set, over ``evaluation.bn_batches`` batches, as
along the study's curves. ``unlearn-mc plane --config <study> --models A B C`` draws the same folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unlearn_mc.config_objects import instantiate
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.plane import evaluate_plane
from unlearn_mc.plane.basis import check_grid, check_margin
from unlearn_mc.plane.outputs import check_plane_folder, finish_plane, plane_note
from unlearn_mc.study.stages import endpoint_stage_id, stage_checkpoint, stage_result_path
from unlearn_mc.study.plane_spec import DEFAULT_GRID, DEFAULT_MARGIN, check_models
from unlearn_mc.study.stage_runner import default_device
from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.tables import markdown_table

def finished_checkpoint(study: StudySpec, name: str) -> Path:
    """The checkpoint of the finished endpoint ``name``; one sentence when its stage has not finished."""
    result, checkpoint = (where(study.output_dir, endpoint_stage_id(name)) for where in (stage_result_path, stage_checkpoint))
    if not result.is_file() or not checkpoint.is_file():
        raise UnlearnMCError(f"model {name!r} has no finished stage in {str(study.output_dir)!r} ({str(result)!r} is missing); "
                             f"run unlearn-mc study --config {study.path} first.")
    return checkpoint


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plane_config(study: StudySpec, models: list[str], checkpoints: list[Path], grid: int, margin: float,
                 bn_batches: int | None, mia_loss_acc: bool) -> dict[str, Any]:
    """What a plane folder of the study is made from; a finished folder with another config is refused, not redone."""
    return {"models": models, "checkpoints_sha256": [file_sha256(path) for path in checkpoints], "grid": grid, "margin": margin,
            "bn_split": "retain", "bn_batches": bn_batches, "mia_loss_acc": mia_loss_acc, "net": study.net, "data": study.data}


def study_plane(study: StudySpec, models: list[str], grid: int, margin: float, bn_batches: int | None, datamodule: Callable[[], Any],
                mia_loss_acc: bool = False, progress: bool = True) -> tuple[Path, dict[str, Any], bool]:
    """Reuse or draw ``<output_dir>/plane/<A>--<B>--<C>/``; return the folder, its ``plane.json`` record and whether
    it was reused. ``datamodule`` builds the study's DataModule (called only when the plane is drawn)."""
    models = check_models(models, study.endpoints, "--models")
    grid, margin = check_grid(grid, "--grid"), check_margin(margin, "--margin")
    checkpoints = [finished_checkpoint(study, name) for name in models]
    folder = study.output_dir / "plane" / "--".join(models)
    config = plane_config(study, models, checkpoints, grid, margin, bn_batches, mia_loss_acc)
    check_plane_folder(folder, config)  # refuse other settings before building anything

    def compute():
        loaders = datamodule().eval_dataloaders()
        return evaluate_plane(instantiate(study.net), checkpoints, loaders, grid, margin, bn_loader=loaders["retain"],
                              bn_batches=bn_batches, names=models, device=default_device(study), progress=progress, mia_loss_acc=mia_loss_acc)

    record, reused = finish_plane(folder, config, compute, study.output_dir / "tensorboard" / "plane", f"plane/{folder.name}")
    return folder, record, reused


def run_plane_analysis(study: StudySpec, datamodule, say: Callable[[str], None]) -> dict[str, Any]:
    """The study file's ``analyses.plane``: ``{"folder", "record", "reused"}`` for the report."""
    spec = study.analyses["plane"]
    folder, record, reused = study_plane(study, spec["models"], spec.get("grid", DEFAULT_GRID), spec.get("margin", DEFAULT_MARGIN),
                                         study.evaluation.get("bn_batches"), lambda: datamodule, spec.get("mia_loss_acc", False))
    say(f"  analyses: {plane_note(folder, record, reused)}")
    return {"folder": folder, "record": record, "reused": reused}


def plane_section(study: StudySpec, plane: dict[str, Any]) -> str:
    """The report's section: what the plane is, the models' coordinates and values, the cost, and the figure."""
    record, folder = plane["record"], Path(plane["folder"])
    settings, timing, names = record["settings"], record["timing"], record["names"]
    distances = settings["distances"]
    columns = ("x", "y", "forget_acc", "retain_acc", "test_acc", "mia_efficacy", "forget_loss", "retain_loss", "test_loss")
    rows = [{"model": model["name"], **{key: model.get(key) for key in columns}} for model in record["models"]]
    relative = folder.relative_to(study.output_dir)
    return (f"## The plane through {', '.join(names)}\n"
            f"The plane θ(x, y) = θ_{{{names[0]}}} + x·û + y·v̂ through the three models (û, v̂ orthonormal by Gram–Schmidt, "
            f"Garipov et al. 2018; x and y are distances in weight space: {names[1]} lies at distance {distances['u_norm']:.3f} "
            f"from {names[0]}), on a {settings['grid']}×{settings['grid']} grid with margin {settings['margin']}. At every point "
            f"BatchNorm is recalibrated on the retain set ({settings['bn_batches'] or 'all'} batches), as along the curves: where "
            "the retain loss stays low, where the forget set is forgotten (forget accuracy, forget loss) and where membership "
            "leaks (MIA efficacy). Losses share a log colour scale, accuracies and MIA the scale [0, 1]. The models, "
            "evaluated as points of the plane:\n\n" + markdown_table(rows)
            + f"\n\n{timing['points']} points ({settings['grid']}×{settings['grid']} + the 3 models) in {timing['wall_s']:.1f} s: "
            f"{timing['per_point_s']:.3f} s per point, {timing['per_point_over_eval_pass']:.2f} × one evaluation pass "
            f"({timing['eval_pass_s']:.3f} s){'; finished earlier, reused' if plane['reused'] else ''}. Files: `{relative}/plane.csv` "
            f"(one row per grid point), `plane_models.csv`, `plane.npz`, `plane.json`.\n\n![plane]({relative}/plane.png)")
