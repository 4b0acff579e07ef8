"""``unlearn-mc lira``: LiRA / U-LiRA on any finished model of a study, outside ``unlearn-mc study``.

    unlearn-mc lira --config configs/digits/study_lira.yaml --models original salun --checkpoint my.ckpt --out results/

The study's ``analyses.lira`` settings name the shadows; unfinished shadow stages are run first (finished ones are
reused, as by the study), then each model is attacked: an endpoint of the study by name, or any checkpoint of the
study's network (``--checkpoint``, named by its path; U-LiRA with ``--method``'s shadows if given). ``lira.csv`` and ``lira_scores.csv``
go to ``--out`` (default ``<output_dir>/lira_cli``), never over existing files. ``lira_models`` is the Python entry.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from torch import nn

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.study.lira import ShadowSet, attack_model, build_shadow_set, ordered, score_rows
from unlearn_mc.study.plan import endpoint_stage_id, plan_study
from unlearn_mc.study.stage_runner import default_device, quiet_lightning, run_stage, stage_status
from unlearn_mc.study.spec import StudySpec, load_study
from unlearn_mc.study.tables import Row, write_csv


def run_shadow_stages(study: StudySpec, say: Callable[[str], None] = print) -> None:
    """Run the study's unfinished shadow stages in plan order (each ``shadow-<k>-<method>`` after its ``shadow-<k>``);
    finished ones are reused and a changed finished one is refused, as in ``run_stages``."""
    stages = [s for s in plan_study(study) if s.kind == "shadow"]
    for stage in stages:
        status = stage_status(stage, study.output_dir)
        if status == "done":
            continue
        say(f"{stage.id}: running ({stage.command})")
        with quiet_lightning():
            result = run_stage(stage, study.output_dir)
        say(f"{stage.id}: done in {result['wall_s']:.1f} s")


def lira_models(study: StudySpec, models: Mapping[str, nn.Module | None], methods: Mapping[str, str | None] | None = None,
                shadows: ShadowSet | None = None, datamodule=None, say: Callable[[str], None] = print) -> tuple[list[Row], list[Row]]:
    """(rows of ``lira.csv``, rows of ``lira_scores.csv``) for ``models`` (label → network; None: the study's endpoint
    of that name). ``methods`` names the U-LiRA shadows per label (default: the endpoint's own, if unlearned)."""
    from unlearn_mc.study.datamodule import endpoint_net, study_datamodule

    spec = study.analyses["lira"]
    device = default_device(study)
    datamodule = datamodule if datamodule is not None else study_datamodule(study)
    shadows = shadows if shadows is not None else build_shadow_set(study, datamodule, device)
    classes = datamodule.source.train_targets.numpy()
    rows, per_example = [], []
    for label, net in models.items():
        say(f"lira on {label}")
        net = endpoint_net(study, label, device) if net is None else net.to(device).eval()
        method = (methods or {}).get(label, label if label in shadows.unlearned else None)
        found, ratios, target = attack_model(net, shadows, datamodule, device, spec["attacks"], method=method,
                                             variance=spec["variance"], bootstrap=spec["bootstrap"], seed=study.seed)
        rows.extend(ordered({"model": label, **row, "curve": "", "t": float("nan")}) for row in found)
        per_example.extend({"curve": "", **row} for row in score_rows(label, ratios, target, shadows, classes))
    return rows, per_example


def main(args: list[str], say: Callable[[str], None] = print) -> Path:
    from unlearn_mc.checkpoints import load_network_weights
    from unlearn_mc.config_objects import instantiate
    from unlearn_mc.run_guard import folder_lock

    parser = argparse.ArgumentParser(prog="unlearn-mc lira", description="Per-example membership inference (LiRA, U-LiRA) on a study's models.")
    parser.add_argument("--config", required=True, help="the study YAML (with analyses.lira)")
    parser.add_argument("--models", nargs="*", default=None, help="endpoints of the study to attack (default: all)")
    parser.add_argument("--checkpoint", nargs="*", default=[], help="further checkpoints of the study's network to attack")
    parser.add_argument("--method", default=None, help="the method whose U-LiRA shadows attack the --checkpoint files")
    parser.add_argument("--out", default=None, help="folder for lira.csv and lira_scores.csv (default <output_dir>/lira_cli)")
    options = parser.parse_args(args)
    study = load_study(options.config)
    if study.analyses.get("lira") is None:
        raise UnlearnMCError(f"study {options.config!r} has no analyses.lira; add e.g. analyses: {{lira: {{shadows: 8}}}} to name the shadows.")
    names = study.endpoints if options.models is None else options.models
    for name in names:
        if name not in study.endpoints:
            raise UnlearnMCError(f"--models names {name!r}, which is not an endpoint of the study; use {', '.join(study.endpoints)}.")
        stage = next(s for s in plan_study(study) if s.id == endpoint_stage_id(name))
        if stage_status(stage, study.output_dir) != "done":
            raise UnlearnMCError(f"endpoint {name!r} is not finished in {str(study.output_dir)!r}; run the study first.")
    if options.method is not None and options.method not in study.analyses["lira"]["methods"]:
        raise UnlearnMCError(f"--method {options.method!r} has no U-LiRA shadows; use one of analyses.lira.methods "
                             f"({', '.join(study.analyses['lira']['methods']) or 'none'}).")
    for path in options.checkpoint:
        if not Path(path).is_file():
            raise UnlearnMCError(f"--checkpoint {path!r} does not exist.")
    out = Path(options.out) if options.out else study.output_dir / "lira_cli"
    for name in ("lira.csv", "lira_scores.csv"):
        if (out / name).exists():
            raise UnlearnMCError(f"{str(out / name)!r} exists; choose another --out or delete it (results are never overwritten).")
    models: dict[str, nn.Module | None] = {name: None for name in names}
    methods: dict[str, str | None] = {}
    for path in options.checkpoint:  # a checkpoint's model is named by its path, as given
        models[path] = load_network_weights(instantiate(study.net), path)
        methods[path] = options.method
    with folder_lock(study.output_dir, "study folder"):
        run_shadow_stages(study, say)
        rows, per_example = lira_models(study, models, methods, say=say)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(per_example, out / "lira_scores.csv")
    write_csv(rows, out / "lira.csv")
    say(f"lira: {out / 'lira.csv'}")
    return out / "lira.csv"
