"""The study YAML: reading it, filling defaults, and refusing a bad one before any training.

A study lists the data and network, the base training recipe, the unlearning methods (each
an endpoint, possibly a variant of another through ``like``), the curve families, which pairs
of endpoints to connect, the evaluation grid and the analyses. See ``configs/digits/study.yaml``.
"""

from __future__ import annotations

import copy
import importlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unlearn_mc.errors import UnlearnMCError

FIXED_ENDPOINTS = ("original", "retrain")
FAMILIES = ("linear", "bezier", "polychain")
DATA_MODULE = "unlearn_mc.data.UnlearningDataModule"
STUDY_KEYS = {"extends", "output_dir", "seed", "seeds", "trainer", "net", "data", "base", "methods", "curves", "evaluation", "analyses"}
METHOD_KEYS = {"method", "like", "args", "epochs", "optimizer", "lr_scheduler", "seed", "seeds", "curriculum", "trainer", "tune"}
FAMILY_KEYS = {"curve", "num_bends", "epochs", "objective", "objective_args", "optimizer", "init", "t_sampler", "l2"}


@dataclass
class MethodSpec:
    """One unlearned endpoint: a method class with its recipe."""

    name: str
    class_path: str
    args: dict[str, Any]
    epochs: int
    optimizer: dict[str, Any]
    lr_scheduler: dict[str, Any] | None
    seed: int
    curriculum: dict[str, Any] | None
    trainer: dict[str, Any]
    seeds: list[int] = field(default_factory=list)  # one per study seed, in order; [seed] for a one-seed study
    tune: dict[str, Any] | None = None  # the entry's own ``tune:`` settings (``unlearn_mc.study.tuning``), validated
    tune_from: str | None = None  # the method whose calibrated setting this entry runs with: itself, or a tuned ``like`` source


@dataclass
class FamilySpec:
    """How to build (and, unless linear, train) the curves of one family."""

    name: str
    curve: str
    num_bends: int
    epochs: int
    objective: str
    objective_args: dict[str, Any] | None
    optimizer: dict[str, Any]
    init: str
    t_sampler: str
    l2: float

    @property
    def trained(self) -> bool:
        return self.num_bends > 2


@dataclass
class StudySpec:
    """A validated study. ``seeds`` lists every training seed (``seed`` is the first); a study with several is run
    once per seed (``unlearn_mc.study.seeds``)."""

    path: Path
    output_dir: Path
    seed: int
    trainer: dict[str, Any]
    net: dict[str, Any]
    data: dict[str, Any]
    base: dict[str, Any]
    methods: dict[str, MethodSpec]
    families: dict[str, FamilySpec]
    pairs: list[tuple[str, str]]
    matrix: list[str]
    paths_from: list[str]
    evaluation: dict[str, Any]
    analyses: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    data_class: str = DATA_MODULE  # the DataModule class every stage builds (data.class_path), an UnlearningDataModule

    def __post_init__(self) -> None:
        if not self.seeds:
            self.seeds = [self.seed]

    @property
    def endpoints(self) -> list[str]:
        return [*FIXED_ENDPOINTS, *self.methods]


def _fail(message: str) -> None:
    raise UnlearnMCError(message)


