"""Calibrating a study's method: ``tune_method`` (what ``unlearn-mc tune`` runs) and ``apply_tuning`` (the ``tune:`` key).

``tune_method`` checks everything before writing anything (the method, the validation split, the output folder, the
study's finished stages, a search already in the folder), then under the study folder's lock runs or reuses the
study's ``original`` and ``retrain`` stages, runs the search and writes its files (``outputs``). A search is
identified by the method's recipe without the searched values, the base stages' configs, the search space, the
floor and the sampler seed (``search.json``): a finished search with the same identity and trial count is reused
without training anything; asked for more trials it goes on from its reused trials; any other change is refused
with one sentence naming it (delete the folder, or use another ``output_dir``), as a changed stage is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

from unlearn_mc.errors import NoFeasibleSetting, UnlearnMCError
from unlearn_mc.study.spec import StudySpec
from unlearn_mc.study.tables import Row
from unlearn_mc.study.tuning.outputs import FIGURE, summary, write_figure, write_fragment, write_trials
from unlearn_mc.study.tuning.space import TuneSettings, tune_settings


@dataclass
class TuneResult:
    directory: Path
    rows: list[Row]
    chosen: dict[str, Any]  # the chosen setting: lr, epochs[, weight]
    number: int
    reused: bool


def tuning_dir(study: StudySpec, method: str) -> Path:
    return study.output_dir / "tuning" / method


def settings_for(study: StudySpec, method: str, flags: dict[str, Any] | None = None) -> TuneSettings:
    """The search for ``method``: the flags given (``--trials`` …) over the entry's ``tune:`` settings over the defaults."""
    if method not in study.methods:
        raise UnlearnMCError(f"unknown method {method!r} for --method; the study {str(study.path)!r} has {', '.join(study.methods)}.")
    spec = study.methods[method]
    flags = {key: value for key, value in (flags or {}).items() if value is not None}
    given = {**(spec.tune or {}), **flags}

    def label(key: str) -> str:
        return f"--{key.replace('_', '-')}" if key in flags else f"methods.{method}.tune{'.' + key if key else ''}"

    return tune_settings(spec.class_path, spec.optimizer, given, label)


def _base_study(study: StudySpec) -> StudySpec:
    return dataclasses.replace(study, methods={}, pairs=[], matrix=[], paths_from=[])


def _identity(study: StudySpec, method: str, settings: TuneSettings) -> dict[str, Any]:
    from unlearn_mc.study.plan import plan_study
    from unlearn_mc.study.stage_runner import config_digest
    from unlearn_mc.study.tuning.objective import trial_stage

    placeholder = {"lr": "searched", "epochs": "searched", **({settings.weight: "searched"} if settings.weight else {})}
    template = trial_stage(study, settings.apply(study.methods[method], placeholder), 0).config
    base = {stage.id: config_digest(stage.config) for stage in plan_study(_base_study(study))}
    identity = {"method": method, "trial_config": template, "base_stages": base, "space": settings.space(),
                "retain_floor": settings.retain_floor, "sampler": {"name": "TPESampler", "seed": study.seed}}
    return json.loads(json.dumps(identity, default=str))


