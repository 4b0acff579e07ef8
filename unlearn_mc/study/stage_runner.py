"""Running a study's stages: reuse finished ones, refuse changed ones, restart unfinished ones.

A stage is finished when its ``result.json`` exists; that file is written last, atomically,
after the checkpoint. Its ``config_sha256`` is the digest of the stage's config: a finished
stage whose config differs from the study's is an error, never silently redone or reused. A
stage without ``result.json`` (never run, or killed) is cleared and run from the start with
its seed, so an interrupted study finishes with the results of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from unlearn_mc.atomic_write import temporary_sibling, write_text_atomically
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.lightning_cli import UnlearnMCCLI
from unlearn_mc.evaluation import evaluate_model
from unlearn_mc.models.modes import module_mode
from unlearn_mc.output_dirs import check_run_outputs, ensure_writable_dir
from unlearn_mc.study.plan import plan_study
from unlearn_mc.study.stages import Stage, StageResult
from unlearn_mc.study.spec import StudySpec

CURVE_FILES = ("curve_eval.csv", "curve_summary.json", "curve_metrics.png")


def config_digest(config: dict[str, Any]) -> str:
    """sha256 of the config in canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def write_json_atomically(data: Any, path: Path) -> None:
    write_text_atomically(path, json.dumps(data, indent=1, default=str))


def _first_difference(old: Any, new: Any, where: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else str(key))
    return f"{where or 'the config'} was {old!r}, now {new!r}"


def stage_status(stage: Stage, root: Path) -> str:
    """``done`` (finished with this very config) or ``pending``; a finished stage with another config is an error."""
    result_path = stage.directory(root) / "result.json"
    if not result_path.is_file():
        return "pending"
    result = json.loads(result_path.read_text())
    if result.get("config_sha256") != config_digest(stage.config):
        stored = result.get("config", {})
        raise UnlearnMCError(
            f"stage {stage.id!r} was finished with another config ({_first_difference(stored, stage.config)}); "
            f"delete {str(stage.directory(root))!r} to redo it, or set output_dir to a new folder."
        )
    return "done"


def _run_config(stage: Stage, root: Path) -> dict[str, Any]:
    """The stage's config as run: logging to ``<root>/tensorboard/<stage>``; a curve's own custom-scalars layout is
    left out (the study writes one layout for all its curves in ``tensorboard/curves``), so its sections do not mix runs."""
    config = copy.deepcopy(stage.config)
    for callback in config["trainer"].get("callbacks") or []:
        if callback.get("class_path") == "unlearn_mc.curves.CurveEvaluation":
            callback.setdefault("init_args", {})["custom_scalars"] = False
    config["trainer"].update(
        logger={"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": str(root / "tensorboard"), "name": stage.id, "version": ""}},
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    return config


def _model_metrics(module, datamodule) -> dict[str, float]:
    with module_mode(module.net, training=False):
        return evaluate_model(module.net, datamodule.eval_dataloaders(), module.device)


def run_stage(stage: Stage, root: Path) -> StageResult:
    """Run one stage through the same CLI, modules and Trainer flags as ``unlearn-mc fit``; return its result."""
    from unlearn_mc.curves import CurveEvaluation

    directory = stage.directory(root)
    for leftover in (directory, root / "tensorboard" / stage.id):
        shutil.rmtree(leftover, ignore_errors=True)
    directory.mkdir(parents=True)
    # LightningCLI warns when given both ``args`` and command-line arguments; hide ours while it parses
    # (and restore them before fitting: DDP's launcher re-runs this very command line).
    command_line, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = UnlearnMCCLI(args=_run_config(stage, root), run=False)
    finally:
        sys.argv = command_line
    trainer, module, datamodule = cli.trainer, cli.model, cli.datamodule
    check_run_outputs(trainer)
    started = time.perf_counter()
    if stage.command == "fit":
        trainer.fit(module, datamodule=datamodule)
        temporary = temporary_sibling(stage.checkpoint(root))  # every rank calls save_checkpoint; rank 0 writes it
        trainer.save_checkpoint(temporary, weights_only=False)  # the full state: weights, optimiser, loops
        if trainer.is_global_zero:
            os.replace(temporary, stage.checkpoint(root))
    else:
        trainer.validate(module, datamodule=datamodule, verbose=False)
    wall = time.perf_counter() - started
    result: StageResult = {"stage": stage.id, "kind": stage.kind, "info": stage.info, "config": stage.config,
                              "config_sha256": config_digest(stage.config), "wall_s": wall}
    if stage.kind == "curve":
        evaluation = next(c for c in trainer.callbacks if isinstance(c, CurveEvaluation))
        curve = evaluation.last_result
        result["curve"] = {"ts": curve.ts, "rows": curve.rows, "summary": curve.summary}
        for name in CURVE_FILES:
            produced = Path(trainer.log_dir) / name
            if trainer.is_global_zero and produced.is_file():
                shutil.copy2(produced, directory / name)
    else:
        result["metrics"] = _model_metrics(module, datamodule)
        result["runtime_s"] = getattr(module, "runtime_s", None) or wall
        result["stop_reason"] = getattr(module, "stop_reason", None)
        result["epochs"] = trainer.current_epoch
    if trainer.is_global_zero:
        (directory / "config.yaml").write_text(_yaml(stage.config))
        write_json_atomically(result, directory / "result.json")
    trainer.strategy.barrier("unlearn-mc stage finished")
    return result


def _yaml(config: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Keep the study's progress lines readable: Lightning's info messages (devices, tips, "max_epochs
    reached") and the ``LeafSpec`` FutureWarning of Lightning 2.6 on torch 2.14 are hidden; warnings stay."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def run_stages(study: StudySpec, say: Callable[[str], None] = print) -> dict[str, StageResult]:
    """Run (or reuse) every stage in order and return each stage's result by id."""
    with quiet_lightning():
        return _run_stages(study, say)


def check_stages(study: StudySpec, stages: list[Stage] | None = None) -> dict[str, str]:
    """Each planned stage's status (``done`` or ``pending``); raise ``UnlearnMCError`` for an unwritable output
    folder or a finished stage whose config changed, before any work. ``run_study`` calls it before taking the
    folder's lock (so a refused study creates nothing) and ``run_stages`` again under the lock."""
    ensure_writable_dir(study.output_dir, "study output")
    stages = plan_study(study) if stages is None else stages
    return {stage.id: stage_status(stage, study.output_dir) for stage in stages}


def _run_stages(study: StudySpec, say: Callable[[str], None]) -> dict[str, StageResult]:
    root = study.output_dir
    stages = plan_study(study)
    statuses = check_stages(study, stages)
    results: dict[str, dict[str, Any]] = {}
    width = len(str(len(stages)))
    for number, stage in enumerate(stages, 1):
        label = f"[{number:>{width}}/{len(stages)}] {stage.id}"
        if statuses[stage.id] == "done":
            results[stage.id] = json.loads((stage.directory(root) / "result.json").read_text())
            say(f"{label}: finished earlier, reused")
            continue
        say(f"{label}: running ({stage.command})")
        result = run_stage(stage, root)
        results[stage.id] = result
        say(f"{label}: done in {result['wall_s']:.1f} s")
    return results


def default_device(study: StudySpec) -> torch.device:
    """Where analyses run: the first GPU when the study's Trainer may use one, else the CPU."""
    accelerator = str(study.trainer.get("accelerator", "auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
