"""``make demo``: the digits mode-connectivity study, from one YAML, on the embedded digits data.

Runs ``unlearn-mc study --config configs/digits/study.yaml`` (forgetting class 3): original and retrain models,
five unlearned endpoints, straight lines and Bezier curves between them, evaluation along every
curve, the analyses (the plane through original, retrain and one method among them), and
``studies/digits/report.md``. Prints the main tables, the plane's figure with its grid size and wall time, and where
the report and the TensorBoard runs are. A second run reuses every finished stage.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.plane.outputs import plane_note, read_plane_record
from unlearn_mc.study import run_study
from unlearn_mc.study.tables import markdown_table

STUDY = Path(__file__).resolve().parents[1] / "configs" / "digits" / "study.yaml"


def _forgetting(data: dict) -> str:
    """``forget class 3`` or ``random 10% forgetting``, from the study's data settings."""
    if data.get("forget_rule") == "class":
        return f"forget class {', '.join(map(str, data.get('forget_classes', [])))}"
    if data.get("forget_count"):
        return f"random forgetting of {data['forget_count']} samples"
    return f"random {100 * float(data.get('forget_ratio', 0.1)):g}% forgetting"


def run_demo(study_path: Path = STUDY) -> int:
    started = time.perf_counter()
    try:
        results = run_study(study_path)
    except UnlearnMCError as error:
        print(f"unlearn-mc: error: {error}", file=sys.stderr)
        return 2
    study = results.study
    print(f"\nMethods ({study.data.get('dataset', 'digits')}, {_forgetting(study.data)}):\n" + markdown_table(results.method_table()))
    print("\nCurves:\n" + markdown_table(results.curve_summary()))
    if study.analyses.get("plane"):
        folder = study.output_dir / "plane" / "--".join(study.analyses["plane"]["models"])
        record = read_plane_record(folder)
        print("\n" + (plane_note(folder, record) if record else "plane: not drawn (see the report's Analyses that failed)"))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    print(f"report: {results.report}")
    print(f"TensorBoard: .venv/bin/tensorboard --logdir {study.output_dir / 'tensorboard' if len(study.seeds) == 1 else study.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
