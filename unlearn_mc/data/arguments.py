"""The checks of ``UnlearningDataModule``'s arguments: each bad value is refused in one sentence naming it."""

from __future__ import annotations

from collections.abc import Sequence

from unlearn_mc.errors import UnlearnMCError

TRAIN_STREAMS = ("full", "retain", "forget")
FORGET_RULES = ("random", "class", "memorised")


def forget_rule_arguments(rule: str, ratio: float | None, count: int | None, classes: Sequence[int] | None,
                          memorisation_file: str | None) -> tuple[float | None, int | None, list[int] | None, str | None]:
    """Check the forget rule's arguments and return ``(ratio, count, classes, memorisation_file)`` with None for
    each one the rule does not read: ``random`` and ``memorised`` read a count, else a ratio; ``class`` its classes;
    ``memorised`` also its scores file."""
    if rule not in FORGET_RULES:
        raise UnlearnMCError(f"forget_rule={rule!r} is not a rule; use 'random', 'class' or 'memorised'.")
    if rule == "memorised" and not memorisation_file:
        raise UnlearnMCError("forget_rule='memorised' needs memorisation_file, the lira_shadows.npz of a study with analyses.lira.")
    if rule != "memorised":
        memorisation_file = None
    if rule == "class":
        if not classes:
            raise UnlearnMCError("forget_rule='class' needs forget_classes, a non-empty list of class ids.")
        return None, None, classes, memorisation_file
    if count is not None:
        if count < 1:
            raise UnlearnMCError(f"forget_count={count} must be at least 1.")
        return None, count, None, memorisation_file
    if ratio is None or not 0.0 < ratio < 1.0:
        raise UnlearnMCError(f"forget_ratio={ratio} must lie strictly between 0 and 1.")
    return ratio, None, None, memorisation_file


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise UnlearnMCError(f"val_fraction={val_fraction} must lie in [0, 1).")
    if not 0.0 < test_fraction < 1.0:
        raise UnlearnMCError(f"test_fraction={test_fraction} must lie strictly between 0 and 1.")


def check_loader_arguments(train_streams: Sequence[str] | None, batch_size: int, eval_batch_size: int, eval_retain_max: int | None) -> None:
    if train_streams is not None:
        unknown = [name for name in train_streams if name not in TRAIN_STREAMS]
        if unknown or not train_streams:
            raise UnlearnMCError(f"train_streams={train_streams} is invalid; use a non-empty list of {', '.join(TRAIN_STREAMS)}.")
    for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if value < 1:
            raise UnlearnMCError(f"{name}={value} must be at least 1.")
    if eval_retain_max is not None and eval_retain_max < 1:
        raise UnlearnMCError(f"eval_retain_max={eval_retain_max} must be at least 1 (or null for all of D_r).")


def check_shadows(shadow_count: int | None, shadow_index: int) -> None:
    if shadow_count is not None and (shadow_count < 2 or not 0 <= shadow_index < shadow_count):
        raise UnlearnMCError(f"shadow_count={shadow_count}, shadow_index={shadow_index}: use at least 2 shadows and an index in 0..K-1.")
