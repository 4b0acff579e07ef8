"""One trial of a calibration: train the method with a setting and score it against retrain on the validation split.

A trial is an ordinary method stage of the study (its config built by ``plan_study``, so it reads the study's
``original`` and ``retrain`` checkpoints and split, and trains exactly as the study's own stage would) with the
trial's lr, epochs and weight, run by ``runner.run_stage`` under ``<output_dir>/tuning/<method>/trials/<number>/``
(with several training seeds, one stage per seed under ``trials/<number>/seed<s>/``). A finished trial (its
``result.json`` holds the digest of this very config) is reused, never retrained.

Scoring never looks at the test set. The validation split V (``data.val_fraction`` of the training pool, in no
stage's training data) stands in for it:

    gap = ¼ · ( |F − F_r| + |R − R_r| + |A_V − A_V,r| + |M_V − M_V,r| )

with F, R the forget and retain accuracies, A_V the validation accuracy and M_V the MIA efficacy whose attack learns
members (retain) against non-members taken from V instead of the test set (``evaluation.mia.mia_efficacy`` on the
validation loader); the subscript r marks the retrain model's values. The trial's test-set metrics (``forget_acc``,
``retain_acc``, ``test_acc``, ``mia_efficacy`` as in ``methods.csv``) are recorded beside, for reading only. With
several seeds each seed's model is scored on its own (``TrialOutcome.runs``); ``search.trial_row`` averages them.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unlearn_mc.study.plan import Stage, plan_study
from unlearn_mc.study.stage_runner import config_digest, quiet_lightning, run_stage, stage_status, write_json_atomically
from unlearn_mc.study.spec import MethodSpec, StudySpec
from unlearn_mc.study.stages import stage_checkpoint
from unlearn_mc.unlearning.base import average_gap

VAL_METRICS = ("forget_acc", "retain_acc", "val_acc", "val_mia_efficacy")
VAL_FILE = "val_metrics.json"


@dataclass
class TrialStage(Stage):
    """A method stage whose folder is ``<root>/trials/<id>`` (``root`` = ``<output_dir>/tuning/<method>``)."""

    def directory(self, root: Path) -> Path:
        return root / "trials" / self.id


def trial_stage(study: StudySpec, method: MethodSpec, number: int, seed_folder: bool = False) -> TrialStage:
    """The stage training ``method`` (a setting already applied) as trial ``number``: the study's own method stage config
    (in ``<number>/seed<seed>`` with ``seed_folder``, one of a trial's several seeds)."""
    alone = dataclasses.replace(study, methods={method.name: method}, pairs=[], matrix=[], paths_from=[])
    planned = next(stage for stage in plan_study(alone) if stage.kind == "method")
    stage_id = f"{number:03d}/seed{method.seed}" if seed_folder else f"{number:03d}"
    return TrialStage(stage_id, "method", "fit", planned.config, depends=planned.depends, info={**planned.info, "trial": number})


@torch.no_grad()
def validation_metrics(net: torch.nn.Module, loaders: dict, device: torch.device) -> dict[str, float]:
    """F, R, A_V and M_V of ``net`` (in eval mode): ``evaluate_model`` with the validation loader in the test set's place."""
    from unlearn_mc.evaluation import evaluate_model

    metrics = evaluate_model(net, {"forget": loaders["forget"], "retain": loaders["retain"], "test": loaders["val"]}, device)
    return {"forget_acc": metrics["forget_acc"], "retain_acc": metrics["retain_acc"], "val_acc": metrics["test_acc"],
            "val_mia_efficacy": metrics["mia_efficacy"]}


def validation_gap(metrics: dict[str, float], reference: dict[str, float]) -> float:
    """The gap above: ``average_gap`` over F, R, A_V, M_V in place of F, R, test accuracy, MIA efficacy."""
    def as_gap_metrics(values: dict[str, float]) -> dict[str, float]:
        return {"forget_acc": values["forget_acc"], "retain_acc": values["retain_acc"], "test_acc": values["val_acc"],
                "mia_efficacy": values["val_mia_efficacy"]}

    return average_gap(as_gap_metrics(metrics), as_gap_metrics(reference))


@dataclass
class SeedRun:
    """What one model of a trial measured: ``test`` (the evaluation splits, as ``methods.csv``) and ``val`` (``VAL_METRICS``)."""

    test: dict[str, float]
    val: dict[str, float]
    stop_reason: str | None = None


@dataclass
class TrialOutcome:
    """A trial's models, one per training seed."""

    runs: list[SeedRun]
    reused: bool = False
    same_as: int | None = None  # an earlier trial of this search with the very same setting


class TrialRunner:
    """``runner(number, params) -> TrialOutcome``: train (or reuse) trial ``number`` with ``params`` applied by ``settings``.

    ``retrain_val`` / ``retrain_test`` are the retrain model's validation-scored and test-set metrics, the references.
    A setting proposed twice (rounding makes it possible) is trained once; the later trial reuses the earlier one.
    """

    def __init__(self, study: StudySpec, method: str, settings, root: Path, datamodule, retrain_test: dict[str, float]) -> None:
        from unlearn_mc.study.stage_runner import default_device

        self.study, self.method, self.settings, self.root = study, study.methods[method], settings, root
        self.loaders = datamodule.eval_dataloaders()
        self.device = default_device(study)
        self.retrain_test = retrain_test
        self.retrain_val = validation_metrics(self._net(stage_checkpoint(study.output_dir, "retrain")), self.loaders, self.device)
        self._seen: dict[str, tuple[int, TrialOutcome]] = {}

    def _net(self, checkpoint: Path) -> torch.nn.Module:
        from unlearn_mc.checkpoints import load_network_weights
        from unlearn_mc.config_objects import instantiate

        return load_network_weights(instantiate(self.study.net), checkpoint).to(self.device).eval()

    def __call__(self, number: int, params: dict[str, Any]) -> TrialOutcome:
        method = self.settings.apply(self.method, params)
        seeds = self.settings.seeds or (method.seed,)
        stages = [trial_stage(self.study, dataclasses.replace(method, seed=seed), number, seed_folder=len(seeds) > 1) for seed in seeds]
        digest = config_digest([stage.config for stage in stages])
        if digest in self._seen:
            earlier, outcome = self._seen[digest]
            return dataclasses.replace(outcome, reused=True, same_as=earlier)
        runs, reused = [], True
        for stage in stages:
            if stage_status(stage, self.root) == "done":
                result = json.loads((stage.directory(self.root) / "result.json").read_text())
            else:
                with quiet_lightning(), warnings.catch_warnings():
                    # a forget stream of a few batches trips Lightning's logging-interval notice on every trial
                    warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging interval")
                    result, reused = run_stage(stage, self.root), False
            runs.append(SeedRun(test=result["metrics"], val=self._validation(stage), stop_reason=result.get("stop_reason")))
        outcome = TrialOutcome(runs=runs, reused=reused)
        self._seen[digest] = (number, outcome)
        return outcome

    def _validation(self, stage: TrialStage) -> dict[str, float]:
        """The trial model's ``VAL_METRICS``, stored beside its result (with the config digest they belong to)."""
        digest = config_digest(stage.config)
        path = stage.directory(self.root) / VAL_FILE
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("config_sha256") == digest:
                return stored["metrics"]
        metrics = validation_metrics(self._net(stage.checkpoint(self.root)), self.loaders, self.device)
        write_json_atomically({"config_sha256": digest, "metrics": metrics}, path)
        return metrics
