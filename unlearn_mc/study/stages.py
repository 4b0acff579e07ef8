"""A study's stages: one unit of work each, its id and its folder ``<output_dir>/stages/<id>/``.

``original``, ``retrain``, ``method-<name>``, ``curve-<family>-<start>--<end>`` (the straight lines of
``paths_from`` use the family name ``line``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
