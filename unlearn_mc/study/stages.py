"""A study's stages: one unit of work each, its id and its folder ``<output_dir>/stages/<id>/``.

``original``, ``retrain``, ``method-<name>``, ``curve-<family>-<start>--<end>`` (the straight lines of
``paths_from`` use the family name ``line``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

PATH_FAMILY_NAME = "line"


def endpoint_stage_id(name: str) -> str:
    return name if name in ("original", "retrain") else f"method-{name}"


def curve_stage_id(family: str, start: str, end: str) -> str:
    return f"curve-{family}-{start}--{end}"


def stage_directory(root: Path, stage_id: str) -> Path:
    """``<root>/stages/<stage_id>``: the stage's ``config.yaml``, ``model.ckpt`` and ``result.json``."""
    return root / "stages" / stage_id


def stage_checkpoint(root: Path, stage_id: str) -> Path:
    """``<root>/stages/<stage_id>/model.ckpt``: the full Lightning checkpoint of a ``fit`` stage."""
    return stage_directory(root, stage_id) / "model.ckpt"


def stage_result_path(root: Path, stage_id: str) -> Path:
    """``<root>/stages/<stage_id>/result.json``: written last, so its presence marks a finished stage."""
    return stage_directory(root, stage_id) / "result.json"


class CurveRecord(TypedDict):
    """A curve stage's evaluation along t: ``rows[i]`` holds every metric at ``ts[i]``; ``summary`` the barriers,
    the MCU condition and the best t (``unlearn_mc.curves.summary``)."""

    ts: list[float]
    rows: list[dict[str, float]]
    summary: dict[str, Any]


class StageResult(TypedDict, total=False):
    """A finished stage's ``result.json``: always ``stage``, ``kind``, ``info``, ``config``, ``config_sha256`` and
    ``wall_s``; a curve adds ``curve``; any other stage its model's ``metrics`` (forget/retain/test accuracy, MIA …),
    ``runtime_s``, ``stop_reason`` and ``epochs``."""

    stage: str
    kind: str
    info: dict[str, Any]
    config: dict[str, Any]
    config_sha256: str
    wall_s: float
    curve: CurveRecord
    metrics: dict[str, float]
    runtime_s: float
    stop_reason: str | None
    epochs: int


@dataclass
class Stage:
    """One unit of work: ``command`` (``fit`` or ``validate``) on the LightningCLI ``config``."""

    id: str
    kind: str  # base | method | curve | shadow
    command: str
    config: dict[str, Any]
    depends: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def directory(self, root: Path) -> Path:
        return stage_directory(root, self.id)

    def checkpoint(self, root: Path) -> Path:
        return stage_checkpoint(root, self.id)
