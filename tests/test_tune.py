"""Calibration (``unlearn-mc tune``, the ``tune:`` key): the choice on a case with a known answer, the files, reuse and
reproduction, bad input, and a study running with its calibrated setting."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
import yaml

from unlearn_mc.cli import main
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.study import load_study
from unlearn_mc.study.tuning.calibrate import NoFeasibleSetting, apply_tuning, settings_for, tune_method
from unlearn_mc.study.tuning.objective import SeedRun, TrialOutcome, trial_stage
from unlearn_mc.study.tuning.search import run_search, trial_row

STUDY = {
    "output_dir": "out",
    "seed": 42,
    "trainer": {"accelerator": "cpu", "devices": 1, "check_val_every_n_epoch": 5},
    "net": {"class_path": "unlearn_mc.models.SmallCNN", "init_args": {"in_channels": 1, "num_classes": 10, "width": 8}},
    "data": {"dataset": "digits", "forget_rule": "class", "forget_classes": [3]},
    "base": {"epochs": 2},
    "methods": {
        "ga": {"method": "GradientAscent", "epochs": 1, "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01, "momentum": 0.9}}},
        "gd": {"method": "GradDiff", "epochs": 1, "args": {"alpha": 0.9}},
    },
    "curves": {"families": {"linear": {"curve": "linear"}}, "matrix": ["ga", "gd"]},
    "evaluation": {"t_grid": 3, "bn_batches": 2},
}
CONTRACT = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "gap", "chosen")
REFERENCE = {"forget_acc": 0.0, "retain_acc": 1.0, "val_acc": 1.0, "val_mia_efficacy": 1.0}
OPTIMUM = 0.03  # where the known gap is lowest; above FEASIBLE_UP_TO the retain accuracy falls below the floor
FEASIBLE_UP_TO = 0.01


def _write(folder: Path, study: dict, name: str = "study.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def known_outcome(params: dict) -> TrialOutcome:
    """A trial whose gap is a known function of lr: gap = (|log10(lr / 0.03)| / 2 + 1 − R) / 4 with R = 1 up to
    lr = 0.01 and 0.89 (below the floor 0.9) above; so the feasible optimum is lr = 0.01, gap = log10(3) / 8."""
    forget = min(1.0, abs(math.log10(params["lr"] / OPTIMUM)) / 2)
    retain = 1.0 if params["lr"] <= FEASIBLE_UP_TO else 0.89
    return TrialOutcome([_run(forget, retain)])


def _run(forget: float, retain: float) -> SeedRun:
    metrics = {"forget_acc": forget, "retain_acc": retain}
    return SeedRun(test={**metrics, "test_acc": 1.0, "mia_efficacy": 1.0}, val={**metrics, "val_acc": 1.0, "val_mia_efficacy": 1.0})


def _settings(tmp_path: Path, **flags):
    return settings_for(load_study(_write(tmp_path, STUDY)), "ga", flags)


def test_tpe_finds_the_known_feasible_optimum_and_the_floor_excludes_lower_gaps(tmp_path):
    settings = _settings(tmp_path, trials=30, lr_range=[1e-4, 1.0], epochs_range=[1, 1])
    calls = []

    def runner(number, params):
        calls.append(number)
        return known_outcome(params)

    rows = run_search(runner, settings, seed=42, floor=0.9, reference_val=REFERENCE, reference_test=REFERENCE | {"test_acc": 1.0, "mia_efficacy": 1.0},
                      say=lambda line: None)
    assert calls == list(range(1, 31)) and [row["number"] for row in rows] == calls
    chosen = [row for row in rows if row["chosen"]]
    assert len(chosen) == 1 and sum(row["chosen"] for row in rows) == 1
    best = chosen[0]
    feasible = [row for row in rows if row["feasible"]]
    assert all(row["feasible"] == int(row["lr"] <= FEASIBLE_UP_TO) for row in rows)
    assert best["gap"] == min(row["gap"] for row in feasible) and best["lr"] <= FEASIBLE_UP_TO
    assert any(row["gap"] < best["gap"] for row in rows if not row["feasible"])  # the floor, not the gap, ruled those out
    optimum_gap = math.log10(OPTIMUM / FEASIBLE_UP_TO) / 8
    # within 0.01 of the optimum: lr ≥ 0.0083, a 0.08-decade sliver of the 4 decades searched, which 30 uniform draws hit
    # less than half the time; TPE's margin over sampler seeds 0–5 and 42: 0.000–0.0057 (0.0028 at 42)
    assert best["gap"] - optimum_gap < 0.01, best
    again = run_search(lambda number, params: known_outcome(params), settings, seed=42, floor=0.9, reference_val=REFERENCE,
                       reference_test=REFERENCE | {"test_acc": 1.0, "mia_efficacy": 1.0}, say=lambda line: None)
    assert again == rows  # seeded: the same proposals and the same table


def test_a_setting_trained_with_several_seeds_must_keep_the_floor_on_each():
    reference_test = REFERENCE | {"test_acc": 1.0, "mia_efficacy": 1.0}
    row = trial_row(1, {"lr": 0.01, "epochs": 1}, TrialOutcome([_run(0.0, 1.0), _run(0.2, 0.88)]), REFERENCE, reference_test, floor=0.9)
    assert row["n_seeds"] == 2 and row["retain_acc"] == pytest.approx(0.94) and row["retain_acc_min"] == 0.88
    assert row["gap"] == pytest.approx((0.0 + (0.2 + 0.12) / 4) / 2) and row["feasible"] == 0  # the mean would pass; the worst seed does not
    assert trial_row(1, {"lr": 0.01, "epochs": 1}, TrialOutcome([_run(0.0, 1.0), _run(0.2, 0.91)]), REFERENCE, reference_test, 0.9)["feasible"] == 1


class FakeRunner:
    """Stands in for ``TrialRunner``: the known outcome, no training; counts its trials."""

    calls: list[int] = []

    def __init__(self, study, method, settings, root, datamodule, retrain_test) -> None:
        self.retrain_val = dict(REFERENCE)

    def __call__(self, number, params):
        FakeRunner.calls.append(number)
        return known_outcome(params)


@pytest.fixture
def fake_trials(monkeypatch):
    """``tune_method`` without training: no base stages, no data, trials scored by ``known_outcome``."""
    import unlearn_mc.study.datamodule
    import unlearn_mc.study.stage_runner
    import unlearn_mc.study.tuning.objective

    retrain = {"metrics": {"forget_acc": 0.0, "retain_acc": 1.0, "test_acc": 1.0, "mia_efficacy": 1.0}}
    monkeypatch.setattr(unlearn_mc.study.stage_runner, "run_stages", lambda study, say: {"original": {}, "retrain": retrain})
    monkeypatch.setattr(unlearn_mc.study.datamodule, "study_datamodule", lambda study: None)
    monkeypatch.setattr(unlearn_mc.study.tuning.objective, "TrialRunner", FakeRunner)
    FakeRunner.calls = []
    return FakeRunner


def test_tune_writes_the_table_figure_and_fragment_and_reuses_a_finished_search(tmp_path, monkeypatch, fake_trials, capsys):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, STUDY)
    flags = ["--trials", "12", "--lr-range", "0.0001", "1", "--epochs-range", "2", "2"]
    assert main(["tune", "--config", str(path), "--method", "ga", *flags]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("trial ") for line in lines) == 12  # one line per trial
    folder = tmp_path / "out" / "tuning" / "ga"
    with (folder / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and set(CONTRACT) | {"number", "lr", "epochs", "val_acc", "feasible", "state"} <= set(rows[0])
    chosen = [row for row in rows if row["chosen"] == "1"]
    assert len(chosen) == 1 and {row["chosen"] for row in rows} == {"0", "1"}
    assert float(chosen[0]["gap"]) == min(float(row["gap"]) for row in rows if row["feasible"] == "1")
    assert (folder / "gap_vs_lr.png").stat().st_size > 0
    fragment = yaml.safe_load((folder / "chosen.yaml").read_text())
    assert fragment["methods"]["ga"]["optimizer"]["init_args"] == {"lr": float(chosen[0]["lr"]), "momentum": 0.9}
    assert fragment["methods"]["ga"]["epochs"] == 2 and "Calibrated by: unlearn-mc tune" in (folder / "chosen.yaml").read_text()
    # the fragment is a study's method entry: pasted in, the study trains the chosen setting
    used = load_study(_write(tmp_path, STUDY | {"methods": {**STUDY["methods"], **fragment["methods"]}}, "pasted.yaml")).methods["ga"]
    assert used.optimizer["init_args"]["lr"] == float(chosen[0]["lr"]) and used.epochs == 2
    table = (folder / "trials.csv").read_bytes()
    assert main(["tune", "--config", str(path), "--method", "ga", *flags]) == 0
    assert "finished earlier, reused" in capsys.readouterr().out and fake_trials.calls == list(range(1, 13))
    assert (folder / "trials.csv").read_bytes() == table


def test_no_feasible_trial_chooses_none_and_exits_1(tmp_path, monkeypatch, fake_trials, capsys):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, STUDY)
    assert main(["tune", "--config", str(path), "--method", "ga", "--trials", "3", "--lr-range", "0.05", "1"]) == 1
    assert "no trial of the search" in capsys.readouterr().err
    folder = tmp_path / "out" / "tuning" / "ga"
    with (folder / "trials.csv").open() as handle:
        assert {row["chosen"] for row in csv.DictReader(handle)} == {"0"}
    assert not (folder / "chosen.yaml").exists()
    with pytest.raises(NoFeasibleSetting):  # reused: the same answer
        tune_method(load_study(path), "ga", settings_for(load_study(path), "ga", {"trials": 3, "lr_range": [0.05, 1.0]}), say=lambda line: None)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--method", "nope"], "unknown method 'nope' for --method; the study 'study.yaml' has ga, gd."),
        (["--method", "ga", "--trials", "0"], "--trials 0 must be a positive number of trials, e.g. 20."),
        (["--method", "ga", "--lr-range", "0.1", "0.01"], "--lr-range 0.1 0.01 is not a valid range; give two learning rates 0 < LOW ≤ HIGH"),
        (["--method", "ga", "--lr-range", "0", "0.01"], "--lr-range 0.0 0.01 is not a valid range"),
        (["--method", "ga", "--epochs-range", "0", "3"], "--epochs-range 0 3 is not a valid range; give two whole numbers of epochs"),
        (["--method", "ga", "--weight-range", "0.5", "0.9"], "--weight-range is given, but GradientAscent has no main weight to search"),
        (["--method", "gd", "--weight-range", "0.5", "1.5"], "--weight-range 0.5 1.5 is not a valid range; give two values of alpha"),
        (["--method", "ga", "--retain-floor", "1.5"], "--retain-floor 1.5 must lie in [0, 1]"),
        (["--method", "ga", "--seeds", "42", "42"], "--seeds 42 42 must be distinct whole numbers"),
    ],
)
def test_bad_tune_input_exits_2_with_one_sentence_and_writes_nothing(tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, STUDY)
    assert main(["tune", "--config", "study.yaml", *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"unlearn-mc: error: {message}") and len(error.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["study.yaml"]


def test_tuning_needs_a_validation_split(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, STUDY | {"data": {**STUDY["data"], "val_fraction": 0.0}})
    assert main(["tune", "--config", "study.yaml", "--method", "ga"]) == 2
    assert "scores trials on the validation split, but data.val_fraction is 0.0" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["study.yaml"]


def test_a_changed_search_is_refused_naming_the_change(tmp_path, monkeypatch, fake_trials, capsys):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, STUDY)
    assert main(["tune", "--config", str(path), "--method", "ga", "--trials", "3"]) == 0
    assert main(["tune", "--config", str(path), "--method", "ga", "--trials", "3", "--epochs-range", "1", "2"]) == 2
    assert "was run with other settings (space.epochs_range was [1, 5], now [1, 2])" in capsys.readouterr().err
    assert main(["tune", "--config", str(path), "--method", "ga", "--trials", "2"]) == 2
    assert "ran 3 trials; ask for at least 3" in capsys.readouterr().err
    assert main(["tune", "--config", str(path), "--method", "ga", "--trials", "5"]) == 0  # more trials: the search goes on
    rows = json.loads((tmp_path / "out" / "tuning" / "ga" / "search.json").read_text())["rows"]
    assert len(rows) == 5


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"trials": 0}, r"methods.ga.tune.trials=0 must be a positive number of trials"),
        ({"lr_range": [0.1]}, r"methods.ga.tune.lr_range=\[0.1\] is not a valid range"),
        ({"trails": 3}, r"methods.ga.tune has unknown key\(s\) \['trails'\]"),
        ({"seeds": []}, r"methods.ga.tune.seeds=\[\] must be distinct whole numbers"),
        ("fast", r"methods.ga.tune must be a mapping"),
    ],
)
def test_bad_tune_entries_are_refused_when_the_study_is_read(tmp_path, tune, message):
    study = STUDY | {"methods": {**STUDY["methods"], "ga": {**STUDY["methods"]["ga"], "tune": tune}}}
    with pytest.raises(UnlearnMCError, match=message):
        load_study(_write(tmp_path, study))


def test_a_study_with_tune_runs_the_chosen_setting_and_its_variants_too(tmp_path, monkeypatch, fake_trials):
    monkeypatch.chdir(tmp_path)
    methods = {"ga": {**STUDY["methods"]["ga"], "tune": {"trials": 8, "lr_range": [1e-4, 1.0], "epochs_range": [2, 3]}},
               "ga_seed7": {"like": "ga", "seed": 7}, "gd": STUDY["methods"]["gd"]}
    study = load_study(_write(tmp_path, STUDY | {"methods": methods}))
    assert study.methods["ga"].tune_from == "ga" and study.methods["ga_seed7"].tune_from == "ga" and study.methods["gd"].tune_from is None
    tuned = apply_tuning(study, say=lambda line: None)
    with (tmp_path / "out" / "tuning" / "ga" / "trials.csv").open() as handle:
        chosen = next(row for row in csv.DictReader(handle) if row["chosen"] == "1")
    for name, seed in (("ga", 42), ("ga_seed7", 7)):
        method = tuned.methods[name]
        assert (method.optimizer["init_args"]["lr"], method.epochs, method.seed) == (float(chosen["lr"]), int(chosen["epochs"]), seed)
    assert tuned.methods["gd"] == study.methods["gd"]
    # the study's own stage is the chosen trial's stage: the same config, so the same model
    from unlearn_mc.study.plan import plan_study

    stage = next(stage for stage in plan_study(tuned) if stage.id == "method-ga")
    assert stage.config == trial_stage(tuned, tuned.methods["ga"], int(chosen["number"])).config
    assert apply_tuning(study, say=lambda line: None) == tuned and len(fake_trials.calls) == 8  # reused, nothing retrained


def _table(folder: Path) -> str:
    return (folder / "out" / "tuning" / "ga" / "trials.csv").read_text()


@pytest.mark.slow
def test_a_real_tune_reproduces_when_rerun_and_in_a_fresh_folder_and_the_study_uses_it(tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    methods = {"ga": {**STUDY["methods"]["ga"], "tune": {"trials": 2, "lr_range": [1e-3, 1e-1], "epochs_range": [1, 1], "seeds": [42, 7]}}}
    study = STUDY | {"methods": methods, "curves": {"families": {"linear": {"curve": "linear"}}}}
    for folder in (first, second):
        _write(folder, study)
    monkeypatch.chdir(first)
    assert main(["tune", "--config", "study.yaml", "--method", "ga"]) == 0
    table = _table(first)
    assert main(["tune", "--config", "study.yaml", "--method", "ga"]) == 0
    assert "finished earlier, reused" in capsys.readouterr().out and _table(first) == table
    (first / "out" / "tuning" / "ga" / "search.json").unlink()  # a search to redo: every trial is reused by its digest
    assert main(["tune", "--config", "study.yaml", "--method", "ga"]) == 0
    assert capsys.readouterr().out.count("; reused)") == 2 and _table(first) == table
    monkeypatch.chdir(second)
    assert main(["tune", "--config", "study.yaml", "--method", "ga"]) == 0
    assert _table(second) == table  # seeded sampler, deterministic training: the same table from scratch
    monkeypatch.chdir(first)
    assert main(["study", "--config", "study.yaml"]) == 0
    chosen = next(row for row in csv.DictReader(table.splitlines()) if row["chosen"] == "1")
    trial = json.loads((first / "out" / "tuning" / "ga" / "trials" / f"{int(chosen['number']):03d}" / "seed42" / "result.json").read_text())
    stage = json.loads((first / "out" / "stages" / "method-ga" / "result.json").read_text())
    assert stage["config_sha256"] == trial["config_sha256"] and stage["metrics"] == trial["metrics"]
