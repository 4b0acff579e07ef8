"""The study's TensorBoard run ``tensorboard/curves``: every curve's metrics along t, one custom-scalars section per curve.

Each stage is its own run (``tensorboard/<stage>``) logging ``curve/<metric>``; TensorBoard matches a chart's tags in
every run, so one chart per curve needs tags of its own: here ``<stage>/<metric>`` at step round(1000·t), and a
layout whose section ``<stage>`` puts that curve's forget, retain and test accuracy on one chart (and the losses,
and MIA efficacy, on two more). The run is rebuilt from the stages' results at every study run (written aside,
then swapped in), so it never holds a point twice.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from unlearn_mc.atomic_write import atomic_path
from unlearn_mc.curves.outputs import curve_layout, t_step


def log_study_curves(root: Path, results: dict[str, dict[str, Any]]) -> Path | None:
    """Write ``<root>/tensorboard/curves`` from the curve stages' results; return it (None without curves)."""
    from torch.utils.tensorboard import SummaryWriter

    curves = [result for result in results.values() if result["kind"] == "curve"]
    if not curves:
        return None
    run = root / "tensorboard" / "curves"
    with atomic_path(run) as temporary:
        with SummaryWriter(str(temporary)) as writer:
            for result in curves:
                for t, row in zip(result["curve"]["ts"], result["curve"]["rows"]):
                    for name, value in row.items():
                        writer.add_scalar(f"{result['stage']}/{name}", float(value), t_step(t))
            writer.add_custom_scalars(curve_layout({result["stage"]: f"{result['stage']}/" for result in curves}))
        shutil.rmtree(run, ignore_errors=True)  # the run is written anew from the results (a folder replaces only a missing one)
    return run
