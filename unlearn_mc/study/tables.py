"""Tables as lists of row dicts, written as CSV and rendered as Markdown."""

from __future__ import annotations

import csv
import math
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from unlearn_mc.atomic_write import atomic_path, write_text_atomically

Row = dict[str, Any]
T = TypeVar("T")


def format_cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4f}" if math.isfinite(value) else "non-finite"
    if value is None:
        return "–"
    return str(value)


def markdown_table(rows: Sequence[Row]) -> str:
    """A GitHub-flavoured Markdown table with the keys of the first row as columns; a column ``m`` with a
    ``m_ci`` column beside it (a study over several seeds) reads ``mean ± half-width`` in one cell."""
    if not rows:
        return "_(empty)_"
    columns = [column for column in rows[0] if not (column.endswith("_ci") and column[: -len("_ci")] in rows[0])]

    def cell(row: Row, column: str) -> str:
        text = format_cell(row.get(column))
        half = row.get(f"{column}_ci")
        if isinstance(half, float) and math.isfinite(half) and text not in ("–", "non-finite"):
            text += f" ± {format_cell(half)}"
        return text

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row, column) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """Write the rows as CSV through a temporary file; a column some rows lack is empty there."""
    columns = list(dict.fromkeys(column for row in rows for column in row))  # every row's columns, first seen first
    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def failure_sentence(error: BaseException) -> str:
    """An exception as one sentence: the message of an ``UnlearnMCError``, else the type and the message's first sentence."""
    from unlearn_mc.errors import UnlearnMCError, one_sentence

    text = one_sentence(str(error)) if str(error).strip() else "no message."
    if len(text) > 300:
        text = text[:297].rstrip() + "…."
    return text if isinstance(error, UnlearnMCError) else f"{type(error).__name__}: {text}"


class Failures:
    """Which parts of a study's analysis failed, and why.

    ``attempt(name, build)`` returns ``build()``, or, when it raises, records the exception as one sentence
    (with its traceback for the log) and returns None: no analysis can end a study.
    """

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}
        self.tracebacks: dict[str, str] = {}

    def attempt(self, name: str, build: Callable[[], T]) -> T | None:
        try:
            return build()
        except Exception as error:  # noqa: BLE001 - an analysis's failure is reported, not raised
            self.reasons[name] = failure_sentence(error)
            self.tracebacks[name] = traceback.format_exc()
            return None

    def write_log(self, path: Path) -> None:
        """Write every traceback to ``path`` (atomically), or remove a stale log when nothing failed."""
        if not self.tracebacks:
            path.unlink(missing_ok=True)
            return
        write_text_atomically(path, "\n".join(f"== {name}\n{text}" for name, text in self.tracebacks.items()))