def _check(study: StudySpec, method: str, settings: TuneSettings) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Refuse what cannot be searched, before anything is written; return the identity and the stored search, if any."""
    from unlearn_mc.output_dirs import ensure_writable_dir
    from unlearn_mc.study.stage_runner import _first_difference, check_stages

    if float(study.data.get("val_fraction", 0.1)) <= 0:
        raise UnlearnMCError(f"tuning {method!r} scores trials on the validation split, but data.val_fraction is "
                             f"{study.data.get('val_fraction')}; set it above 0 (e.g. 0.1).")
    ensure_writable_dir(study.output_dir, "study output")
    check_stages(_base_study(study))
    identity = _identity(study, method, settings)
    path = tuning_dir(study, method) / "search.json"
    stored = json.loads(path.read_text()) if path.is_file() else None
    if stored is not None:
        if stored["identity"] != identity:
            raise UnlearnMCError(f"the search in {str(path.parent)!r} was run with other settings "
                                 f"({_first_difference(stored['identity'], identity)}); delete that folder to search again, "
                                 "or set output_dir to a new folder.")
        done = stored.get("trials", 0) if stored.get("finished") else 0
        if done > settings.trials:
            raise UnlearnMCError(f"the search in {str(path.parent)!r} ran {done} trials; ask for at least {done} "
                                 f"(trials={settings.trials} would drop some), or set output_dir to a new folder.")
    return identity, stored


def _header(study: StudySpec, method: str, settings: TuneSettings, row: Row, floor: float) -> list[str]:
    return [f"Calibrated by: unlearn-mc tune --config {study.path} --method {method} {settings.command_flags()}",
            f"TPE (seed {study.seed}) over lr {settings.lr_range[0]:g}-{settings.lr_range[1]:g} (log), epochs "
            f"{settings.epochs_range[0]}-{settings.epochs_range[1]}"
            + (f", {settings.weight} {settings.weight_range[0]:g}-{settings.weight_range[1]:g}" if settings.weight else "")
            + f"; {settings.trials} trials in {tuning_dir(study, method) / 'trials.csv'}",
            f"chosen: trial {row['number']}, validation gap to retrain {row['gap']:.4f} with retain accuracy "
            f"{row['retain_acc_min']:.4f} >= floor {floor:.4f} ({settings.retain_floor:g} x retrain's)"
            + (f" on each of seeds {', '.join(map(str, settings.seeds))}" if settings.seeds and len(settings.seeds) > 1 else "")]


def _no_setting(directory: Path, floor: float, settings: TuneSettings) -> NoFeasibleSetting:
    return NoFeasibleSetting(f"no trial of the search in {str(directory)!r} kept retain accuracy ≥ {floor:.4f} "
                             f"({settings.retain_floor:g} × retrain's); lower the learning rates (--lr-range) or epochs, "
                             "or lower the floor (--retain-floor).")


def tune_method(study: StudySpec, method: str, settings: TuneSettings, say: Callable[[str], None] = print) -> TuneResult:
    """Run (or reuse) the search for ``method`` and return the chosen setting; raise ``NoFeasibleSetting`` when none is."""
    identity, stored = _check(study, method, settings)
    directory = tuning_dir(study, method)
    if stored is not None and stored.get("finished") and stored["trials"] == settings.trials:
        say(f"tune {method}: the search in {directory} finished earlier, reused")
        say(f"tune {method}: {summary(stored['rows'], settings.weight)}")
        return _result(directory, stored["rows"], stored["floor"], settings, reused=True)
    started = time.perf_counter()
    with contextlib.ExitStack() as held:
        if rank_zero_only.rank == 0:
            from unlearn_mc.run_guard import folder_lock

            held.enter_context(folder_lock(study.output_dir, "study folder"))
        rows, floor = _search(study, method, settings, identity, directory, say)
        chosen = next((row for row in rows if row["chosen"]), None)
        write_trials(rows, directory)
        write_figure(rows, directory, method, floor)
        if chosen is not None:
            spec = settings.apply(study.methods[method], _params(chosen, settings))
            write_fragment(spec, study.seed, chosen, _header(study, method, settings, chosen, floor), directory)
        from unlearn_mc.study.stage_runner import write_json_atomically

        wall = time.perf_counter() - started
        write_json_atomically({"identity": identity, "finished": True, "trials": settings.trials, "floor": floor, "wall_s": wall,
                               "optuna": _optuna_version(), "rows": rows}, directory / "search.json")
    say(f"tune {method}: {summary(rows, settings.weight)}")
    say(f"tune {method}: {len(rows)} trials in {wall:.1f} s -> {directory / 'trials.csv'}, {directory / FIGURE}"
        + (f", {directory / 'chosen.yaml'}" if chosen is not None else ""))
    return _result(directory, rows, floor, settings, reused=False)


def _search(study: StudySpec, method: str, settings: TuneSettings, identity: dict, directory: Path,
            say: Callable[[str], None]) -> tuple[list[Row], float]:
    from unlearn_mc.study.datamodule import study_datamodule
    from unlearn_mc.study.stage_runner import run_stages, write_json_atomically
    from unlearn_mc.study.tuning.objective import TrialRunner
    from unlearn_mc.study.tuning.search import run_search

    base = run_stages(_base_study(study), say)
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "search.json").is_file():  # a killed search is recognised (and refused if changed) on the next run
        write_json_atomically({"identity": identity, "finished": False}, directory / "search.json")
    retrain_test = base["retrain"]["metrics"]
    runner = TrialRunner(study, method, settings, directory, study_datamodule(study), retrain_test)
    floor = settings.retain_floor * runner.retrain_val["retain_acc"]
    say(f"tune {method}: {settings.trials} trials (TPE, seed {study.seed}); retrain on validation: gap reference forget "
        f"{runner.retrain_val['forget_acc']:.3f}, retain {runner.retrain_val['retain_acc']:.3f}, val {runner.retrain_val['val_acc']:.3f}, "
        f"MIA {runner.retrain_val['val_mia_efficacy']:.3f}; retain floor {floor:.4f}")
    return run_search(runner, settings, study.seed, floor, runner.retrain_val, retrain_test, say), floor


def _params(row: Row, settings: TuneSettings) -> dict[str, Any]:
    return {key: row[key] for key in ("lr", "epochs", *([settings.weight] if settings.weight else []))}


def _result(directory: Path, rows: list[Row], floor: float, settings: TuneSettings, reused: bool) -> TuneResult:
    chosen = next((row for row in rows if row["chosen"]), None)
    if chosen is None:
        raise _no_setting(directory, floor, settings)
    return TuneResult(directory, rows, _params(chosen, settings), chosen["number"], reused)


def _optuna_version() -> str:
    import optuna

    return optuna.__version__


def apply_tuning(study: StudySpec, say: Callable[[str], None] = print) -> StudySpec:
    """The study with each method that says ``tune:`` run with its search's chosen setting (searching first if needed),
    and each variant (``like:``) of such a method that does not say ``tune:`` itself with the same setting (and its own seed)."""
    tuned = {name: tune_method(study, name, settings_for(study, name), say).chosen
             for name, spec in study.methods.items() if spec.tune_from == name}
    if not tuned:
        return study
    methods = {}
    for name, spec in study.methods.items():
        if spec.tune_from in tuned:
            spec = settings_for(study, spec.tune_from).apply(spec, tuned[spec.tune_from])
        methods[name] = spec
    return dataclasses.replace(study, methods=methods)
