"""The study file's curve families (``curves.families``) and its ensemble and relearning analyses, validated, with
their defaults (``unlearn_mc.study.defaults``) filled in."""

from __future__ import annotations

from typing import Any

from unlearn_mc.study import defaults
from unlearn_mc.study.spec_checks import class_spec, fail, unknown_keys
from unlearn_mc.study.spec_types import FAMILIES, FAMILY_KEYS, FamilySpec


def family_specs(raw: dict) -> dict[str, FamilySpec]:
    """Each entry of ``curves.families`` as a ``FamilySpec``; a key left out takes ``defaults.FAMILY*``."""
    from unlearn_mc.curves.families import build_family

    if not isinstance(raw, dict) or not raw:
        fail("curves.families is empty; add at least one family, e.g. linear: {curve: linear}.")
    families = {}
    for name, entry in raw.items():
        unknown_keys(f"curves.families.{name}", dict(entry or {}), FAMILY_KEYS)
        entry = {**defaults.FAMILY, "epochs": defaults.FAMILY_EPOCHS, "optimizer": defaults.FAMILY_OPTIMIZER, **(entry or {})}
        curve = entry.get("curve", name)
        if curve not in FAMILIES:
            fail(f"unknown curve family {curve!r} in curves.families.{name}; choose one of {', '.join(FAMILIES)}.")
        family = build_family(curve, entry.get("num_bends"))
        epochs = entry["epochs"]
        if family.num_bends > 2 and (not isinstance(epochs, int) or epochs < 1):
            fail(f"curves.families.{name}.epochs={epochs!r} must be a positive integer.")
        init = entry["init"]
        if init not in ("midpoint", "original"):
            fail(f"curves.families.{name}.init={init!r} must be 'midpoint' or 'original'.")
        families[name] = FamilySpec(
            name=name,
            curve=curve,
            num_bends=family.num_bends,
            epochs=epochs,
            objective=entry["objective"],
            objective_args=entry["objective_args"],
            optimizer=class_spec(entry["optimizer"], f"curves.families.{name}.optimizer"),
            init=init,
            t_sampler=entry["t_sampler"],
            l2=float(entry["l2"]),
        )
    return families


def check_ensemble(ensemble: Any) -> dict[str, Any]:
    """``analyses.ensemble`` checked, with ``defaults.ENSEMBLE`` filled in."""
    if not isinstance(ensemble, dict):
        fail("analyses.ensemble must be a mapping, e.g. {points: [0.25, 0.5, 0.75]}.")
    unknown_keys("analyses.ensemble", ensemble, set(defaults.ENSEMBLE))
    ensemble = {**defaults.ENSEMBLE, **ensemble}
    points = ensemble["points"]
    if not isinstance(points, list) or not points or any(isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0 for t in points):
        fail(f"analyses.ensemble.points={points!r} must be a non-empty list of t in [0, 1].")
    return ensemble


def check_relearn(relearn: Any) -> dict[str, Any]:
    """``analyses.relearn`` checked, with ``defaults.RELEARN`` filled in."""
    from unlearn_mc.study.analyses import RELEARN_ATTACKS

    if not isinstance(relearn, dict):
        fail("analyses.relearn must be a mapping, e.g. {steps: [5, 10], forget_fraction: 0.2, lr: 0.01}.")
    unknown_keys("analyses.relearn", relearn, set(defaults.RELEARN))
    relearn = {**defaults.RELEARN, **relearn}
    steps = relearn["steps"]
    if not isinstance(steps, list) or not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps):
        fail(f"analyses.relearn.steps={steps!r} must be a non-empty list of positive integers.")
    fraction = relearn["forget_fraction"]
    if not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) < 1.0:
        fail(f"analyses.relearn.forget_fraction={fraction!r} must lie strictly between 0 and 1 (the rest of D_f scores the recovery).")
    for key in ("lr", "test_drop_margin"):
        value = relearn[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 if key == "lr" else value >= 0):
            fail(f"analyses.relearn.{key}={value!r} must be a {'positive' if key == 'lr' else 'non-negative'} number.")
    batch_size = relearn["batch_size"]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        fail(f"analyses.relearn.batch_size={batch_size!r} must be a positive integer.")
    attacks = relearn["attacks"]
    if not isinstance(attacks, list) or not attacks or any(a not in RELEARN_ATTACKS for a in attacks) or "forget" not in attacks:
        fail(f"analyses.relearn.attacks={attacks!r} must list 'forget' and optionally 'retain_only'.")
    if not isinstance(relearn["curve_points"], bool):
        fail(f"analyses.relearn.curve_points={relearn['curve_points']!r} must be true (also attack each curve's best t and "
              "ensemble members) or false (the endpoints only).")
    return relearn
