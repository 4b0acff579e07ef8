"""The unlearning landscape on the plane through three models: forget/retain/test loss and accuracy and MIA on a grid.

``evaluate_plane`` takes any network and three checkpoints of it (paths, modules or state_dicts);
``curve_plane`` draws a trained curve on the plane of its control points, with the curve's path projected on it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from unlearn_mc.checkpoints import WeightSource, network_state_from_source
from unlearn_mc.curves.curve import curve_of
from unlearn_mc.curves.evaluate_curve import labelled
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.evaluation.evaluate import evaluate_model
from unlearn_mc.plane.basis import PlaneBasis, check_grid, check_margin, grid_axes
from unlearn_mc.plane.points import PlaneNetwork, default_points_per_batch

PATH_POINTS = 61


@dataclass
class PlaneResult:
    """Metrics on the G×G grid of a plane and at its three models.

    ``grid[metric][j, i]`` is the value at (``xs[i]``, ``ys[j]``); ``models`` holds, per model, its ``name``, its
    coordinates ``x``, ``y`` and its metrics, evaluated there as a point of the plane (BatchNorm recalibrated like
    every grid point); ``path`` (a curve's φ(t) projected: ``t``, ``x``, ``y`` and the distance ``off_plane``) or None.
    """

    names: list[str]
    xs: np.ndarray
    ys: np.ndarray
    grid: dict[str, np.ndarray]
    models: list[dict[str, Any]]
    path: dict[str, list[float]] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)

    @property
    def metric_names(self) -> list[str]:
        return list(self.grid)


def _timed_pass(net: nn.Module, state: Mapping[str, Tensor], loaders: Mapping, device: torch.device, label_key, loss_attack: bool) -> float:
    """Seconds of one plain evaluation pass (``evaluate_model`` of the first model with its own statistics, the same
    metrics as the plane's), the best of three: the unit of cost."""
    plain = copy.deepcopy(net)
    plain.load_state_dict(state)
    plain, loaders = plain.to(device).eval(), labelled(loaders, label_key)
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        evaluate_model(plain, loaders, device, loss_attack=loss_attack)
        seconds.append(time.perf_counter() - started)
    return min(seconds)


def _evaluate(net: nn.Module, states: list[dict[str, Tensor]], names: list[str], loaders: Mapping, grid: int, margin: float,
              bn_loader, bn_batches: int | None, points_per_batch: int | None, device, label_key, progress: bool, mia_loss_acc: bool,
              path: Callable[[float], Mapping[str, Tensor]] | None) -> PlaneResult:
    grid, margin = check_grid(grid), check_margin(margin)
    if bn_batches is not None and (isinstance(bn_batches, bool) or not isinstance(bn_batches, int) or bn_batches < 1):
        raise UnlearnMCError(f"bn_batches={bn_batches!r} must be at least 1 (or None for the whole loader).")
    device = torch.device(device) if device is not None else torch.device("cpu")
    plane = PlaneNetwork(net, states, names).to(device)
    if plane.has_batchnorm and bn_loader is None:
        raise UnlearnMCError(f"{type(net).__name__} has BatchNorm layers, whose statistics a point of the plane does not have; "
                             "give bn_loader (e.g. the retain loader) to recalibrate them at every point.")
    basis = PlaneBasis.through(*plane.matrix, names=names)
    marks = [basis.project(vector)[:2] for vector in plane.matrix]
    projected = None
    if path is not None:
        ts = np.linspace(0.0, 1.0, PATH_POINTS)
        x, y, off = zip(*(basis.project(plane.layout.flatten(path(float(t)))) for t in ts))
        projected = {"t": ts.tolist(), "x": list(x), "y": list(y), "off_plane": list(off)}
    xs, ys = grid_axes(marks + (list(zip(projected["x"], projected["y"])) if projected else []), grid, margin)
    mesh_x, mesh_y = np.meshgrid(xs, ys)  # [j, i] = (xs[i], ys[j])
    coefficients = np.concatenate([basis.coefficients(mesh_x.ravel(), mesh_y.ravel()), np.eye(3)])
    batch = points_per_batch if points_per_batch is not None else default_points_per_batch(plane.layout.size)
    if batch < 1:
        raise UnlearnMCError(f"points_per_batch={batch!r} must be at least 1.")
    started = time.perf_counter()
    with tqdm(total=len(coefficients), desc="plane", unit="point", disable=not progress) as bar:
        rows = plane.evaluate(coefficients, loaders, bn_loader, bn_batches, batch, label_key, mia_loss_acc, progress=bar.update)
    wall = time.perf_counter() - started
    unit = _timed_pass(net, states[0], loaders, device, label_key, mia_loss_acc)  # after the grid, so that neither pays the first call's imports
    metrics = list(rows[0])
    values = {name: np.array([row[name] for row in rows[:grid * grid]], dtype=np.float64).reshape(grid, grid) for name in metrics}
    models = [{"name": name, "x": x, "y": y, **rows[grid * grid + j]} for j, (name, (x, y)) in enumerate(zip(names, marks))]
    settings = {"grid": grid, "margin": margin, "bn_batches": bn_batches, "mia_loss_acc": mia_loss_acc, "points_per_batch": batch if plane.vmap_error is None else 1,
                "mode": "vmap" if batch > 1 and plane.vmap_error is None else "one point per forward", "vmap_error": plane.vmap_error,
                "parameters": plane.layout.size, "distances": {"u_norm": basis.u_norm, "v_along_u": basis.v_along_u, "v_perp_norm": basis.v_perp_norm}}
    timing = {"points": len(coefficients), "wall_s": wall, "per_point_s": wall / len(coefficients), "eval_pass_s": unit,
              "per_point_over_eval_pass": wall / len(coefficients) / unit}
    return PlaneResult(list(names), xs, ys, values, models, projected, settings, timing)


def evaluate_plane(net: nn.Module, models: Sequence[WeightSource], loaders: Mapping, grid: int = 11, margin: float = 0.2,
                   bn_loader=None, bn_batches: int | None = None, names: Sequence[str] | None = None,
                   points_per_batch: int | None = None, device: torch.device | str | None = None,
                   label_key: str | int | None = None, progress: bool = False, mia_loss_acc: bool = False) -> PlaneResult:
    """Evaluate the plane θ(x, y) = θ_A + x·û + y·v̂ through three models of ``net`` (see ``PlaneBasis``).

    The grid has G = ``grid`` values per axis spanning the models' coordinates plus ``margin`` times the larger of the
    two axes' spreads on each side (``grid_axes``); at each of the G×G points and at the three models, BatchNorm is recalibrated over ``bn_loader``
    (at most ``bn_batches`` batches; required when ``net`` has BatchNorm), then ``UnlearningMetrics`` gives every
    split's loss and accuracy and ``mia_efficacy`` (with ``mia_loss_acc=True`` also the loss attack's ``mia_loss_acc``,
    whose cross-validated fits would cost more than the rest of a point). ``points_per_batch`` points share one forward
    through ``torch.func.vmap`` (default ``default_points_per_batch``; 1: no vmap).

    Args:
        models: θ_A, θ_B, θ_C: checkpoint paths, ``nn.Module``s or state_dicts of ``net``'s architecture.
        loaders: the evaluation loaders by split name (``forget``, ``retain``, ``test`` …).
        names: labels of the three models (default ``A``, ``B``, ``C``).
        progress: show a progress bar over the points.
    """
    if len(models) != 3:
        raise UnlearnMCError(f"a plane passes through exactly three models, got {len(models)}; give three checkpoints.")
    names = list(names) if names is not None else ["A", "B", "C"]
    states = [network_state_from_source(net, model, f"model {name!r}") for model, name in zip(models, names)]
    return _evaluate(net, states, names, loaders, grid, margin, bn_loader, bn_batches, points_per_batch, device, label_key, progress,
                     mia_loss_acc, None)


def curve_plane(curve, loaders: Mapping, grid: int = 11, margin: float = 0.2, bn_loader=None, bn_batches: int | None = None,
                names: Sequence[str] | None = None, points_per_batch: int | None = None, device: torch.device | str | None = None,
                progress: bool = False, mia_loss_acc: bool = False, label_key: str | int | None = None) -> PlaneResult:
    """A trained ``Curve`` (or ``CurveModule``, whose label_key is then the default) on the plane of its control points
    θ_0, θ_m, θ_{n−1} (m = ⌊(n−1)/2⌋, the bend of a 3-point curve), with φ(t) projected for 61 values of t (``path``;
    its distance to the plane is 0 for a 3-point curve).

    Fixed tensors (frozen parameters, buffers other than BatchNorm's) of the bend are the curve's at t = m/(n−1).
    Everything else as ``evaluate_plane``.
    """
    curve, label_key = curve_of(curve, label_key)
    count = curve.family.num_bends
    if count < 3:
        raise UnlearnMCError(f"the curve has {count} control points, which span no plane; draw a curve with a bend (num_bends ≥ 3).")
    middle = (count - 1) // 2
    net = curve.network_at(0.0)

    def state_at(index: int) -> dict[str, Tensor]:
        state = {key: value.clone() for key, value in curve.state_dict_at(0.0).items()}
        one_hot = torch.zeros(count, dtype=curve.endpoints.dtype, device=curve.device)
        one_hot[index] = 1.0
        state.update(curve.layout.with_aliases(curve.layout.unflatten(curve.combine(one_hot))))
        state.update(curve.fixed_at(index / (count - 1)))
        return {key: value.detach().cpu() for key, value in state.items() if key in curve.state_keys}

    states = [state_at(0), state_at(middle), state_at(count - 1)]
    names = list(names) if names is not None else ["t=0", f"bend {middle}", "t=1"]

    def path(t: float) -> dict[str, Tensor]:
        return {key: value.cpu() for key, value in curve.layout.unflatten(curve.combine(curve.coefficients(t))).items()}

    return _evaluate(net, states, names, loaders, grid, margin, bn_loader, bn_batches, points_per_batch, device,
                     label_key, progress, mia_loss_acc, path)
