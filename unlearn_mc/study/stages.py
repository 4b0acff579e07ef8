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
        return root / "stages" / self.id

    def checkpoint(self, root: Path) -> Path:
        return self.directory(root) / "model.ckpt"
