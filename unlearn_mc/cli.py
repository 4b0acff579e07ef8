"""The ``unlearn-mc`` command: LightningCLI (``fit``, ``validate``, ``test``, ``predict``) over any module and DataModule.

Bad input raised as ``UnlearnMCError`` ends the run with one sentence on stderr and exit status 2.
"""

from __future__ import annotations

import sys
import warnings

import lightning as L
from lightning.pytorch.cli import LightningCLI

from unlearn_mc.errors import find_user_error
from unlearn_mc.output_dirs import check_run_outputs


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
            args=args,
            run=run,
        )

    def before_fit(self) -> None:
        check_run_outputs(self.trainer)

    def before_validate(self) -> None:
        check_run_outputs(self.trainer)

    def before_test(self) -> None:
        check_run_outputs(self.trainer)


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
