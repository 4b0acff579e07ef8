"""The study file's ``methods``: each entry (resolved through ``like``) as a ``MethodSpec``, with its seeds and tuning."""

from __future__ import annotations

import copy
import importlib

from unlearn_mc.study import defaults
from unlearn_mc.study.spec_checks import class_spec, fail, seed_list, unknown_keys
from unlearn_mc.study.spec_types import FIXED_ENDPOINTS, METHOD_KEYS, MethodSpec


def resolve_method_class(name: str, where: str) -> str:
    """The dotted class path of an unlearning method given as a class name of ``unlearn_mc.unlearning`` or a dotted path."""
    from unlearn_mc.unlearning.base import UnlearningModule
    from unlearn_mc.unlearning.registry import METHOD_NAMES, method_class

    known = METHOD_NAMES
    if "." not in name:
        method_class(name, where)  # refuses an unknown name
        return f"unlearn_mc.unlearning.{name}"
    module_name, _, class_name = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        fail(f"unknown method {name!r} in {where}: it cannot be imported; choose one of {', '.join(known)} or an importable class path.")
    if not (isinstance(cls, type) and issubclass(cls, UnlearningModule)):
        fail(f"method {name!r} in {where} is not an UnlearningModule subclass.")
    return name


def _method_seeds(entry: dict, name: str, study_seeds: list[int]) -> list[int]:
    """The method's seed for each study seed: its own ``seeds`` (one per study seed), its ``seed`` (one-seed studies
    only), or the study's."""
    if "seeds" in entry and "seed" in entry:
        fail(f"methods.{name} sets both seed and seeds; keep one.")
    if "seeds" in entry:
        return seed_list(entry["seeds"], f"methods.{name}.seeds", len(study_seeds))
    if "seed" in entry:
        if isinstance(entry["seed"], bool) or not isinstance(entry["seed"], int):
            fail(f"methods.{name}.seed={entry['seed']!r} must be an integer.")
        if len(study_seeds) > 1:
            fail(f"methods.{name}.seed={entry['seed']} is one seed but the study runs {len(study_seeds)} seeds "
                  f"{study_seeds}; give methods.{name}.seeds with one seed per study seed.")
        return [entry["seed"]]
    return list(study_seeds)


def method_specs(raw: dict, study_seeds: list[int]) -> dict[str, MethodSpec]:
    if not isinstance(raw, dict) or not raw:
        fail("the study lists no methods; add at least one under 'methods'.")
    resolved: dict[str, dict] = {}

    def resolve(name: str, chain: tuple[str, ...] = ()) -> dict:
        if name in resolved:
            return resolved[name]
        if name in chain:
            fail(f"methods {' -> '.join(chain + (name,))} form a 'like' cycle.")
        entry = raw[name]
        if not isinstance(entry, dict):
            fail(f"methods.{name} must be a mapping.")
        unknown_keys(f"methods.{name}", entry, METHOD_KEYS)
        merged: dict = {}
        if "like" in entry:
            if entry["like"] not in raw:
                fail(f"methods.{name} is like {entry['like']!r}, which is not a method of this study.")
            merged = copy.deepcopy(resolve(entry["like"], chain + (name,)))
        if any(key in entry for key in ("seed", "seeds")):  # a variant's own seed replaces its parent's, whichever key
            merged.pop("seed", None), merged.pop("seeds", None)
        merged.update({key: value for key, value in entry.items() if key != "like"})
        resolved[name] = merged
        return merged

    def tune_from(name: str) -> str | None:  # a variant (like) follows its source's calibration unless it says tune: itself
        entry = raw[name]
        return name if "tune" in entry else tune_from(entry["like"]) if "like" in entry else None

    methods = {}
    for name in raw:
        if name in FIXED_ENDPOINTS or "/" in name or "--" in name:
            fail(f"method name {name!r} is reserved or contains '/' or '--'; rename it.")
        entry = resolve(name)
        if "method" not in entry:
            fail(f"methods.{name} names no method class (key 'method').")
        epochs = entry.get("epochs", defaults.METHOD_EPOCHS)
        if not isinstance(epochs, int) or epochs < 1:
            fail(f"methods.{name}.epochs={epochs!r} must be a positive integer.")
        methods[name] = MethodSpec(
            name=name,
            class_path=resolve_method_class(entry["method"], f"methods.{name}"),
            args=dict(entry.get("args") or {}),
            epochs=epochs,
            optimizer=class_spec(entry.get("optimizer", defaults.METHOD_OPTIMIZER), f"methods.{name}.optimizer"),
            lr_scheduler=class_spec(entry["lr_scheduler"], f"methods.{name}.lr_scheduler") if entry.get("lr_scheduler") else None,
            seed=(seeds := _method_seeds(entry, name, study_seeds))[0],
            seeds=seeds,
            curriculum=class_spec(entry["curriculum"], f"methods.{name}.curriculum") if entry.get("curriculum") else None,
            trainer=dict(entry.get("trainer") or {}),
        )
        if tune_from(name) == name:
            from unlearn_mc.study.tuning.space import tune_settings

            tune = raw[name]["tune"] if raw[name]["tune"] is not None else {}
            if not isinstance(tune, dict):
                fail(f"methods.{name}.tune must be a mapping, e.g. {{trials: 20, lr_range: [0.0001, 0.1]}}.")
            tune_settings(methods[name].class_path, methods[name].optimizer, tune, lambda key: f"methods.{name}.tune{'.' + key if key else ''}")
            methods[name].tune = dict(tune)
        methods[name].tune_from = tune_from(name)
    return methods


