"""The ``unlearn-mc`` command: LightningCLI (``fit``, ``validate``, ``test``, ``predict``) over any module and DataModule,
and ``study``.

Bad input raised as ``UnlearnMCError`` ends the run with one sentence on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from unlearn_mc.errors import describe_config_error, find_user_error
from unlearn_mc.lightning_cli import UnlearnMCCLI
from unlearn_mc.run_guard import RunGuard

__all__ = ["UnlearnMCCLI", "console_entry", "main"]


def _study(args: list[str]) -> None:
    """``unlearn-mc study --config <study.yaml>``."""
    from unlearn_mc.study import run_study

    parser = argparse.ArgumentParser(prog="unlearn-mc study", description="Run a whole mode-connectivity unlearning study from one YAML.")
    parser.add_argument("--config", required=True, help="the study YAML, e.g. configs/digits/study.yaml")
    run_study(parser.parse_args(args).config)


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
        else:
            UnlearnMCCLI(args=args, guard=guard)
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
