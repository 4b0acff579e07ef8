"""The study's data and finished models, built the way its stages build them: the DataModule, an endpoint's network."""

from __future__ import annotations

import copy
import sys

import torch
from torch import nn

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.config_objects import instantiate
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.lightning_cli import UnlearnMCCLI
from unlearn_mc.study.plan import plan_study
from unlearn_mc.study.stage_runner import quiet_lightning
from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.stages import endpoint_stage_id, stage_checkpoint


def study_datamodule(study: StudySpec) -> UnlearningDataModule:
    """The DataModule exactly as the stages build it: through the CLI, from the ``original`` stage's data config.

    LightningCLI records the parsed data settings, defaults included, as the DataModule's hyper-parameters,
    and those are what the persisted split is checked against; building the class directly would record other
    values (e.g. ``forget_ratio=None`` instead of the default 0.1 under the class rule) and be refused by the split.
    """

    config = copy.deepcopy(next(stage for stage in plan_study(study) if stage.id == "original").config)
    datamodule = datamodule_from_config(config)
    datamodule.setup()
    return datamodule


def datamodule_from_config(config: dict) -> UnlearningDataModule:
    """The DataModule of a stage config (``model``, ``data``, …) as LightningCLI builds it, not set up; the config's
    trainer is replaced by a CPU one that is never used, and the command line is not parsed."""
    config = {**config, "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
                                    "enable_progress_bar": False, "enable_model_summary": False}}
    command_line, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI would also parse our command line
    try:
        with quiet_lightning():
            return UnlearnMCCLI(args=config, run=False).datamodule
    finally:
        sys.argv = command_line


def endpoint_net(study: StudySpec, name: str, device: torch.device) -> nn.Module:
    """The network of the finished endpoint ``name`` (``original``, ``retrain`` or a method), in eval mode on ``device``."""
    path = stage_checkpoint(study.output_dir, endpoint_stage_id(name))
    return load_network_weights(instantiate(study.net), path).to(device).eval()
