"""A plane's folder: ``plane.csv``, ``plane_models.csv``, ``plane.npz``, ``plane.png`` and ``plane.json``, and its TensorBoard image.

The folder is written under a temporary name and renamed into place when complete, so it either holds a finished
plane or does not exist; ``plane.json`` records the settings (``config``) it was made with, so that a later run
reuses a finished plane with the same settings and refuses one with other settings (``check_plane_folder``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from unlearn_mc.atomic_write import atomic_path
from unlearn_mc.curves.evaluate_curve import finite_or_none
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.plane.evaluate_plane import PlaneResult

FILES = ("plane.csv", "plane_models.csv", "plane.npz", "plane.png", "plane.json")


def plane_rows(result: PlaneResult) -> list[dict[str, float]]:
    """One row per grid point, ``x`` then ``y`` then every metric; y varies slowest (rows j, columns i)."""
    return [{"x": float(x), "y": float(y), **{name: float(result.grid[name][j, i]) for name in result.metric_names}}
            for j, y in enumerate(result.ys) for i, x in enumerate(result.xs)]


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(rows[0]))
    writer.writerows([[value if isinstance(value, str) else repr(float(value)) for value in row.values()] for row in rows])
    return buffer.getvalue()


def plane_arrays(result: PlaneResult) -> dict[str, np.ndarray]:
    """What ``plane.npz`` holds: ``x`` (G), ``y`` (G), each metric (G × G, ``[j, i]`` at (x_i, y_j)), the models as
    ``model_names``, ``model_x``, ``model_y``, ``model_<metric>``, and a curve's ``path_t``, ``path_x``, ``path_y``, ``path_off_plane``."""
    arrays = {"x": result.xs, "y": result.ys, **result.grid, "model_names": np.array(result.names)}
    for key in ("x", "y", *result.metric_names):
        arrays[f"model_{key}"] = np.array([model[key] for model in result.models], dtype=np.float64)
    for key, values in (result.path or {}).items():
        arrays[f"path_{key}"] = np.asarray(values, dtype=np.float64)
    return arrays


def read_plane_record(directory: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(directory) / "plane.json"
    return json.loads(path.read_text()) if path.is_file() else None


def check_plane_folder(directory: str | os.PathLike, config: dict[str, Any]) -> bool:
    """True when ``directory`` holds a finished plane made with ``config`` (reuse it), False when it does not exist;
    one sentence when it holds a plane made with other settings, or something else."""
    directory = Path(directory)
    if not directory.exists():
        return False
    record = read_plane_record(directory)
    if record is None:
        raise UnlearnMCError(f"{str(directory)!r} exists but holds no finished plane (no plane.json); move it away to draw the plane there.")
    old = record.get("config", {})
    if old != config:
        key = next(key for key in sorted(set(old) | set(config)) if old.get(key) != config.get(key))
        raise UnlearnMCError(f"the plane in {str(directory)!r} was made with other settings ({key} was {old.get(key)!r}, now "
                             f"{config.get(key)!r}); delete that folder to redo it, or keep it and use its settings.")
    return True


def write_plane_files(result: PlaneResult, directory: str | os.PathLike, config: dict[str, Any] | None = None) -> Path:
    """Write the plane's folder (``FILES``) under a temporary name, then rename it to ``directory``; an existing
    ``directory`` is refused, never overwritten. ``config`` is recorded in ``plane.json``."""
    from unlearn_mc.plane.figure import plane_figure

    directory = Path(directory)
    if directory.exists():
        raise UnlearnMCError(f"{str(directory)!r} already exists; a finished plane is never overwritten (delete it to redo it).")
    with atomic_path(directory) as temporary:
        temporary.mkdir()
        (temporary / "plane.csv").write_text(_csv(plane_rows(result)))
        (temporary / "plane_models.csv").write_text(_csv([{"model": m["name"], **{k: v for k, v in m.items() if k != "name"}} for m in result.models]))
        np.savez(temporary / "plane.npz", **plane_arrays(result))
        plane_figure(result).savefig(temporary / "plane.png", dpi=110)
        record = {"config": config or {}, "names": result.names, "models": result.models, "settings": result.settings,
                  "timing": result.timing, "path": result.path is not None}
        (temporary / "plane.json").write_text(json.dumps(finite_or_none(record), indent=1) + "\n")
    return directory


def load_plane(directory: str | os.PathLike) -> PlaneResult:
    """The ``PlaneResult`` of a finished plane folder."""
    directory = Path(directory)
    record = read_plane_record(directory) or {}
    with np.load(directory / "plane.npz") as arrays:
        names = [str(name) for name in arrays["model_names"]]
        metrics = [key[len("model_"):] for key in arrays.files if key.startswith("model_") and key not in ("model_names", "model_x", "model_y")]
        models = [{"name": name, **{key: float(arrays[f"model_{key}"][j]) for key in ("x", "y", *metrics)}} for j, name in enumerate(names)]
        path = {key[len("path_"):]: arrays[key].tolist() for key in arrays.files if key.startswith("path_")} or None
        return PlaneResult(names, arrays["x"], arrays["y"], {name: arrays[name] for name in metrics}, models, path,
                           record.get("settings", {}), record.get("timing", {}))


def log_plane(result: PlaneResult, logdir: str | os.PathLike, tag: str) -> None:
    """The plane's figure as the image ``tag`` (TensorBoard's Images tab) in the run ``logdir``."""
    from torch.utils.tensorboard import SummaryWriter

    from unlearn_mc.plane.figure import plane_figure

    with SummaryWriter(str(logdir)) as writer:
        writer.add_figure(tag, plane_figure(result), global_step=0, close=True)


def finish_plane(directory: str | os.PathLike, config: dict[str, Any], compute, logdir: str | os.PathLike | None = None,
                 tag: str | None = None) -> tuple[dict[str, Any], bool]:
    """Reuse the finished plane in ``directory`` when it was made with ``config``; otherwise ``compute()`` the
    ``PlaneResult``, write the folder and (with ``logdir``) its figure to TensorBoard as image ``tag``.
    Returns the folder's ``plane.json`` record and whether it was reused; other settings are refused (``check_plane_folder``)."""
    if check_plane_folder(directory, config):
        return read_plane_record(directory), True
    result = compute()
    write_plane_files(result, directory, config)
    if logdir is not None:
        log_plane(result, logdir, tag or f"plane/{Path(directory).name}")
    return read_plane_record(directory), False


def plane_note(directory: str | os.PathLike, record: dict[str, Any], reused: bool = False) -> str:
    """One line: where the figure is, G, the points, the wall time and the time per point against one evaluation pass."""
    settings, timing = record["settings"], record["timing"]
    batching = f"{settings['points_per_batch']} points per forward (vmap)" if settings["mode"] == "vmap" else "one point per forward"
    return (f"plane: {Path(directory) / 'plane.png'} — {settings['grid']}×{settings['grid']} grid + 3 models = {timing['points']} points "
            f"in {timing['wall_s']:.1f} s, {timing['per_point_s']:.3f} s per point = {timing['per_point_over_eval_pass']:.2f} × one "
            f"evaluation pass ({timing['eval_pass_s']:.3f} s), {batching}" + ("; finished earlier, reused" if reused else ""))
