"""``unlearn-mc plane``: the plane through three models of a study, through any three checkpoint files, or a curve's own.

    unlearn-mc plane --config <study.yaml> --models original retrain salun [--grid 11] [--margin 0.2]
    unlearn-mc plane --config <study.yaml> --curve curve-bezier-grad_ascent--random_label
    unlearn-mc plane --config <study.yaml or stage config> --checkpoints a.ckpt b.ckpt c.ckpt [--output DIR]
    unlearn-mc plane --config <study.yaml or stage config> --curve path/to/curve.ckpt [--output DIR]

A study's planes go to ``<output_dir>/plane/<A>--<B>--<C>/`` (a curve's to ``plane/<curve stage>/``); files' planes to
``--output`` (default ``plane/<A>--<B>--<C>/``). Everything is checked (arguments, files, the network against every
checkpoint, an existing folder's settings) before anything is written; bad input is one ``UnlearnMCError`` sentence.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from unlearn_mc.checkpoints import network_state_from_file
from unlearn_mc.config_objects import instantiate
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.lightning_cli import resolved_config
from unlearn_mc.output_dirs import ensure_writable_dir
from unlearn_mc.plane import curve_plane, evaluate_plane
from unlearn_mc.plane.basis import check_grid, check_margin
from unlearn_mc.plane.outputs import check_plane_folder, finish_plane, plane_note
from unlearn_mc.run_guard import folder_lock
from unlearn_mc.study.plan import plan_study
from unlearn_mc.study.plane import file_sha256, finished_checkpoint, study_plane
from unlearn_mc.study.plane_spec import DEFAULT_GRID, DEFAULT_MARGIN, check_models
from unlearn_mc.study.datamodule import datamodule_from_config, study_datamodule
from unlearn_mc.study.stage_runner import default_device
from unlearn_mc.study.spec import StudySpec, load_study


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, exit status 2 through unlearn_mc.cli.main
        raise UnlearnMCError(f"unlearn-mc plane: {message}; see unlearn-mc plane --help.")


def _parser() -> _Parser:
    parser = _Parser(prog="unlearn-mc plane", description="Draw the unlearning landscape on the plane through three models.")
    parser.add_argument("--config", required=True, help="a study YAML (its stages, net and data) or a stage config (its net and data)")
    parser.add_argument("--models", nargs="+", help="three endpoints of the study, e.g. original retrain salun")
    parser.add_argument("--checkpoints", nargs="+", help="three checkpoint files of the config's network")
    parser.add_argument("--curve", help="a trained curve: a curve stage of the study, or a curve checkpoint file")
    parser.add_argument("--grid", type=int, default=DEFAULT_GRID, help="points per axis, G ≥ 2 (G×G points; default 11)")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="fraction of the models' spread added on each side")
    parser.add_argument("--bn_batches", type=int, default=None, help="retain batches per BatchNorm recalibration (default: the study's, else all)")
    parser.add_argument("--mia_loss_acc", action="store_true", help="also the loss attack (mia_loss_acc) at every point (slower)")
    parser.add_argument("--output", help="the plane's folder for --checkpoints or a curve file (default plane/<A>--<B>--<C>)")
    return parser


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UnlearnMCError(f"config file {str(path)!r} does not exist; give a study YAML or a stage config.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UnlearnMCError(f"config file {str(path)!r} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UnlearnMCError(f"config file {str(path)!r} must hold a mapping at the top level.")
    return raw


def _stage_config_data(path: Path, raw: dict[str, Any]) -> tuple[dict[str, Any], Callable[[], Any]]:
    """The network spec of a stage config (``model.init_args.net``) and a builder of its DataModule, which must find
    the split file the models were trained on (it is never created here)."""
    net = ((raw.get("model") or {}).get("init_args") or {}).get("net")
    if not isinstance(net, dict) or "class_path" not in net or not isinstance(raw.get("data"), dict):
        raise UnlearnMCError(f"config {str(path)!r} names no network at model.init_args.net or no data; give a stage config of this "
                             "project (e.g. configs/digits/original.yaml) or a study file.")
    datamodule = datamodule_from_config({"seed_everything": raw.get("seed_everything", 0), "data": raw["data"],
                                         "model": {"class_path": "unlearn_mc.training.BaseTraining", "init_args": {"net": copy.deepcopy(net)}}})
    split = getattr(datamodule, "split_file", None)
    if split is not None and not Path(split).is_file():
        raise UnlearnMCError(f"the split file {str(split)!r} of config {str(path)!r} does not exist; the plane is evaluated on the split the "
                             "models were trained on, so train them with this config first (or set data.init_args.split_file).")

    def build():
        datamodule.setup()
        return datamodule

    return net, build


def _labels(paths: list[Path]) -> list[str]:
    """Names of the files: their stems, else (``model.ckpt`` of study stages) their folders' names, else A, B, C."""
    for names in ([path.stem for path in paths], [path.parent.name for path in paths]):
        if len(set(names)) == len(names) and all(names) and not any("/" in name for name in names):
            return names
    return ["A", "B", "C"][:len(paths)]


