"""``UnlearnMCCLI``: LightningCLI over any LightningModule and DataModule, with the checks this project adds.

Every ``unlearn-mc`` subcommand that trains or evaluates one config (``fit``, ``validate``, ``test``,
``predict``) and every stage of a study runs through this class.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import lightning as L
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from unlearn_mc.checkpoints import read_checkpoint
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.dynamics.record import DYNAMICS_HPARAM
from unlearn_mc.errors import UnlearnMCError, find_user_error, one_sentence
from unlearn_mc.output_dirs import check_run_outputs
from unlearn_mc.preflight import check_datamodule_serves, check_network_takes_data, check_trainer_settings
from unlearn_mc.run_guard import RunGuard
from unlearn_mc.stage_checkpoint import StageCheckpoint


class UnlearnMCCLI(LightningCLI):
    """LightningCLI in subclass mode for both the model and the data: any ``class_path`` works.

    Before a subcommand writes anything, the trainer settings, the output folders, the data and the network's
    fit to the data are checked (``preflight``), and a fit takes the lock of each stage checkpoint it writes.
    ``guard`` collects those locks and the outputs the run creates (``main`` releases it, removing the outputs
    of a refused run).
    """

    def __init__(self, args=None, run: bool = True, guard: RunGuard | None = None) -> None:
        self.guard = guard if guard is not None else RunGuard()
        super().__init__(
            model_class=L.LightningModule,
            datamodule_class=L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            parser_kwargs={"exit_on_error": False},  # main() reports a rejected config in one sentence
            args=args,
            run=run,
        )

    def _parse_ckpt_path(self) -> None:
        """With ``--ckpt_path <file>``, LightningCLI sets the model's init args from the checkpoint's hyper-parameters.

        Done here as Lightning does, except that the file is read through ``read_checkpoint`` (weights only,
        one clear sentence for a missing, corrupted or unsafe file), that ``dynamics``, the record
        ``DynamicsHooks`` adds to the hyper-parameters when training starts, is left out (it is not an init
        arg), and that a checkpoint written without this CLI (no ``_class_path``) leaves the config as it is.
        """
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or not Path(path).is_file():
            return
        hparams = dict(read_checkpoint(path).get("hyper_parameters") or {})
        for recorded in ("_instantiator", DYNAMICS_HPARAM):
            hparams.pop(recorded, None)
        if "_class_path" not in hparams:  # not written through this CLI: the config names the class, the file gives the weights
            return
        hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """The Trainer, with the settings Lightning itself rejects (or only trips over later) refused in one sentence."""
        settings = self.config_init[self.subcommand].get("trainer", {}) if self.subcommand else self.config_init.get("trainer", {})
        check_trainer_settings(settings or {})
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError) as error:
            if find_user_error(error) is not None:
                raise
            raise UnlearnMCError(f"invalid trainer settings: {one_sentence(str(error))}") from None

    def _check_before_running(self, stage: str) -> None:
        """Refuse bad output folders, data and networks before the Trainer writes anything; note what the run
        will create, so that a run refused later (an ``UnlearnMCError`` from a step) leaves nothing behind."""
        check_run_outputs(self.trainer)
        if rank_zero_only.rank == 0:
            self.guard.track(self.trainer.log_dir)
            for callback in self._stage_checkpoints():
                self.guard.track(callback.dirpath)
        if isinstance(self.datamodule, UnlearningDataModule):
            if rank_zero_only.rank == 0:
                self.guard.track(self.datamodule.split_file)
            self.datamodule.setup(stage)  # loads the source and the split now; the Trainer's own setup then reuses them
            sample = next(iter(self.datamodule.eval_datasets().values()))[0][0]
            check_network_takes_data(self.model, sample, self.datamodule.num_classes, self.datamodule.dataset_name)
        elif self.datamodule is not None:
            check_datamodule_serves(self.datamodule, stage)

    def _stage_checkpoints(self) -> list[StageCheckpoint]:
        return [callback for callback in self.trainer.callbacks if isinstance(callback, StageCheckpoint)]

    def before_fit(self) -> None:
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        for callback in self._stage_checkpoints():  # a fit never replaces a finished stage's file by starting over
            if not ckpt_path:
                callback.refuse_overwriting()
            elif ckpt_path == "last" and not callback.last_file.exists():
                callback.refuse_overwriting(nothing_to_resume=True)
        self._check_before_running("fit")
        if rank_zero_only.rank == 0:  # DDP's other processes re-run this command while process 0 holds the locks
            for callback in self._stage_checkpoints():
                self.guard.hold(callback.dirpath, f"stage {callback.filename!r} in the checkpoint folder", f".{callback.filename}.lock")

    def before_validate(self) -> None:
        self._check_before_running("validate")

    def before_test(self) -> None:
        self._check_before_running("test")


def resolved_config(path: str | os.PathLike, subcommand: str = "fit") -> dict:
    """The config file ``path`` as ``unlearn-mc <subcommand> --config path`` reads it, as a plain mapping: the config it
    extends (``config: <file>``) and its dotted keys applied, every default filled in (what ``--print_config`` prints).
    Nothing is instantiated; a config the parser rejects raises its ``argparse.ArgumentError``."""
    printed = io.StringIO()
    command_line, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it is given args beside a command line
    try:
        with contextlib.redirect_stdout(printed):
            UnlearnMCCLI(args=[subcommand, "--config", str(path), "--print_config"])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    finally:
        sys.argv = command_line
    return yaml.safe_load(printed.getvalue())