def _unknown_keys(where: str, given: dict, allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        _fail(f"{where} has unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}.")


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
        _fail(f"unknown method {name!r} in {where}: it cannot be imported; choose one of {', '.join(known)} or an importable class path.")
    if not (isinstance(cls, type) and issubclass(cls, UnlearningModule)):
        _fail(f"method {name!r} in {where} is not an UnlearningModule subclass.")
    return name


def _class_spec(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or "class_path" not in value:
        _fail(f"{where} must be a mapping with class_path (and optionally init_args).")
    return {"class_path": value["class_path"], "init_args": dict(value.get("init_args") or {})}


def _seed_list(value: Any, where: str, count: int | None = None) -> list[int]:
    """A non-empty list of distinct integer seeds (of ``count`` entries when given)."""
    if not isinstance(value, list) or not value or any(isinstance(s, bool) or not isinstance(s, int) for s in value):
        _fail(f"{where}={value!r} must be a non-empty list of integer seeds, e.g. [42, 1, 2].")
    if len(set(value)) != len(value):
        _fail(f"{where}={value!r} repeats a seed; list each seed once.")
    if count is not None and len(value) != count:
        _fail(f"{where}={value!r} has {len(value)} seeds but the study has {count}; give one per study seed, in order.")
    return list(value)


def _method_seeds(entry: dict, name: str, study_seeds: list[int]) -> list[int]:
    """The method's seed for each study seed: its own ``seeds`` (one per study seed), its ``seed`` (one-seed studies
    only), or the study's."""
    if "seeds" in entry and "seed" in entry:
        _fail(f"methods.{name} sets both seed and seeds; keep one.")
    if "seeds" in entry:
        return _seed_list(entry["seeds"], f"methods.{name}.seeds", len(study_seeds))
    if "seed" in entry:
        if isinstance(entry["seed"], bool) or not isinstance(entry["seed"], int):
            _fail(f"methods.{name}.seed={entry['seed']!r} must be an integer.")
        if len(study_seeds) > 1:
            _fail(f"methods.{name}.seed={entry['seed']} is one seed but the study runs {len(study_seeds)} seeds "
                  f"{study_seeds}; give methods.{name}.seeds with one seed per study seed.")
        return [entry["seed"]]
    return list(study_seeds)


def _methods(raw: dict, study_seeds: list[int]) -> dict[str, MethodSpec]:
    if not isinstance(raw, dict) or not raw:
        _fail("the study lists no methods; add at least one under 'methods'.")
    resolved: dict[str, dict] = {}

    def resolve(name: str, chain: tuple[str, ...] = ()) -> dict:
        if name in resolved:
            return resolved[name]
        if name in chain:
            _fail(f"methods {' -> '.join(chain + (name,))} form a 'like' cycle.")
        entry = raw[name]
        if not isinstance(entry, dict):
            _fail(f"methods.{name} must be a mapping.")
        _unknown_keys(f"methods.{name}", entry, METHOD_KEYS)
        merged: dict = {}
        if "like" in entry:
            if entry["like"] not in raw:
                _fail(f"methods.{name} is like {entry['like']!r}, which is not a method of this study.")
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
            _fail(f"method name {name!r} is reserved or contains '/' or '--'; rename it.")
        entry = resolve(name)
        if "method" not in entry:
            _fail(f"methods.{name} names no method class (key 'method').")
        epochs = entry.get("epochs", 5)
        if not isinstance(epochs, int) or epochs < 1:
            _fail(f"methods.{name}.epochs={epochs!r} must be a positive integer.")
        methods[name] = MethodSpec(
            name=name,
            class_path=resolve_method_class(entry["method"], f"methods.{name}"),
            args=dict(entry.get("args") or {}),
            epochs=epochs,
            optimizer=_class_spec(entry.get("optimizer", {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01, "momentum": 0.9}}), f"methods.{name}.optimizer"),
            lr_scheduler=_class_spec(entry["lr_scheduler"], f"methods.{name}.lr_scheduler") if entry.get("lr_scheduler") else None,
            seed=(seeds := _method_seeds(entry, name, study_seeds))[0],
            seeds=seeds,
            curriculum=_class_spec(entry["curriculum"], f"methods.{name}.curriculum") if entry.get("curriculum") else None,
            trainer=dict(entry.get("trainer") or {}),
        )
        if tune_from(name) == name:
            from unlearn_mc.study.tuning.space import tune_settings

            tune = raw[name]["tune"] if raw[name]["tune"] is not None else {}
            if not isinstance(tune, dict):
                _fail(f"methods.{name}.tune must be a mapping, e.g. {{trials: 20, lr_range: [0.0001, 0.1]}}.")
            tune_settings(methods[name].class_path, methods[name].optimizer, tune, lambda key: f"methods.{name}.tune{'.' + key if key else ''}")
            methods[name].tune = dict(tune)
        methods[name].tune_from = tune_from(name)
    return methods


def _families(raw: dict) -> dict[str, FamilySpec]:
    from unlearn_mc.curves.families import build_family

    if not isinstance(raw, dict) or not raw:
        _fail("curves.families is empty; add at least one family, e.g. linear: {curve: linear}.")
    families = {}
    for name, entry in raw.items():
        entry = dict(entry or {})
        _unknown_keys(f"curves.families.{name}", entry, FAMILY_KEYS)
        curve = entry.get("curve", name)
        if curve not in FAMILIES:
            _fail(f"unknown curve family {curve!r} in curves.families.{name}; choose one of {', '.join(FAMILIES)}.")
        family = build_family(curve, entry.get("num_bends"))
        epochs = entry.get("epochs", 10)
        if family.num_bends > 2 and (not isinstance(epochs, int) or epochs < 1):
            _fail(f"curves.families.{name}.epochs={epochs!r} must be a positive integer.")
        init = entry.get("init", "midpoint")
        if init not in ("midpoint", "original"):
            _fail(f"curves.families.{name}.init={init!r} must be 'midpoint' or 'original'.")
        families[name] = FamilySpec(
            name=name,
            curve=curve,
            num_bends=family.num_bends,
            epochs=epochs,
            objective=entry.get("objective", "retain_ce"),
            objective_args=entry.get("objective_args"),
            optimizer=_class_spec(entry.get("optimizer", {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01, "momentum": 0.9}}), f"curves.families.{name}.optimizer"),
            init=init,
            t_sampler=entry.get("t_sampler", "uniform"),
            l2=float(entry.get("l2", 0.0)),
        )
    return families


