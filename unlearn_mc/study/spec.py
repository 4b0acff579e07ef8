"""The study YAML: reading it, filling defaults, and refusing a bad one before any training.

A study lists the data and network, the base training recipe, the unlearning methods (each
an endpoint, possibly a variant of another through ``like``), the curve families, which pairs
of endpoints to connect, the evaluation grid and the analyses. See ``configs/digits/study.yaml``.
``load_study`` checks the whole file (the parts live in ``study_file``, ``method_specs`` and
``curve_analysis_specs``) and returns a ``StudySpec`` (``spec_types``) with every default of
``unlearn_mc.study.defaults`` filled in.
"""

from __future__ import annotations

import importlib
import itertools
from pathlib import Path

from unlearn_mc.study import defaults
from unlearn_mc.study.curve_analysis_specs import check_ensemble, check_relearn, family_specs
from unlearn_mc.study.method_specs import method_specs, resolve_method_class
from unlearn_mc.study.spec_checks import class_spec, fail, seed_list, unknown_keys
from unlearn_mc.study.spec_types import DATA_MODULE, FIXED_ENDPOINTS, STUDY_KEYS, FamilySpec, MethodSpec, StudySpec
from unlearn_mc.study.study_file import merged_over, read_study_file

__all__ = ["FamilySpec", "MethodSpec", "StudySpec", "load_study", "merged_over", "read_study_file", "resolve_method_class"]


def _data_module_class(class_path: str) -> type:
    """The class ``class_path`` names; it must be an ``UnlearningDataModule`` (the study reads its split and loaders)."""
    from unlearn_mc.data import UnlearningDataModule

    module_name, _, name = str(class_path).rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name, None) if module_name else None
    except ImportError:
        found = None
    if not (isinstance(found, type) and issubclass(found, UnlearningDataModule)):
        fail(f"data.class_path={class_path!r} is not an UnlearningDataModule class; use e.g. unlearn_mc.data.TextDataModule or leave it out.")
    return found


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study YAML; every error is one ``UnlearnMCError`` sentence, raised before any training."""
    from unlearn_mc.curves.evaluate_curve import make_t_grid

    path = Path(path)
    raw = read_study_file(path)
    unknown_keys("the study", raw, STUDY_KEYS)
    if "seed" in raw and "seeds" in raw:
        fail("the study sets both seed and seeds; keep one (seeds: [..] runs every stage once per seed).")
    seeds = seed_list(raw["seeds"], "seeds") if "seeds" in raw else [raw.get("seed", defaults.SEED)]
    if isinstance(seeds[0], bool) or not isinstance(seeds[0], int):
        fail(f"seed={seeds[0]!r} must be an integer.")
    seed = seeds[0]
    data = dict(raw.get("data") or defaults.DATA)
    data.pop("split_file", None)  # the study keeps its own split
    data_class = data.pop("class_path", DATA_MODULE)  # e.g. unlearn_mc.data.TextDataModule, with the other keys its arguments
    data_module = _data_module_class(data_class)
    data_module(**data, split_file="unused.json")  # validates every data setting; reads nothing
    net = class_spec(raw.get("net"), "net")
    base = dict(raw.get("base") or {})
    base.setdefault("epochs", defaults.BASE_EPOCHS)
    base["optimizer"] = class_spec(base.get("optimizer", defaults.BASE_OPTIMIZER), "base.optimizer")
    methods = method_specs(raw.get("methods"), seeds)
    curves = dict(raw.get("curves") or {})
    unknown_keys("curves", curves, {"families", "pairs", "matrix", "paths_from"})
    families = family_specs(curves.get("families"))
    endpoints = [*FIXED_ENDPOINTS, *methods]
    matrix = list(curves.get("matrix") or [])
    pairs: list[tuple[str, str]] = []
    for where, pair in [("curves.matrix", list(p)) for p in itertools.combinations(matrix, 2)] + [("curves.pairs", p) for p in curves.get("pairs") or []]:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            fail(f"{where} entry {pair!r} must be a pair [start, end].")
        for name in pair:
            if name not in endpoints:
                fail(f"{where} names endpoint {name!r}, which the study does not train; use one of {', '.join(endpoints)}.")
        if pair[0] == pair[1]:
            fail(f"{where} entry {list(pair)} connects an endpoint to itself.")
        if tuple(pair) not in pairs:
            pairs.append(tuple(pair))
    for name in matrix:
        if name not in endpoints:
            fail(f"curves.matrix names endpoint {name!r}, which the study does not train; use one of {', '.join(endpoints)}.")
    paths_from = list(curves.get("paths_from") or [])
    for name in paths_from:
        if name not in FIXED_ENDPOINTS:
            fail(f"curves.paths_from names {name!r}; use original and/or retrain.")
    evaluation = dict(raw.get("evaluation") or {})
    unknown_keys("evaluation", evaluation, {*defaults.EVALUATION, "bn_batches", "collapse_floor"})
    evaluation = {**defaults.EVALUATION, **evaluation}  # tolerance: the MCU tolerance, read by the curve stages and the report
    floor = evaluation.get("collapse_floor")
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0.0 <= floor <= 1.0):
        fail(f"evaluation.collapse_floor={floor!r} must be an accuracy in [0, 1] (or absent for 1.5 × chance only).")
    if evaluation["on_collapse"] not in ("report", "stop"):
        fail(f"evaluation.on_collapse={evaluation['on_collapse']!r} must be 'report' (mark collapsed endpoints) or 'stop'.")
    evaluation["t_grid"] = make_t_grid(evaluation["t_grid"])
    analyses = dict(raw.get("analyses") or {})
    unknown_keys("analyses", analyses, {"ensemble", "relearn", "plane", "lira"})
    if analyses.get("ensemble") is not None:
        analyses["ensemble"] = check_ensemble(analyses["ensemble"])
    if analyses.get("relearn") is not None:
        analyses["relearn"] = check_relearn(analyses["relearn"])
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
            fail(f"analyses.lira attacks the validation set as non-members, but data.val_fraction={data.get('val_fraction')!r}; "
                  "set it above 0, e.g. 0.1.")
    output_dir = Path(raw.get("output_dir", f"studies/{path.stem}"))
    return StudySpec(
        path=path, output_dir=output_dir, seed=seed, trainer=dict(raw.get("trainer") or {}), net=net, data=data, base=base,
        methods=methods, families=families, pairs=pairs, matrix=matrix, paths_from=paths_from, evaluation=evaluation, analyses=analyses,
        seeds=seeds, data_class=data_class,
    )
