"""Small validators shared by the parts of the study-file check; each failure is one ``UnlearnMCError`` sentence."""

from __future__ import annotations

from typing import Any, NoReturn

from unlearn_mc.errors import UnlearnMCError


def fail(message: str) -> NoReturn:
    raise UnlearnMCError(message)


def unknown_keys(where: str, given: dict, allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        fail(f"{where} has unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}.")


def class_spec(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or "class_path" not in value:
        fail(f"{where} must be a mapping with class_path (and optionally init_args).")
    return {"class_path": value["class_path"], "init_args": dict(value.get("init_args") or {})}


def seed_list(value: Any, where: str, count: int | None = None) -> list[int]:
    """A non-empty list of distinct integer seeds (of ``count`` entries when given)."""
    if not isinstance(value, list) or not value or any(isinstance(s, bool) or not isinstance(s, int) for s in value):
        fail(f"{where}={value!r} must be a non-empty list of integer seeds, e.g. [42, 1, 2].")
    if len(set(value)) != len(value):
        fail(f"{where}={value!r} repeats a seed; list each seed once.")
    if count is not None and len(value) != count:
        fail(f"{where}={value!r} has {len(value)} seeds but the study has {count}; give one per study seed, in order.")
    return list(value)


