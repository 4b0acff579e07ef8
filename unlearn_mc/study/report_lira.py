"""The report's LiRA section: the endpoints' table and, per attacked curve, LiRA AUC along t next to MIA efficacy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from unlearn_mc.study.report_figures import _save, plt
from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.stages import StageResult
from unlearn_mc.study.tables import Row, markdown_table

INTERVALS = ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "balanced_accuracy")


def _cell(row: Row, metric: str) -> str:
    """``value [low, high]`` (the bootstrap interval; percentile intervals need not be symmetric), or ``mean ± ci``
    across seeds (the rows of several seeds have no bounds of their own)."""
    value, low, high = (row.get(f"{metric}{suffix}") for suffix in ("", "_low", "_high"))
    if isinstance(low, float) and isinstance(high, float) and math.isfinite(low) and math.isfinite(high) and "n_seeds" not in row:
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    half = row.get(f"{metric}_ci")
    return f"{value:.3f}" + (f" ± {half:.3f}" if isinstance(half, float) and math.isfinite(half) else "")


def _shown(row: Row) -> Row:
    return {"model": row["model"], "attack": row["attack"], **{metric: _cell(row, metric) for metric in INTERVALS}}


def lira_figure(rows: list[Row], results: dict[str, StageResult], path: Path) -> bool:
    """One panel per attacked curve: the AUC of each attack against t (error bars: the intervals) and, on the same axis,
    the curve evaluation's MIA efficacy; False when no curve was attacked."""
    curves = list(dict.fromkeys(row["curve"] for row in rows if row.get("curve")))
    if not curves:
        return False
    figure, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 3.8), squeeze=False)
    for axis, curve in zip(axes[0], curves):
        for attack in dict.fromkeys(row["attack"] for row in rows if row.get("curve") == curve):
            points = sorted((float(r["t"]), float(r["auc"]), float(r.get("auc_ci", math.nan))) for r in rows
                            if r.get("curve") == curve and r["attack"] == attack)
            errors = [p[2] for p in points]
            axis.errorbar([p[0] for p in points], [p[1] for p in points], yerr=None if np.all(np.isnan(errors)) else errors,
                          marker="o", markersize=3, capsize=2, label=f"LiRA {attack} AUC")
        evaluated = results.get(curve, {}).get("curve")
        if evaluated:
            axis.plot(evaluated["ts"], [row.get("mia_efficacy", math.nan) for row in evaluated["rows"]], "k--", label="MIA efficacy")
        axis.axhline(0.5, color="grey", linewidth=0.8)
        axis.set_xlabel("t")
        axis.set_ylim(0, 1)
        axis.set_title(curve, fontsize=8)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    figure.tight_layout()
    _save(figure, path)
    return True


def lira_section(study: StudySpec, rows: list[Row], figure: str | None) -> str:
    spec = study.analyses["lira"]
    endpoints = [_shown(row) for row in rows if not row.get("curve")]
    first = rows[0]
    text = ("## Membership inference (LiRA)\nPer-example likelihood-ratio attacks with "
            f"{spec['shadows']} shadow models (base recipe, each on a seeded half of D ∪ V; U-LiRA shadows also unlearned with "
            f"{', '.join(spec['methods']) or 'no method'}): members are D_f ({first['n_members']:.0f}), non-members held-out "
            f"validation samples chosen by the same forget rule ({first['n_non_members']:.0f}). `online` compares IN and OUT shadows, `offline` OUT only, `ulira` "
            "shadows that unlearned the example against shadows that never saw it. AUC 0.5 and TPR = FPR are chance, on both sides: "
            "AUC < 0.5 means the forget set looks *less* like training data than unseen data does, which leaks too. Brackets: "
            f"95% bootstrap interval over examples ({spec['bootstrap']} resamples). Per-example scores: "
            "`lira_scores.csv`; docs/privacy.md explains the attacks.\n\n" + markdown_table(endpoints))
    if figure:
        text += f"\n\nLiRA AUC along t next to MIA efficacy:\n\n![lira]({figure})"
    return text