def _relearn(relearn: Any) -> None:
    from unlearn_mc.study.analyses import RELEARN_ATTACKS

    if not isinstance(relearn, dict):
        _fail("analyses.relearn must be a mapping, e.g. {steps: [5, 10], forget_fraction: 0.2, lr: 0.01}.")
    _unknown_keys("analyses.relearn", relearn, {"steps", "forget_fraction", "lr", "batch_size", "attacks", "test_drop_margin", "curve_points"})
    steps = relearn.get("steps", [5, 10, 15, 20, 25])
    if not isinstance(steps, list) or not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps):
        _fail(f"analyses.relearn.steps={steps!r} must be a non-empty list of positive integers.")
    fraction = relearn.get("forget_fraction", 0.1)
    if not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) < 1.0:
        _fail(f"analyses.relearn.forget_fraction={fraction!r} must lie strictly between 0 and 1 (the rest of D_f scores the recovery).")
    for key, default in (("lr", 0.01), ("test_drop_margin", 0.05)):
        value = relearn.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 if key == "lr" else value >= 0):
            _fail(f"analyses.relearn.{key}={value!r} must be a {'positive' if key == 'lr' else 'non-negative'} number.")
    batch_size = relearn.get("batch_size", 16)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        _fail(f"analyses.relearn.batch_size={batch_size!r} must be a positive integer.")
    attacks = relearn.get("attacks", list(RELEARN_ATTACKS))
    if not isinstance(attacks, list) or not attacks or any(a not in RELEARN_ATTACKS for a in attacks) or "forget" not in attacks:
        _fail(f"analyses.relearn.attacks={attacks!r} must list 'forget' and optionally 'retain_only'.")
    if not isinstance(relearn.get("curve_points", True), bool):
        _fail(f"analyses.relearn.curve_points={relearn['curve_points']!r} must be true (also attack each curve's best t and "
              "ensemble members) or false (the endpoints only).")


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        _fail(f"study file {str(path)!r} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        _fail(f"study file {str(path)!r} is not valid YAML: {str(error).splitlines()[0]}")
    if not isinstance(raw, dict):
        _fail(f"study file {str(path)!r} must hold a mapping at the top level.")
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
        _fail(f"extends={parent!r} in {str(path)!r} must be the path of another study file.")
    parent_path = (path.parent / parent).resolve()
    if parent_path in chain or parent_path == path.resolve():
        _fail(f"study files {' -> '.join(str(p) for p in (*chain, path.resolve(), parent_path))} extend each other in a cycle.")
    return merged_over(read_study_file(parent_path, (*chain, path.resolve())), raw)


def _data_module_class(class_path: str) -> type:
    """The class ``class_path`` names; it must be an ``UnlearningDataModule`` (the study reads its split and loaders)."""
    from unlearn_mc.data import UnlearningDataModule

    module_name, _, name = str(class_path).rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name, None) if module_name else None
    except ImportError:
        found = None
    if not (isinstance(found, type) and issubclass(found, UnlearningDataModule)):
        _fail(f"data.class_path={class_path!r} is not an UnlearningDataModule class; use e.g. unlearn_mc.data.TextDataModule or leave it out.")
    return found


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study YAML; every error is one ``UnlearnMCError`` sentence, raised before any training."""
    from unlearn_mc.curves.evaluate_curve import make_t_grid

    path = Path(path)
    raw = read_study_file(path)
    _unknown_keys("the study", raw, STUDY_KEYS)
    if "seed" in raw and "seeds" in raw:
        _fail("the study sets both seed and seeds; keep one (seeds: [..] runs every stage once per seed).")
    seeds = _seed_list(raw["seeds"], "seeds") if "seeds" in raw else [raw.get("seed", 42)]
    if isinstance(seeds[0], bool) or not isinstance(seeds[0], int):
        _fail(f"seed={seeds[0]!r} must be an integer.")
    seed = seeds[0]
    data = dict(raw.get("data") or {"dataset": "digits"})
    data.pop("split_file", None)  # the study keeps its own split
    data_class = data.pop("class_path", DATA_MODULE)  # e.g. unlearn_mc.data.TextDataModule, with the other keys its arguments
    data_module = _data_module_class(data_class)
    data_module(**data, split_file="unused.json")  # validates every data setting; reads nothing
    net = _class_spec(raw.get("net"), "net")
    base = dict(raw.get("base") or {})
    base.setdefault("epochs", 20)
    base["optimizer"] = _class_spec(base.get("optimizer", {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}}), "base.optimizer")
    methods = _methods(raw.get("methods"), seeds)
    curves = dict(raw.get("curves") or {})
    _unknown_keys("curves", curves, {"families", "pairs", "matrix", "paths_from"})
    families = _families(curves.get("families"))
    endpoints = [*FIXED_ENDPOINTS, *methods]
    matrix = list(curves.get("matrix") or [])
    pairs: list[tuple[str, str]] = []
    for where, pair in [("curves.matrix", list(p)) for p in itertools.combinations(matrix, 2)] + [("curves.pairs", p) for p in curves.get("pairs") or []]:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            _fail(f"{where} entry {pair!r} must be a pair [start, end].")
        for name in pair:
            if name not in endpoints:
                _fail(f"{where} names endpoint {name!r}, which the study does not train; use one of {', '.join(endpoints)}.")
        if pair[0] == pair[1]:
            _fail(f"{where} entry {list(pair)} connects an endpoint to itself.")
        if tuple(pair) not in pairs:
            pairs.append(tuple(pair))
    for name in matrix:
        if name not in endpoints:
            _fail(f"curves.matrix names endpoint {name!r}, which the study does not train; use one of {', '.join(endpoints)}.")
    paths_from = list(curves.get("paths_from") or [])
    for name in paths_from:
        if name not in FIXED_ENDPOINTS:
            _fail(f"curves.paths_from names {name!r}; use original and/or retrain.")
    evaluation = dict(raw.get("evaluation") or {})
    _unknown_keys("evaluation", evaluation, {"t_grid", "bn_batches", "tolerance", "best_by", "retain_floor", "collapse_floor", "on_collapse"})
    floor = evaluation.get("collapse_floor")
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0.0 <= floor <= 1.0):
        _fail(f"evaluation.collapse_floor={floor!r} must be an accuracy in [0, 1] (or absent for 1.5 × chance only).")
    if evaluation.get("on_collapse", "report") not in ("report", "stop"):
        _fail(f"evaluation.on_collapse={evaluation['on_collapse']!r} must be 'report' (mark collapsed endpoints) or 'stop'.")
    evaluation["t_grid"] = make_t_grid(evaluation.get("t_grid", 11))
    evaluation.setdefault("tolerance", 0.01)  # the MCU tolerance, read by the curve stages and the report
    analyses = dict(raw.get("analyses") or {})
    _unknown_keys("analyses", analyses, {"ensemble", "relearn", "plane", "lira"})
    ensemble = analyses.get("ensemble")
    if ensemble is not None:
        if not isinstance(ensemble, dict):
            _fail("analyses.ensemble must be a mapping, e.g. {points: [0.25, 0.5, 0.75]}.")
        _unknown_keys("analyses.ensemble", ensemble, {"points"})
        points = ensemble.get("points", [0.25, 0.5, 0.75])
        if not points or any(not 0.0 <= float(t) <= 1.0 for t in points):
            _fail(f"analyses.ensemble.points={points!r} must be a non-empty list of t in [0, 1].")
    relearn = analyses.get("relearn")
    if relearn is not None:
        _relearn(relearn)
    if analyses.get("plane") is not None:
        from unlearn_mc.study.plane_spec import check_plane_spec

        check_plane_spec(analyses["plane"], endpoints)
    if analyses.get("lira") is not None:
        from unlearn_mc.study.lira_spec import check_lira
        from unlearn_mc.study.stages import PATH_FAMILY_NAME, curve_stage_id

        curve_ids = [curve_stage_id(family, start, end) for start, end in pairs for family in families]
        curve_ids += [curve_stage_id(PATH_FAMILY_NAME, source, method) for source in paths_from for method in methods]
        analyses["lira"] = check_lira(analyses["lira"], list(methods), list(dict.fromkeys(curve_ids)))
        if not data.get("val_fraction", 0.1):
            _fail(f"analyses.lira attacks the validation set as non-members, but data.val_fraction={data.get('val_fraction')!r}; "
                  "set it above 0, e.g. 0.1.")
    output_dir = Path(raw.get("output_dir", f"studies/{path.stem}"))
    return StudySpec(
        path=path, output_dir=output_dir, seed=seed, trainer=dict(raw.get("trainer") or {}), net=net, data=data, base=base,
        methods=methods, families=families, pairs=pairs, matrix=matrix, paths_from=paths_from, evaluation=evaluation, analyses=analyses,
        seeds=seeds, data_class=data_class,
    )
