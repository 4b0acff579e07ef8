"""The ``unlearn-mc`` command: LightningCLI (``fit``, ``validate``, ``test``, ``predict``) over any module and DataModule,
and the ``study``, ``tune`` and ``plane`` subcommands.

Bad input raised as ``UnlearnMCError`` ends the run with one sentence on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from unlearn_mc.errors import NoFeasibleSetting, describe_config_error, find_user_error
from unlearn_mc.lightning_cli import UnlearnMCCLI
from unlearn_mc.run_guard import RunGuard

__all__ = ["UnlearnMCCLI", "console_entry", "main"]


def _study(args: list[str]) -> None:
    """``unlearn-mc study --config <study.yaml>``."""
    from unlearn_mc.study import run_study

    parser = argparse.ArgumentParser(prog="unlearn-mc study", description="Run a whole mode-connectivity unlearning study from one YAML.")
    parser.add_argument("--config", required=True, help="the study YAML, e.g. configs/digits/study.yaml")
    run_study(parser.parse_args(args).config)


def _tune(args: list[str]) -> None:
    """``unlearn-mc tune --config <study.yaml> --method <name> [--trials N] [--lr-range LOW HIGH] …``."""
    from unlearn_mc.study import load_study
    from unlearn_mc.study.tuning.calibrate import settings_for, tune_method

    parser = argparse.ArgumentParser(prog="unlearn-mc tune", description="Calibrate a study method's learning rate, epochs and main "
                                     "weight: the setting closest to retrain on the validation split, above a retain-accuracy floor.")
    parser.add_argument("--config", required=True, help="the study YAML, e.g. configs/digits/study.yaml")
    parser.add_argument("--method", required=True, help="a method entry of the study, e.g. grad_ascent")
    parser.add_argument("--trials", type=int, help="number of trials (default: the entry's tune.trials, else 20)")
    parser.add_argument("--lr-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="learning rates searched, log-uniform")
    parser.add_argument("--epochs-range", type=int, nargs=2, metavar=("LOW", "HIGH"), help="epochs searched (default 1 5)")
    parser.add_argument("--weight-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="the method's main weight searched "
                        "(GradDiff alpha, RandomLabel/SalUn/BadTeacher retain_weight, NPO beta, L1Sparse alpha)")
    parser.add_argument("--retain-floor", type=float, help="fraction of the retrain model's retain accuracy a trial must keep (default 0.9)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="train every trial with each of these seeds; a setting "
                        "must keep the floor on each (default: the method's own seed)")
    parsed = parser.parse_args(args)
    study = load_study(parsed.config)
    flags = {key: getattr(parsed, key) for key in ("trials", "lr_range", "epochs_range", "weight_range", "retain_floor", "seeds")}
    tune_method(study, parsed.method, settings_for(study, parsed.method, flags))


def _plane(args: list[str]) -> None:
    """``unlearn-mc plane --config … (--models A B C | --checkpoints a b c | --curve …)``."""
    from unlearn_mc.plane_command import run_plane_command

    run_plane_command(args)


def main(args: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    # Lightning 2.6 on torch 2.14 warns about torch's deprecated LeafSpec on every fit; it is not actionable here.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
    arguments = sys.argv[1:] if args is None else list(args)
    guard = RunGuard()
    refused = False
    try:
        if arguments[:1] == ["study"]:
            _study(arguments[1:])
        elif arguments[:1] == ["tune"]:
            _tune(arguments[1:])
        elif arguments[:1] == ["plane"]:
            _plane(arguments[1:])
        elif arguments[:1] == ["lira"]:
            from unlearn_mc.study.lira_cli import main as lira_main

            lira_main(arguments[1:])
        else:
            UnlearnMCCLI(args=args, guard=guard)
    except NoFeasibleSetting as error:  # the search ran and wrote its table, but found no setting to use
        print(f"unlearn-mc: {error}", file=sys.stderr)
        return 1
    except argparse.ArgumentError as error:
        refused = True
        print(f"unlearn-mc: error: {describe_config_error(error)}", file=sys.stderr)
        return 2
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        refused = True
        print(f"unlearn-mc: error: {user_error}", file=sys.stderr)
        return 2
    finally:
        guard.close(refused=refused)
    return 0


def console_entry() -> None:
    """``unlearn-mc`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console_entry()
