"""The study's figures: barrier heatmaps, straight paths from a fixed model, relearning curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from unlearn_mc.atomic_write import atomic_path
from unlearn_mc.study.plan import curve_stage_id  # noqa: E402
from unlearn_mc.study.spec import StudySpec  # noqa: E402
from unlearn_mc.study.tables import Row  # noqa: E402


def heatmap_figure(names: list[str], matrices: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]], title: str, path: Path) -> None:
    """One panel per barrier; each cell the value, or with several seeds (a (mean, half-width) pair) ``mean ± half-width``."""
    figure, axes = plt.subplots(1, 2, figsize=(4 + 1.4 * len(names), 2 + 0.7 * len(names)))
    for axis, (key, value) in zip(axes, matrices.items()):
        matrix, half = value if isinstance(value, tuple) else (value, None)
        image = axis.imshow(matrix, cmap="viridis")
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set_yticks(range(len(names)), names)
        axis.set_title(key.replace("_", " ") + ("\n(mean ± 95% interval)" if half is not None else ""), fontsize=9 if half is not None else None)
        for i in range(len(names)):
            for j in range(len(names)):
                if np.isnan(matrix[i, j]):
                    continue
                text = f"{matrix[i, j]:.3f}"
                if half is not None and np.isfinite(half[i, j]) and i != j:
                    text += f"\n±{half[i, j]:.3f}"
                axis.text(j, i, text, ha="center", va="center", color="white", fontsize=6 if half is not None else 7)
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)


def paths_figure(study: StudySpec, per_seed_results: list[dict[str, dict]], source: str, path: Path) -> None:
    """Forget and retain accuracy along the straight line from ``source`` to each method; with several seeds the mean
    over seeds, shaded between the lowest and the highest seed."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for method in study.methods:
        found = [results[stage] for results in per_seed_results if (stage := curve_stage_id("line", source, method)) in results]
        if not found:
            continue
        ts = found[0]["curve"]["ts"]
        for axis, metric in zip(axes, ("forget_acc", "retain_acc")):
            values = np.array([[row[metric] for row in result["curve"]["rows"]] for result in found], dtype=np.float64)
            line, = axis.plot(ts, values.mean(axis=0), marker="o", markersize=3, label=method)
            if len(found) > 1:
                axis.fill_between(ts, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    for axis, metric in zip(axes, ("forget_acc", "retain_acc")):
        axis.set_xlabel(f"t ({source} → method)")
        axis.set_ylabel(metric + (f" (mean of {len(per_seed_results)} seeds, band: min–max)" if len(per_seed_results) > 1 else ""))
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    _save(figure, path)


def relearn_steps(row: Row) -> list[int]:
    """The step counts s of a relearning row's ``forget_acc_step_s`` columns, in order."""
    return sorted(int(key.rsplit("_", 1)[-1]) for key in row if key.startswith("forget_acc_step_") and not key.endswith("_ci"))


def relearn_figure(rows: list[Row], path: Path) -> None:
    """Held-out forget accuracy against relearning steps, one line per model and a panel per attack; error bars are
    the 95% intervals over seeds when the rows have them."""
    attacks = list(dict.fromkeys(row["attack"] for row in rows))
    figure, axes = plt.subplots(1, len(attacks), figsize=(6 * len(attacks), 3.8), squeeze=False)
    for axis, attack in zip(axes[0], attacks):
        for row in rows:
            if row["attack"] != attack:
                continue
            steps = relearn_steps(row)
            label = f"{row['curve']}: {row['model']}" if row["curve"] else row["model"]
            errors = [row.get(f"forget_acc_step_{s}_ci", np.nan) for s in steps]
            axis.errorbar(steps, [row[f"forget_acc_step_{s}"] for s in steps], yerr=None if np.all(np.isnan(errors)) else errors,
                          marker="o", markersize=3, capsize=2, label=label,
                          linestyle="--" if row["model"] in ("original", "retrain") else "-")
        axis.set_xlabel("relearning steps on part of D_f" if attack == "forget" else "fine-tuning steps on D_r only")
        axis.set_ylabel("accuracy on the held-out part of D_f")
        axis.set_title(f"attack: {attack}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=5)
    figure.tight_layout()
    _save(figure, path)


def _save(figure, path: Path) -> None:
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=110, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(figure)