def _files_plane(args, path: Path, raw: dict[str, Any], study: StudySpec | None) -> tuple[Path, dict, bool]:
    if study is not None:
        split = study.output_dir / "split.json"
        if not split.is_file():
            raise UnlearnMCError(f"the study's split file {str(split)!r} does not exist; the plane is evaluated on the split the models "
                                 f"were trained on, so run the study's base stages first (unlearn-mc study --config {path}).")
        net_spec, build = study.net, lambda: study_datamodule(study)
    else:
        net_spec, build = _stage_config_data(path, raw)
    bn_batches = args.bn_batches if args.bn_batches is not None else (study.evaluation.get("bn_batches") if study else None)
    device = default_device(study) if study is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = instantiate(net_spec)
    common = {"grid": check_grid(args.grid, "--grid"), "margin": check_margin(args.margin, "--margin"), "bn_split": "retain",
              "bn_batches": bn_batches, "mia_loss_acc": args.mia_loss_acc, "net": net_spec, "data": study.data if study else raw["data"]}
    if args.checkpoints is not None:
        if len(args.checkpoints) != 3:
            raise UnlearnMCError(f"--checkpoints takes exactly three files, got {len(args.checkpoints)} ({' '.join(args.checkpoints)}).")
        files = [Path(file) for file in args.checkpoints]
        names = _labels(files)
        states = [network_state_from_file(net, file) for file in files]  # missing, unsafe or mismatching files: one sentence now
        config = {"models": names, "checkpoints_sha256": [file_sha256(file) for file in files], **common}

        def compute():
            loaders = build().eval_dataloaders()
            return evaluate_plane(net, states, loaders, common["grid"], common["margin"], bn_loader=loaders["retain"],
                                  bn_batches=bn_batches, names=names, device=device, progress=True, mia_loss_acc=args.mia_loss_acc)
    else:
        from unlearn_mc.curves import CurveModule

        file = Path(args.curve)
        curve = CurveModule.load_curve(file, net)
        names = ["t=0", "bend", "t=1"]
        config = {"curve": str(file), "checkpoint_sha256": file_sha256(file), **common}

        def compute():
            loaders = build().eval_dataloaders()
            return curve_plane(curve.to(device), loaders, common["grid"], common["margin"], bn_loader=loaders["retain"],
                               bn_batches=bn_batches, names=names, device=device, progress=True, mia_loss_acc=args.mia_loss_acc)
    folder = Path(args.output) if args.output else Path("plane") / ("--".join(names) if args.checkpoints else file.stem)
    ensure_writable_dir(folder, "plane output")
    check_plane_folder(folder, config)
    record, reused = finish_plane(folder, config, compute, folder / "tensorboard", f"plane/{folder.name}")
    return folder, record, reused


