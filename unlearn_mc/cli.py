"""The ``unlearn-mc`` command: LightningCLI (``fit``, ``validate``, ``test``, ``predict``) over any module and DataModule.

Bad input raised as ``UnlearnMCError`` ends the run with one sentence on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningCLI

from unlearn_mc.checkpoints import read_checkpoint
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.errors import describe_config_error, find_user_error
from unlearn_mc.output_dirs import check_run_outputs
from unlearn_mc.stage_checkpoint import StageCheckpoint


class UnlearnMCCLI(LightningCLI):
    """LightningCLI in subclass mode for both the model and the data: any ``class_path`` works."""

    def __init__(self, args=None, run: bool = True) -> None:
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
        for recorded in ("_instantiator", "dynamics"):
            hparams.pop(recorded, None)
        if "_class_path" not in hparams:  # not written through this CLI: the config names the class, the file gives the weights
            return
        hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def _check_before_running(self, stage: str) -> None:
        """Refuse bad output folders and bad data before the Trainer writes anything (logs, checkpoint folders)."""
        check_run_outputs(self.trainer)
        if isinstance(self.datamodule, UnlearningDataModule):
            self.datamodule.setup(stage)  # loads the source and the split now; the Trainer's own setup then reuses them

    def before_fit(self) -> None:
        if not self.config[self.subcommand].get("ckpt_path"):  # a fresh fit never replaces a finished stage's file
            for callback in self.trainer.callbacks:
                if isinstance(callback, StageCheckpoint):
                    callback.refuse_overwriting()
        self._check_before_running("fit")

    def before_validate(self) -> None:
        self._check_before_running("validate")

    def before_test(self) -> None:
        self._check_before_running("test")


def _study(args: list[str]) -> None:
    """``unlearn-mc study --config <study.yaml>``."""
    import argparse

    from unlearn_mc.study import run_study

    parser = argparse.ArgumentParser(prog="unlearn-mc study", description="Run a whole mode-connectivity unlearning study from one YAML.")
    parser.add_argument("--config", required=True, help="the study YAML, e.g. configs/digits/study.yaml")
    run_study(parser.parse_args(args).config)


def main(args: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    # Lightning 2.6 on torch 2.14 warns about torch's deprecated LeafSpec on every fit; it is not actionable here.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
    arguments = sys.argv[1:] if args is None else list(args)
    try:
        if arguments[:1] == ["study"]:
            _study(arguments[1:])
        else:
            UnlearnMCCLI(args=args)
    except argparse.ArgumentError as error:
        print(f"unlearn-mc: error: {describe_config_error(error)}", file=sys.stderr)
        return 2
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        print(f"unlearn-mc: error: {user_error}", file=sys.stderr)
        return 2
    return 0


def console_entry() -> None:
    """``unlearn-mc`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console_entry()
