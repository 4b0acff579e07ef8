"""Writing a ``CurveResult``: ``curve_eval.csv``, ``curve_summary.json``, ``curve_metrics.png`` and TensorBoard scalars.

Files are written to a temporary name and renamed into place, so a reader never sees half a file. Along-t scalars
are logged at step round(1000·t) (``t_step``), so TensorBoard's x-axis reads t in thousandths, with a custom-scalars
layout (``curve_layout``) that puts the forget, retain and test accuracies of one curve on one chart.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from unlearn_mc.atomic_write import write_bytes_atomically
from unlearn_mc.curves.evaluate_curve import CurveResult, finite_or_none

CSV_NAME = "curve_eval.csv"
SUMMARY_NAME = "curve_summary.json"
FIGURE_NAME = "curve_metrics.png"
CURVE_CHARTS = (
    ("accuracy: forget, retain, test", ("forget_acc", "retain_acc", "test_acc")),
    ("loss: forget, retain, test", ("forget_loss", "retain_loss", "test_loss")),
    ("MIA efficacy", ("mia_efficacy",)),
)
ACCURACY_LIKE = ("forget_acc", "retain_acc", "test_acc", "val_acc", "test_forget_class_acc", "mia_efficacy", "mia_loss_acc", "avg_gap")


def curve_csv(result: CurveResult) -> str:
    """Column ``t`` then one column per metric, one row per t."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["t", *result.metric_names])
    for t, row in zip(result.ts, result.rows):
        writer.writerow([repr(float(t)), *(repr(float(row[name])) for name in result.metric_names)])
    return buffer.getvalue()


def curve_figure(result: CurveResult):
    """Accuracies (and MIA) vs t on the left, losses vs t on the right with the chords the barriers are measured from."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(figure)
    scores, losses = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for name in result.metric_names:
        values = [row[name] for row in result.rows]
        if name.endswith("_loss"):
            line = losses.plot(result.ts, values, marker=".", label=name)[0]
            if name in ("retain_loss", "forget_loss"):
                losses.plot([0.0, 1.0], [values[0], values[-1]], linestyle="--", color=line.get_color(), linewidth=0.8)
        elif name in ACCURACY_LIKE:
            scores.plot(result.ts, values, marker=".", label=name)
    scores.set(xlabel="t", ylabel="accuracy / MIA", title="metrics along the curve", xlim=(0, 1))
    losses.set(xlabel="t", ylabel="cross-entropy", title="losses (dashed: linear interpolation of the endpoints)", xlim=(0, 1))
    for axes in (scores, losses):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def write_curve_files(result: CurveResult, directory: str | os.PathLike, figure: bool = True) -> dict[str, Path]:
    """Write ``curve_eval.csv``, ``curve_summary.json`` and (with ``figure``) ``curve_metrics.png`` to ``directory``."""
    directory = Path(directory)
    written = {
        "csv": write_bytes_atomically(directory / CSV_NAME, curve_csv(result).encode()),
        "summary": write_bytes_atomically(directory / SUMMARY_NAME, (json.dumps(finite_or_none(result.summary), indent=2) + "\n").encode()),
    }
    if figure:
        buffer = io.BytesIO()
        curve_figure(result).savefig(buffer, format="png")
        written["figure"] = write_bytes_atomically(directory / FIGURE_NAME, buffer.getvalue())
    return written


def t_step(t: float) -> int:
    """The TensorBoard step of the point t of a curve: round(1000·t), so the x-axis reads t in thousandths (0 … 1000);
    two t closer than 0.0005 share a step."""
    return int(round(1000 * float(t)))


def curve_layout(sections: Mapping[str, str]) -> dict[str, dict[str, list]]:
    """A custom-scalars layout (``SummaryWriter.add_custom_scalars``) with one section per curve, given as
    section title → tag prefix: in each, forget, retain and test accuracy on one chart, the three losses on
    another, and MIA efficacy (each chart's tags are the regular expressions ``^<prefix>(name|…)$``)."""
    return {title: {chart: ["Multiline", [f"^{re.escape(prefix)}({'|'.join(names)})$"]] for chart, names in CURVE_CHARTS}
            for title, prefix in sections.items()}


def log_curve(result: CurveResult, loggers: Iterable, step: int = 0, per_t: bool = True, figure: bool = True, layout: bool = True) -> None:
    """Log to every logger: with ``per_t``, ``curve/<metric>`` and ``curve/t`` at step round(1000·t) (``t_step``) and,
    with ``layout``, the custom-scalars layout of this one curve (section ``curve along t``, TensorBoard loggers);
    always ``curve_summary/{retain_barrier, forget_barrier, curve_length, best_t}`` at ``step``; with ``figure``,
    the metrics-vs-t figure ``curve/metrics`` (loggers with ``add_figure``, i.e. TensorBoard)."""
    loggers = list(loggers)
    if per_t:
        for t, row in zip(result.ts, result.rows):
            values = {"curve/t": float(t), **{f"curve/{name}": float(value) for name, value in row.items()}}
            for logger in loggers:
                logger.log_metrics(values, step=t_step(t))
        for logger in loggers:
            experiment = getattr(logger, "experiment", None)
            if layout and hasattr(experiment, "add_custom_scalars"):
                experiment.add_custom_scalars(curve_layout({"curve along t": "curve/"}))
    summary = {f"curve_summary/{name}": float(result.summary[name]) for name in ("retain_barrier", "forget_barrier", "curve_length") if name in result.summary}
    summary["curve_summary/best_t"] = float(result.summary["best"]["t"])
    for logger in loggers:
        logger.log_metrics(summary, step=step)
        experiment = getattr(logger, "experiment", None)
        if figure and hasattr(experiment, "add_figure"):
            experiment.add_figure("curve/metrics", curve_figure(result), global_step=step, close=False)
        logger.save()