def _study_curve_plane(args, study: StudySpec) -> tuple[Path, dict, bool]:
    from unlearn_mc.curves import CurveModule

    trained = {stage.id: stage for stage in plan_study(study) if stage.kind == "curve" and stage.info["num_bends"] >= 3}
    stage = trained.get(args.curve)
    if stage is None:
        raise UnlearnMCError(f"--curve {args.curve!r} is not a trained curve of the study; use one of {', '.join(trained) or '(none: the study trains no curve)'}"
                             " or a curve checkpoint file.")
    checkpoint = stage.checkpoint(study.output_dir)
    if not (stage.directory(study.output_dir) / "result.json").is_file() or not checkpoint.is_file():
        raise UnlearnMCError(f"the curve {args.curve!r} has not finished in {str(study.output_dir)!r}; run unlearn-mc study --config {study.path} first.")
    grid, margin = check_grid(args.grid, "--grid"), check_margin(args.margin, "--margin")
    bn_batches = args.bn_batches if args.bn_batches is not None else study.evaluation.get("bn_batches")
    folder = study.output_dir / "plane" / stage.id
    config = {"curve": stage.id, "checkpoint_sha256": file_sha256(checkpoint), "grid": grid, "margin": margin, "bn_split": "retain",
              "bn_batches": bn_batches, "mia_loss_acc": args.mia_loss_acc, "net": study.net, "data": study.data}
    check_plane_folder(folder, config)
    curve = CurveModule.load_curve(checkpoint, instantiate(study.net))
    names = [stage.info["start"], "bend", stage.info["end"]]

    def compute():
        loaders = study_datamodule(study).eval_dataloaders()
        device = default_device(study)
        return curve_plane(curve.to(device), loaders, grid, margin, bn_loader=loaders["retain"], bn_batches=bn_batches, names=names,
                           device=device, progress=True, mia_loss_acc=args.mia_loss_acc)

    with folder_lock(study.output_dir, "study folder"):
        record, reused = finish_plane(folder, config, compute, study.output_dir / "tensorboard" / "plane", f"plane/{folder.name}")
    return folder, record, reused


def run_plane_command(argv: list[str], say: Callable[[str], None] = print) -> Path:
    """Parse ``unlearn-mc plane`` arguments, draw (or reuse) the plane and print its closing note; return its folder."""
    args = _parser().parse_args(argv)
    chosen = [f"--{name}" for name in ("models", "checkpoints", "curve") if getattr(args, name) is not None]
    if len(chosen) != 1:
        raise UnlearnMCError(f"give exactly one of --models (three stages of a study), --checkpoints (three files) or --curve "
                             f"(a trained curve), got {' and '.join(chosen) or 'none'}.")
    if args.bn_batches is not None and args.bn_batches < 1:
        raise UnlearnMCError(f"--bn_batches={args.bn_batches} must be at least 1 (or left out for the study's setting, else all batches).")
    path = Path(args.config)
    raw = _read_config(path)
    study = load_study(path) if "model" not in raw and "config" not in raw else None
    if study is None:  # a stage config, read as `fit` reads it: what it extends (`config: <file>`) and its dotted keys applied
        raw = resolved_config(path)
    if args.models is not None:
        if study is None:
            raise UnlearnMCError(f"--models names stages of a study, but {str(path)!r} is a stage config; give a study file, or --checkpoints with three files.")
        if args.output is not None:
            raise UnlearnMCError(f"--output={args.output!r} is for --checkpoints and curve files; a study's plane goes to "
                                 f"{str(study.output_dir / 'plane')!r}/<A>--<B>--<C>.")
        models = check_models(args.models, study.endpoints, "--models")
        for name in models:
            finished_checkpoint(study, name)  # before the lock (which would create a missing folder)
        bn_batches = args.bn_batches if args.bn_batches is not None else study.evaluation.get("bn_batches")
        grid, margin = check_grid(args.grid, "--grid"), check_margin(args.margin, "--margin")
        with folder_lock(study.output_dir, "study folder"):
            folder, record, reused = study_plane(study, models, grid, margin, bn_batches, lambda: study_datamodule(study), args.mia_loss_acc)
    elif args.curve is not None and study is not None and not Path(args.curve).is_file():
        folder, record, reused = _study_curve_plane(args, study)
    else:
        folder, record, reused = _files_plane(args, path, raw, study)
    say(plane_note(folder, record, reused))
    return folder
