"""Tables as lists of row dicts, written as CSV and rendered as Markdown."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def format_cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4f}"
    if value is None:
        return "–"
    return str(value)


def markdown_table(rows: Sequence[Row]) -> str:
    """A GitHub-flavoured Markdown table with the keys of the first row as columns."""
    if not rows:
        return "_(empty)_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(format_cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """Write the rows as CSV through a temporary file."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    columns = list(rows[0]) if rows else []
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)
