"""From a study to an ordered list of stages, each an ordinary ``unlearn-mc`` config.

Stage ids: ``original``, ``retrain``, ``method-<name>``, ``curve-<family>-<start>--<end>``, and with
``analyses.lira`` the shadow models ``shadow-<k>`` and ``shadow-<k>-<method>`` (``unlearn_mc.study.shadows``).
Every stage writes under ``<output_dir>/stages/<id>/`` and logs to the TensorBoard run
``<output_dir>/tensorboard/<id>/``.
"""

from __future__ import annotations

import copy
from typing import Any

from unlearn_mc.study.shadows import plan_shadows
from unlearn_mc.study.spec import FamilySpec, StudySpec
from unlearn_mc.study.stages import PATH_FAMILY_NAME, Stage, curve_stage_id, endpoint_stage_id, stage_directory

__all__ = ["PATH_FAMILY", "Stage", "curve_stage_id", "endpoint_stage_id", "plan_study"]  # Stage and the ids re-exported

BASE_MODULE = "unlearn_mc.training.BaseTraining"
CURVE_MODULE = "unlearn_mc.curves.CurveModule"
DATA_MODULE = "unlearn_mc.data.UnlearningDataModule"  # the default; a study may name another (StudySpec.data_class)
PATH_FAMILY = FamilySpec(
    name=PATH_FAMILY_NAME, curve="linear", num_bends=2, epochs=0, objective="retain_ce", objective_args=None,
    optimizer={"class_path": "torch.optim.SGD", "init_args": {}}, init="midpoint", t_sampler="uniform", l2=0.0,
)


def _config(study: StudySpec, seed: int, epochs: int, model: dict, trainer: dict | None = None) -> dict[str, Any]:
    settings = copy.deepcopy(study.trainer)
    settings.update(trainer or {})
    settings["max_epochs"] = epochs
    data = {**copy.deepcopy(study.data), "split_file": str(study.output_dir / "split.json")}
    return {
        "seed_everything": seed,
        "trainer": settings,
        "model": model,
        "data": {"class_path": study.data_class, "init_args": data},
    }


def plan_study(study: StudySpec) -> list[Stage]:
    """Every stage of the study, each after the stages it reads."""
    root = study.output_dir
    net = copy.deepcopy(study.net)
    checkpoint = {name: str(Stage(endpoint_stage_id(name), "", "", {}).checkpoint(root)) for name in study.endpoints}
    stages = []
    for stage in ("original", "retrain"):
        model = {"class_path": BASE_MODULE, "init_args": {"net": net, "stage": stage, "optimizer": study.base["optimizer"]}}
        if study.base.get("lr_scheduler"):
            model["init_args"]["lr_scheduler"] = study.base["lr_scheduler"]
        stages.append(Stage(stage, "base", "fit", _config(study, study.seed, study.base["epochs"], model, study.base.get("trainer")), info={"endpoint": stage}))
    for method in study.methods.values():
        init_args = {"net": net, "original": checkpoint["original"], "retrain": checkpoint["retrain"], "optimizer": method.optimizer, **method.args}
        if method.lr_scheduler:
            init_args["lr_scheduler"] = method.lr_scheduler
        if method.curriculum:
            init_args["curriculum"] = method.curriculum
        model = {"class_path": method.class_path, "init_args": init_args}
        stages.append(Stage(endpoint_stage_id(method.name), "method", "fit", _config(study, method.seed, method.epochs, model, method.trainer),
                            depends=["original", "retrain"], info={"endpoint": method.name, "method": method.class_path.rsplit(".", 1)[-1]}))
    curves = [(family, pair) for pair in study.pairs for family in study.families.values()]
    curves += [(PATH_FAMILY, (source, method)) for source in study.paths_from for method in study.methods]
    seen = set()
    for family, (start, end) in curves:
        stage_id = curve_stage_id(family.name, start, end)
        if stage_id in seen:
            continue
        seen.add(stage_id)
        stages.append(_curve_stage(study, stage_id, family, start, end, checkpoint))
    return stages + plan_shadows(study, stages)


def _curve_stage(study: StudySpec, stage_id: str, family: FamilySpec, start: str, end: str, checkpoint: dict[str, str]) -> Stage:
    evaluation = study.evaluation
    directory = stage_directory(study.output_dir, stage_id)
    init_args: dict[str, Any] = {
        "net": copy.deepcopy(study.net), "start": checkpoint[start], "end": checkpoint[end], "curve": family.curve, "num_bends": family.num_bends,
        "retrain": checkpoint["retrain"], "bn_batches": evaluation.get("bn_batches"),
    }
    if family.trained:
        init_args.update(
            init={"original": checkpoint["original"]} if family.init == "original" else "midpoint",
            t_sampler=family.t_sampler, objective=family.objective, objective_args=family.objective_args, l2=family.l2, optimizer=family.optimizer,
        )
        if family.objective not in ("retain_ce", "retain_minus_forget"):
            init_args["objective_args"] = {"original": checkpoint["original"], **(family.objective_args or {})}
    callback = {
        "class_path": "unlearn_mc.curves.CurveEvaluation",
        "init_args": {
            "t_grid": evaluation["t_grid"], "tolerance": evaluation["tolerance"], "best_by": evaluation["best_by"],
            "retain_floor": evaluation["retain_floor"], "export_path": str(directory / "best_t.pt"), "figure": True,
        },
    }
    model = {"class_path": CURVE_MODULE, "init_args": init_args}
    config = _config(study, study.seed, max(family.epochs, 1), model, {"callbacks": [callback]})
    depends = [endpoint_stage_id(start), endpoint_stage_id(end)]
    if family.trained and family.init == "original":
        depends.append("original")
    return Stage(stage_id, "curve", "fit" if family.trained else "validate", config, depends=sorted(set(depends)),
                 info={"family": family.name, "curve": family.curve, "num_bends": family.num_bends, "start": start, "end": end})
