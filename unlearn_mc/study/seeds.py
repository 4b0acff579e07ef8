"""A study over several seeds: one replica of the study per seed, and tables of mean ± a 95% interval across them.

A study with ``seeds: [s_1, …, s_n]`` (n > 1) runs every stage once per seed, each replica in
``<output_dir>/seeds/seed-<s>/`` with its own stages, analyses and report; the data split is the same in
every replica (it depends on the data settings only), so the intervals cover the randomness of training
(initialisation, batch order, augmentation, the methods' random draws), not the choice of the forget set.
A study with one seed is its own single replica, in ``<output_dir>`` itself, as before.

Across replicas every numeric column m of a table becomes the mean m̄ = (1/n)·Σ_k m_k beside ``m_ci``, the
half-width of the two-sided 95% Student-t interval of that mean, t_{0.975, n−1}·s/√n with s the sample standard
deviation (``scipy.stats.t``); a yes/no column becomes the fraction of seeds where it holds; ``n_seeds`` counts
the seeds behind each row.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.tables import Row

CONFIDENCE = 0.95
# the columns that name a row of each table; a row of one seed is matched to the rows of the others by them
ROW_KEYS = {
    "methods": ("model", "method"),
    "curves": ("curve", "family", "start", "end", "best_by"),
    "intermediate_points": ("curve",),
    "bn_recalibration": ("model", "curve"),
    "ensemble": ("curve", "model"),
    "relearn": ("curve", "model", "attack"),
    "lira": ("curve", "model", "attack"),
}
PATH_KEYS = ("method",)  # paths_from_<source>


def seed_replicas(study: StudySpec) -> list[StudySpec]:
    """One study per seed: the study itself when it has one seed, else a copy per seed s with ``seed = s``, each method's
    own seed for that position, and ``output_dir = <output_dir>/seeds/seed-<s>``."""
    if len(study.seeds) == 1:
        return [study]
    replicas = []
    for position, seed in enumerate(study.seeds):
        methods = {name: dataclasses.replace(method, seed=method.seeds[position], seeds=[method.seeds[position]])
                   for name, method in study.methods.items()}
        replicas.append(dataclasses.replace(study, seed=seed, seeds=[seed], methods=methods,
                                            output_dir=study.output_dir / "seeds" / f"seed-{seed}"))
    return replicas


def interval_half_width(values: Sequence[float], confidence: float = CONFIDENCE) -> float:
    """t_{(1+confidence)/2, n−1} · s / √n for the n finite values (s the sample standard deviation); NaN when n < 2."""
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if len(finite) < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + confidence / 2, len(finite) - 1) * finite.std(ddof=1) / math.sqrt(len(finite)))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _kind(values: list[Any]) -> str:
    """How a column is summarised over seeds: ``number``, ``flag`` (yes/no), or ``text``."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present):
        return "flag"
    if present and all(_is_number(v) for v in present):
        return "number"
    return "text"


def _text(values: list[Any]) -> Any:
    """The value when every seed agrees, else each distinct value with its count, e.g. ``ok ×2, collapsed ×1``."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) == 1:
        return distinct[0]
    return ", ".join(f"{'–' if v is None else v} ×{values.count(v)}" for v in distinct)


def aggregate_rows(per_seed: Sequence[Sequence[Row]], keys: Sequence[str]) -> list[Row]:
    """The rows of several seeds' tables merged by their ``keys`` columns, in first-seen order: per numeric column m
    the mean over the seeds that have a finite value, and ``m_ci`` (see the module docstring); per yes/no column the
    fraction of seeds where it holds; text columns kept when all seeds agree; then ``n_seeds``. A column's kind is
    decided over the whole table, so every merged row has the same columns (a seed without a value counts as missing)."""
    groups: dict[tuple, list[Row]] = {}
    for rows in per_seed:
        for row in rows:
            groups.setdefault(tuple(row.get(key) for key in keys), []).append(row)
    every_row = [row for group in groups.values() for row in group]
    columns = list(dict.fromkeys(column for row in every_row for column in row))
    # a per-seed interval (e.g. lira's bootstrap auc_ci) gives way to the interval across seeds
    columns = [c for c in columns if not (c.endswith("_ci") and c[: -len("_ci")] in columns)]
    kinds = {column: _kind([row.get(column) for row in every_row]) for column in columns if column not in keys}
    merged = []
    for group in groups.values():
        out: Row = {}
        for column in columns:
            values = [row.get(column) for row in group]
            if column in keys:
                out[column] = values[0]
            elif kinds[column] == "number":
                finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
                out[column] = float(np.mean(finite)) if finite else math.nan
                out[f"{column}_ci"] = interval_half_width(finite)
            elif kinds[column] == "flag":
                flags = [bool(v) for v in values if v is not None]
                out[column] = sum(flags) / len(flags) if flags else math.nan
            else:
                out[column] = _text(values)
        out["n_seeds"] = len(group)
        merged.append(out)
    return merged


def aggregate_tables(per_seed: Sequence[dict[str, list[Row]]]) -> dict[str, list[Row]]:
    """Every table that any seed built, aggregated across the seeds (``aggregate_rows``) by its row keys."""
    names = list(dict.fromkeys(name for tables in per_seed for name in tables))
    aggregated = {}
    for name in names:
        keys = ROW_KEYS.get(name) or (PATH_KEYS if name.startswith("paths_from_") else None)
        if keys is None:
            continue  # a table without declared row keys is not averaged (it stays in each seed's report)
        aggregated[name] = aggregate_rows([tables.get(name, []) for tables in per_seed], keys)
    return aggregated


def aggregate_matrices(per_seed: Sequence[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per family and barrier: (mean matrix, 95% half-width matrix) over the seeds, cell by cell (finite values only)."""
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for family in per_seed[0]:
        out[family] = {}
        for key in per_seed[0][family]:
            stack = np.stack([matrices[family][key] for matrices in per_seed])
            mean = np.full(stack.shape[1:], np.nan)
            half = np.full(stack.shape[1:], np.nan)
            for index in np.ndindex(*stack.shape[1:]):
                cell = [float(v) for v in stack[(slice(None), *index)] if math.isfinite(v)]
                if cell:
                    mean[index], half[index] = float(np.mean(cell)), interval_half_width(cell)
            out[family][key] = (mean, half)
    return out
