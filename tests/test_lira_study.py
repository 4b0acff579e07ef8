"""``analyses.lira`` in a study and ``unlearn-mc lira``: shadow stages planned, run once and reused, ``lira.csv`` with
the contract columns, per-example scores, TensorBoard along t, bad input refused before anything is written."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from unlearn_mc.cli import main
from unlearn_mc.study import load_study, run_study
from unlearn_mc.study.plan import plan_study

STUDY = {
    "output_dir": "out",
    "seed": 42,
    "trainer": {"accelerator": "cpu", "devices": 1, "check_val_every_n_epoch": 5},
    "net": {"class_path": "unlearn_mc.models.SmallCNN", "init_args": {"in_channels": 1, "num_classes": 10, "width": 8}},
    "data": {"dataset": "digits", "forget_rule": "random", "forget_ratio": 0.1},
    "base": {"epochs": 1},
    "methods": {"ft": {"method": "FineTune", "epochs": 1}},
    "curves": {"families": {"linear": {"curve": "linear"}}, "pairs": [["original", "ft"]]},
    "evaluation": {"t_grid": 3, "bn_batches": 2},
    "analyses": {"lira": {"shadows": 2, "curves": "all", "points": [0.5], "bootstrap": 20}},
}
CONTRACT = ["model", "attack", "auc", "auc_ci", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"]


def _write(folder: Path, study: dict) -> Path:
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _in(folder: Path, function, *args):
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return function(*args)
    finally:
        os.chdir(cwd)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_shadow_stages_are_planned_from_the_base_recipe(tmp_path):
    study = _in(tmp_path, load_study, _write(tmp_path, STUDY))
    stages = {stage.id: stage for stage in plan_study(study)}
    assert [s for s in stages if s.startswith("shadow-")] == ["shadow-0", "shadow-0-ft", "shadow-1", "shadow-1-ft"]
    original, shadow = stages["original"].config, stages["shadow-1"].config
    assert shadow["model"] == original["model"] and shadow["trainer"] == original["trainer"]
    assert shadow["data"]["init_args"] == {**original["data"]["init_args"], "shadow_count": 2, "shadow_index": 1, "shadow_seed": 0}
    unlearning = stages["shadow-1-ft"].config["model"]["init_args"]
    assert unlearning["original"].endswith("stages/shadow-1/model.ckpt") and unlearning["retrain"] is None


@pytest.mark.slow
def test_lira_in_a_study_and_on_the_command_line(tmp_path):
    lines: list[str] = []
    path = _write(tmp_path, STUDY)
    _in(tmp_path, run_study, path, lines.append)
    out = tmp_path / "out"
    assert any(line.startswith("lira: 2 shadow models × 1 epochs") for line in lines)
    rows = _rows(out / "lira.csv")
    assert list(rows[0])[:6] == CONTRACT
    assert {(r["model"], r["attack"]) for r in rows} == {
        ("original", "online"), ("original", "offline"), ("retrain", "online"), ("retrain", "offline"),
        ("ft", "online"), ("ft", "offline"), ("ft", "ulira"), ("t=0.50", "online"), ("t=0.50", "offline"), ("t=0.50", "ulira")}
    for row in rows:
        assert 0.0 <= float(row["auc"]) <= 1.0 and float(row["auc_ci"]) >= 0.0
        assert float(row["tpr_at_0.1pct_fpr"]) <= float(row["tpr_at_1pct_fpr"]) + 1e-12
    split = json.loads((out / "split.json").read_text())
    scores = _rows(out / "lira_scores.csv")
    assert len(scores) == 4 * (split["sizes"]["forget"] + split["sizes"]["val"])
    assert {int(r["index"]) for r in scores if r["member"] == "1"} == set(split["forget"])
    assert (out / "lira_shadows.npz").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = EventAccumulator(str(out / "tensorboard" / "curve-linear-original--ft")).Reload()
    assert [(e.step, e.value) for e in logged.Scalars("curve/lira_online_auc")] == [
        (500, pytest.approx(float(next(r["auc"] for r in rows if r["model"] == "t=0.50" and r["attack"] == "online"))))]
    assert "## Membership inference (LiRA)" in (out / "report.md").read_text()

    # a second run reuses every shadow stage and recomputes the same table
    finished = {p: p.stat().st_mtime_ns for p in (out / "stages").glob("shadow-*/result.json")}
    lines.clear()
    _in(tmp_path, run_study, path, lines.append)
    assert len(finished) == 4 and all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert sum("shadow-" in line and "finished earlier, reused" in line for line in lines) == 4
    assert _rows(out / "lira.csv") == rows

    # the command line: any finished endpoint, results never overwritten
    assert _in(tmp_path, main, ["lira", "--config", str(path), "--models", "original", "ft", "--out", "cli"]) == 0
    cli_rows = _rows(tmp_path / "cli" / "lira.csv")
    assert [(r["model"], r["attack"]) for r in cli_rows] == [("original", "online"), ("original", "offline"),
                                                             ("ft", "online"), ("ft", "offline"), ("ft", "ulira")]
    assert [r["auc"] for r in cli_rows] == [r["auc"] for r in rows if r["model"] in ("original", "ft")]
    assert _in(tmp_path, main, ["lira", "--config", str(path), "--models", "original", "--out", "cli"]) == 2

    # changing K changes every shadow's training set: refused, not silently redone
    changed = {**STUDY, "analyses": {"lira": {**STUDY["analyses"]["lira"], "shadows": 3}}}
    assert _in(tmp_path, main, ["study", "--config", str(_write(tmp_path, changed))]) == 2


@pytest.mark.parametrize(("lira", "data", "message"), [
    ({"shadows": 1}, {}, "analyses.lira.shadows=1"),
    ({"attacks": ["loss"]}, {}, "analyses.lira.attacks="),
    ({"curves": ["curve-bezier-original--ft"]}, {}, "analyses.lira.curves="),
    ({"shadows": 2}, {"val_fraction": 0.0}, "val_fraction"),
])
def test_bad_lira_input_exits_2_and_writes_nothing(tmp_path, capsys, lira, data, message):
    study = {**STUDY, "data": {**STUDY["data"], **data}, "analyses": {"lira": lira}}
    assert _in(tmp_path, main, ["study", "--config", str(_write(tmp_path, study))]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_lira_command_refuses_a_study_without_lira_or_unfinished_models(tmp_path, capsys):
    no_lira = {**STUDY, "analyses": {}}
    assert _in(tmp_path, main, ["lira", "--config", str(_write(tmp_path, no_lira))]) == 2
    assert "has no analyses.lira" in capsys.readouterr().err
    assert _in(tmp_path, main, ["lira", "--config", str(_write(tmp_path, STUDY)), "--models", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err
    assert _in(tmp_path, main, ["lira", "--config", str(_write(tmp_path, STUDY)), "--models", "ft"]) == 2
    assert "not finished" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_shadow_datamodule_serves_its_half(tmp_path):
    from unlearn_mc.data import UnlearningDataModule
    from unlearn_mc.data.shadows import shadow_membership, shadow_pool

    split_file = str(tmp_path / "split.json")
    plain = UnlearningDataModule(dataset="digits", split_file=split_file)
    plain.setup()
    shadow = UnlearningDataModule(dataset="digits", split_file=split_file, shadow_count=4, shadow_index=2, shadow_seed=7)
    shadow.setup()
    pool = shadow_pool(plain.split)
    expected = pool[shadow_membership(len(pool), 4, 7)[2]]
    assert shadow._stream_indices("full") == expected.tolist()
    assert set(shadow._stream_indices("forget")) <= set(plain.split.forget) | set(plain.split.val)
    assert {name: len(d) for name, d in shadow.eval_datasets().items()} == {name: len(d) for name, d in plain.eval_datasets().items()}
    assert np.isin(expected, plain.split.test).sum() == 0
