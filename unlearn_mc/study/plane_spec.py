"""``analyses.plane`` of a study file: its keys, defaults and validation (read by ``load_study``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.plane.basis import check_grid, check_margin

PLANE_KEYS = {"models", "grid", "margin", "mia_loss_acc"}
DEFAULT_GRID, DEFAULT_MARGIN = 11, 0.2


def check_models(models: Any, endpoints: Sequence[str], where: str) -> list[str]:
    """Three different endpoint names of the study, else one sentence naming what is wrong and what is valid."""
    if not isinstance(models, (list, tuple)) or len(models) != 3:
        given = f"{len(models)} ({' '.join(map(str, models))})" if isinstance(models, (list, tuple)) else repr(models)
        raise UnlearnMCError(f"{where} takes exactly three models, got {given}; e.g. original retrain {endpoints[-1]}.")
    for name in models:
        if name not in endpoints:
            raise UnlearnMCError(f"{where} names model {name!r}, which the study does not train; use three of {', '.join(endpoints)}.")
    if len(set(models)) < 3:
        raise UnlearnMCError(f"{where} names {list(models)}, a model twice; three different models span a plane.")
    return list(models)


def check_plane_spec(spec: Any, endpoints: Sequence[str]) -> None:
    """Validate ``analyses.plane`` of a study file (called by ``load_study``, before any training)."""
    if not isinstance(spec, dict):
        raise UnlearnMCError("analyses.plane must be a mapping, e.g. {models: [original, retrain, <method>], grid: 11}.")
    unknown = sorted(set(spec) - PLANE_KEYS)
    if unknown:
        raise UnlearnMCError(f"analyses.plane has unknown key(s) {unknown}; allowed: {', '.join(sorted(PLANE_KEYS))}.")
    check_models(spec.get("models"), endpoints, "analyses.plane.models")
    check_grid(spec.get("grid", DEFAULT_GRID), "analyses.plane.grid")
    check_margin(spec.get("margin", DEFAULT_MARGIN), "analyses.plane.margin")
    if not isinstance(spec.get("mia_loss_acc", False), bool):
        raise UnlearnMCError(f"analyses.plane.mia_loss_acc={spec['mia_loss_acc']!r} must be true (also the loss attack at every point) or false.")
