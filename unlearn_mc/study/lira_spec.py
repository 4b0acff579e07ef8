"""``analyses.lira`` of a study YAML: validation and defaults (one sentence per bad value, before any training).

    analyses:
      lira:
        shadows: 8                      # K ≥ 2 shadow models (each trained with the base recipe on half of D ∪ V)
        attacks: [online, offline, ulira]
        methods: [grad_diff, salun]     # U-LiRA shadows: each shadow unlearned with these methods (default: all)
        curves: [curve-linear-original--salun]   # curves whose points are attacked too ("all": every curve)
        points: [0.0, 0.25, 0.5, 0.75, 1.0]      # the t of those points
        variance: global                # or per_example (see unlearn_mc.evaluation.lira)
        bootstrap: 500                  # resamples behind each interval (0: none)
        seed: 0                         # seed of the shadows' membership draw
"""

from __future__ import annotations

from typing import Any

from unlearn_mc.errors import UnlearnMCError

LIRA_KEYS = {"shadows", "attacks", "methods", "curves", "points", "variance", "bootstrap", "seed"}
DEFAULT_POINTS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_lira(raw: Any, methods: list[str], curve_ids: list[str]) -> dict[str, Any]:
    """The validated ``analyses.lira`` with every default filled in."""
    from unlearn_mc.evaluation.lira import ATTACKS

    if not isinstance(raw, dict):
        raise UnlearnMCError("analyses.lira must be a mapping, e.g. {shadows: 8, attacks: [online, offline]}.")
    unknown = sorted(set(raw) - LIRA_KEYS)
    if unknown:
        raise UnlearnMCError(f"analyses.lira has unknown key(s) {unknown}; allowed: {', '.join(sorted(LIRA_KEYS))}.")
    shadows = raw.get("shadows", 8)
    if not _integer(shadows) or shadows < 2:
        raise UnlearnMCError(f"analyses.lira.shadows={shadows!r} must be an integer of at least 2 (each example needs "
                             "shadows trained with and without it).")
    attacks = raw.get("attacks", list(ATTACKS))
    if not isinstance(attacks, list) or not attacks or any(a not in ATTACKS for a in attacks) or len(set(attacks)) != len(attacks):
        raise UnlearnMCError(f"analyses.lira.attacks={attacks!r} must be a non-empty list of distinct attacks among {', '.join(ATTACKS)}.")
    chosen = raw.get("methods", list(methods))
    if not isinstance(chosen, list) or any(m not in methods for m in chosen):
        raise UnlearnMCError(f"analyses.lira.methods={chosen!r} must list methods of this study ({', '.join(methods)}).")
    if "ulira" in attacks and not chosen:
        raise UnlearnMCError("analyses.lira.methods is empty but attacks lists ulira; name the methods to unlearn the shadows with.")
    curves = raw.get("curves", [])
    if curves == "all":
        curves = list(curve_ids)
    if not isinstance(curves, list) or any(c not in curve_ids for c in curves):
        raise UnlearnMCError(f"analyses.lira.curves={curves!r} must be 'all' or a list of this study's curve stages "
                             f"({', '.join(curve_ids) or 'none'}).")
    points = raw.get("points", DEFAULT_POINTS)
    if (not isinstance(points, list) or not points
            or any(isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0 for t in points)):
        raise UnlearnMCError(f"analyses.lira.points={points!r} must be a non-empty list of t in [0, 1].")
    variance = raw.get("variance", "global")
    if variance not in ("global", "per_example"):
        raise UnlearnMCError(f"analyses.lira.variance={variance!r} must be 'global' or 'per_example'.")
    if variance == "per_example" and shadows < 4:
        raise UnlearnMCError(f"analyses.lira.variance='per_example' needs at least 2 IN and 2 OUT shadows per example; "
                             f"shadows={shadows} gives {shadows // 2}: use shadows >= 4 or variance: global.")
    bootstrap = raw.get("bootstrap", 500)
    if not _integer(bootstrap) or bootstrap < 0:
        raise UnlearnMCError(f"analyses.lira.bootstrap={bootstrap!r} must be a non-negative integer (0: no intervals).")
    seed = raw.get("seed", 0)
    if not _integer(seed):
        raise UnlearnMCError(f"analyses.lira.seed={seed!r} must be an integer.")
    return {"shadows": shadows, "attacks": list(attacks), "methods": list(chosen) if "ulira" in attacks else [],
            "curves": list(curves), "points": [float(t) for t in points], "variance": variance, "bootstrap": bootstrap, "seed": seed}
