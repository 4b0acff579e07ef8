"""What a finished study hands back: each seed's ``SeedRun`` and, around them, the ``StudyResults`` that
``run_study`` returns (the tables a caller prints without planning the study again)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.stages import StageResult
from unlearn_mc.study.tables import Row

CURVE_SUMMARY_COLUMNS = ("curve", "retain_barrier", "forget_barrier", "mcu_holds", "best_t")


@dataclass
class SeedRun:
    """One replica's finished work: its study (seed, folder), its stages' results (each stage's ``result.json`` by
    stage id), its analyses' tables and its endpoints' statuses."""

    study: StudySpec
    results: dict[str, StageResult]
    analyses: dict[str, list[Row]]
    statuses: dict[str, dict] | None


@dataclass
class StudyResults:
    """The study as run (after tuning), one ``SeedRun`` per seed (none on a DDP process other than 0, which writes
    nothing), the report's path and the wall time of the whole command."""

    study: StudySpec
    report: Path
    runs: list[SeedRun] = field(default_factory=list)
    wall_s: float = 0.0

    def method_table(self) -> list[Row]:
        """The methods table (one row per endpoint); across seeds, mean ± 95% interval as in the report."""
        from unlearn_mc.study.report_tables import method_table
        from unlearn_mc.study.seeds import ROW_KEYS

        return _across_seeds([method_table(run.study, run.results, run.statuses) for run in self.runs], ROW_KEYS["methods"])

    def curve_summary(self) -> list[Row]:
        """Per curve: both barriers, whether the MCU condition holds and the best t (across seeds as above)."""
        from unlearn_mc.study.report_tables import curve_rows

        tables = [[{key: row[key] for key in CURVE_SUMMARY_COLUMNS} for row in curve_rows(run.results)] for run in self.runs]
        return _across_seeds(tables, ("curve",))


def _across_seeds(tables: list[list[Row]], keys: tuple[str, ...]) -> list[Row]:
    """One seed's table as it is; several seeds' rows merged (mean ± 95% interval) by the columns ``keys`` that name a row."""
    from unlearn_mc.study.seeds import aggregate_rows

    return tables[0] if len(tables) == 1 else aggregate_rows(tables, keys)
