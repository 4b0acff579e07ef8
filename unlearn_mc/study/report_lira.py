"""The report's LiRA section: the endpoints' table and, per attacked curve, LiRA AUC along t next to MIA efficacy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from unlearn_mc.study.report_figures import _save, plt
from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.tables import Row, markdown_table

SHOWN = ("model", "attack", "auc", "auc_ci", "tpr_at_1pct_fpr", "tpr_at_1pct_fpr_ci", "tpr_at_0.1pct_fpr", "tpr_at_0.1pct_fpr_ci",
         "balanced_accuracy", "balanced_accuracy_ci", "n_members", "n_non_members")


def lira_figure(rows: list[Row], results: dict[str, dict], path: Path) -> bool:
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
    endpoints = [{key: row[key] for key in SHOWN if key in row} for row in rows if not row.get("curve")]
    first = rows[0]
    text = ("## Membership inference (LiRA)\nPer-example likelihood-ratio attacks with "
            f"{spec['shadows']} shadow models (base recipe, each on a seeded half of D ∪ V; U-LiRA shadows also unlearned with "
            f"{', '.join(spec['methods']) or 'no method'}): members are D_f ({first['n_members']:.0f}), non-members held-out "
            f"validation samples chosen by the same forget rule ({first['n_non_members']:.0f}). `online` compares IN and OUT shadows, `offline` OUT only, `ulira` "
            "shadows that unlearned the example against shadows that never saw it. AUC 0.5 and TPR = FPR are chance; ± is the "
            f"half-width of a 95% bootstrap interval over examples ({spec['bootstrap']} resamples). Per-example scores: "
            "`lira_scores.csv`; docs/privacy.md explains the attacks.\n\n" + markdown_table(endpoints))
    if figure:
        text += f"\n\nLiRA AUC along t next to MIA efficacy:\n\n![lira]({figure})"
    return text
