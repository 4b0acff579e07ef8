"""Reading a study file: YAML to one mapping, with ``extends: <other study file>`` laid out."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from unlearn_mc.study.spec_checks import fail


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        fail(f"study file {str(path)!r} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        fail(f"study file {str(path)!r} is not valid YAML: {str(error).splitlines()[0]}")
    if not isinstance(raw, dict):
        fail(f"study file {str(path)!r} must hold a mapping at the top level.")
    return raw


def merged_over(base: dict, change: dict) -> dict:
    """``change`` laid over ``base``: mappings merge key by key, any other value replaces, and a key set to null
    (``seed: null``) is removed."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged_over(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_study_file(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The study file as one mapping; ``extends: <file>`` (relative to this file) lays this file over that one
    (``merged_over``), recursively."""
    raw = _read_yaml(path)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        fail(f"extends={parent!r} in {str(path)!r} must be the path of another study file.")
    parent_path = (path.parent / parent).resolve()
    if parent_path in chain or parent_path == path.resolve():
        fail(f"study files {' -> '.join(str(p) for p in (*chain, path.resolve(), parent_path))} extend each other in a cycle.")
    return merged_over(read_study_file(parent_path, (*chain, path.resolve())), raw)


