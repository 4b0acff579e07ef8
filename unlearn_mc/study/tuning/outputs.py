"""What a calibration writes under ``<output_dir>/tuning/<method>/``.

- ``trials.csv``: one row per trial: ``number``, the parameters (``lr``, ``epochs``, the weight), the test-set metrics of
  the trial's model (``forget_acc``, ``retain_acc``, ``test_acc``, ``mia_efficacy``), its validation-scored ones
  (``val_acc``, ``val_mia_efficacy``), ``gap`` (the validation gap to retrain the choice minimises), ``test_gap`` (the same
  gap on the test set, for reading only), ``feasible`` (1 when retain accuracy ≥ the floor), ``state``
  (``complete``, or ``fail`` for a non-finite gap), ``stop_reason`` and ``chosen`` (1 on the chosen row, else 0).
- ``gap_vs_lr.png``: the gap against the learning rate (log scale), infeasible trials crossed, the chosen one starred.
- ``chosen.yaml``: the chosen setting as a study-file fragment ``methods: {<method>: {…}}``, with where it came from.
- ``search.json``: what identifies the search, and when finished its rows and choice (written last).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import yaml

from unlearn_mc.atomic_write import write_bytes_atomically, write_text_atomically
from unlearn_mc.study.spec import MethodSpec
from unlearn_mc.study.tables import Row, write_csv

TEST_METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
FIGURE = "gap_vs_lr.png"


def write_trials(rows: list[Row], directory: Path) -> Path:
    path = directory / "trials.csv"
    write_csv(rows, path)
    return path




def write_figure(rows: list[Row], directory: Path, method: str, floor: float) -> Path:
    """gap against lr: feasible trials as dots coloured by epochs, infeasible as grey crosses, the chosen one a red star."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    finite = [row for row in rows if math.isfinite(row["gap"])]
    feasible = [row for row in finite if row["feasible"]]
    infeasible = [row for row in finite if not row["feasible"]]
    if feasible:
        points = axes.scatter([r["lr"] for r in feasible], [r["gap"] for r in feasible], c=[r["epochs"] for r in feasible],
                              cmap="viridis", s=28, label="feasible")
        figure.colorbar(points, ax=axes, label="epochs", ticks=MaxNLocator(integer=True))
    if infeasible:
        axes.scatter([r["lr"] for r in infeasible], [r["gap"] for r in infeasible], marker="x", color="0.55", s=28,
                     label=f"retain accuracy < {floor:.3f}")
    for row in rows:
        if row["chosen"]:
            axes.scatter([row["lr"]], [row["gap"]], marker="*", color="crimson", s=220, zorder=3, label=f"chosen: trial {row['number']}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("gap to retrain (validation split)")
    axes.set_title(f"{method}: {len(rows)} trials")
    axes.grid(True, alpha=0.3)
    if finite:
        axes.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    path = directory / FIGURE
    write_bytes_atomically(path, buffer.getvalue())
    return path


def method_entry(method: MethodSpec, default_seed: int) -> dict[str, Any]:
    """``method`` as a study file's method entry (keys the study would otherwise default are left out)."""
    class_path = method.class_path
    entry: dict[str, Any] = {"method": class_path.rsplit(".", 1)[-1] if class_path.startswith("unlearn_mc.unlearning.") else class_path,
                             "epochs": method.epochs}
    if method.args:
        entry["args"] = dict(method.args)
    entry["optimizer"] = method.optimizer
    for key in ("lr_scheduler", "curriculum"):
        if getattr(method, key):
            entry[key] = getattr(method, key)
    if method.trainer:
        entry["trainer"] = dict(method.trainer)
    if method.seed != default_seed:
        entry["seed"] = method.seed
    return entry


def write_fragment(method: MethodSpec, default_seed: int, row: Row, header: list[str], directory: Path) -> Path:
    """``chosen.yaml``: ``methods: {<name>: <entry>}`` under ``header`` comment lines (where the setting came from)."""
    body = yaml.safe_dump({"methods": {method.name: method_entry(method, default_seed)}}, sort_keys=False, default_flow_style=None)
    text = "".join(f"# {line}\n" for line in header) + body
    path = directory / "chosen.yaml"
    write_text_atomically(path, text)
    return path


def summary(rows: list[Row], weight: str | None) -> str:
    """A few lines on the search: how many trials were feasible, the gap range, the chosen row."""
    feasible = [row for row in rows if row["feasible"]]
    gaps = [row["gap"] for row in rows if math.isfinite(row["gap"])]
    lines = [f"{len(rows)} trials, {len(feasible)} feasible; gap {min(gaps):.4f} – {max(gaps):.4f}" if gaps else f"{len(rows)} trials, none finished"]
    for row in rows:
        if row["chosen"]:
            lines.append(f"chosen: trial {row['number']} ({describe(row, weight)}): gap {row['gap']:.4f}, forget {row['forget_acc']:.3f}, "
                         f"retain {row['retain_acc']:.3f}, val {row['val_acc']:.3f}, test {row['test_acc']:.3f}, MIA {row['mia_efficacy']:.3f}")
    return "\n".join(lines)


def describe(params: dict[str, Any], weight: str | None) -> str:
    text = f"lr={params['lr']:g} epochs={params['epochs']}"
    return f"{text} {weight}={params[weight]:g}" if weight else text
