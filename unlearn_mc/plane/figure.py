"""Contour maps of a ``PlaneResult``: one panel per metric, the three models marked and labelled.

Losses share one logarithmic colour scale (the range of all loss panels), accuracies and MIA efficacy share the
linear scale [0, 1], so panels of one kind compare at a glance; a curve's path, when there is one, is drawn on
every panel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unlearn_mc.plane.evaluate_plane import PlaneResult

LOSSES = ("forget_loss", "retain_loss", "test_loss")
SCORES = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
LEVELS = 21


def _loss_norm(result: PlaneResult, names: Sequence[str]):
    """LogNorm over [max(min, max·1e-6), max] of the finite positive values of every loss panel."""
    from matplotlib.colors import LogNorm

    values = np.concatenate([result.grid[name].ravel() for name in names] + [[model[name] for model in result.models] for name in names])
    positive = values[np.isfinite(values) & (values > 0)]
    if not len(positive):
        return LogNorm(1e-3, 1.0)
    high = float(positive.max())
    low = max(float(positive.min()), high * 1e-6)
    return LogNorm(low, high if high > low else low * 10)


def _panel(axes, result: PlaneResult, name: str, norm, levels, cmap: str):
    from matplotlib.patheffects import withStroke

    values = np.ma.masked_invalid(result.grid[name])
    if norm is not None:
        values = np.ma.masked_less_equal(values, 0.0)
    filled = axes.contourf(result.xs, result.ys, values, levels=levels, norm=norm, cmap=cmap, extend="both")
    if result.path is not None:
        axes.plot(result.path["x"], result.path["y"], color="white", linewidth=1.5)
    outline = [withStroke(linewidth=2.5, foreground="white")]
    for model in result.models:
        axes.plot(model["x"], model["y"], marker="o", markersize=6, color="black", markeredgecolor="white")
        axes.annotate(f"{model['name']}\n{model[name]:.3g}", (model["x"], model["y"]), textcoords="offset points", xytext=(5, 4),
                      fontsize=7, color="black", path_effects=outline)
    axes.set_title(name, fontsize=9)
    axes.set_aspect("equal")
    axes.tick_params(labelsize=7)
    axes.set_xlabel("x (distance along û)", fontsize=7)
    axes.set_ylabel("y (distance along v̂)", fontsize=7)
    return filled


def plane_figure(result: PlaneResult, losses: Sequence[str] = LOSSES, scores: Sequence[str] = SCORES):
    """A matplotlib ``Figure``: the loss panels on the first row (log colour scale shared by all of them), the
    accuracy and MIA panels on the second (linear scale [0, 1] shared); x and y are distances in weight space."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    rows = [names for names in ([n for n in losses if n in result.grid], [n for n in scores if n in result.grid]) if names]
    columns = max(len(names) for names in rows)
    figure = Figure(figsize=(3.1 * columns + 1.0, 3.3 * len(rows) + 0.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for subfigure, names in zip(np.atleast_1d(figure.subfigures(len(rows), 1)), rows):
        is_loss = names[0].endswith("_loss")
        norm = _loss_norm(result, names) if is_loss else None
        levels = np.geomspace(norm.vmin, norm.vmax, LEVELS) if is_loss else np.linspace(0.0, 1.0, LEVELS)
        axes = subfigure.subplots(1, len(names), squeeze=False)[0]
        filled = [_panel(axis, result, name, norm, levels, "magma_r" if is_loss else "viridis") for axis, name in zip(axes, names)]
        bar = subfigure.colorbar(filled[-1], ax=list(axes), shrink=0.9, format=FormatStrFormatter("%.3g"))
        bar.set_label("cross-entropy (log scale)" if is_loss else "accuracy / MIA efficacy", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    grid = result.settings.get("grid", len(result.xs))
    figure.suptitle(f"plane through {', '.join(result.names)} ({grid}×{grid} grid, BatchNorm recalibrated at every point)", fontsize=10)
    return figure
