"""The one-command study: end to end, reuse, resume after a kill, and refusal of bad study files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from unlearn_mc.cli import main
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.study import load_study, run_study
from unlearn_mc.study.plan import plan_study

pytestmark = [pytest.mark.slow]
STUDY = {
    "output_dir": "out",
    "seed": 42,
    "trainer": {"accelerator": "cpu", "devices": 1, "check_val_every_n_epoch": 5},
    "net": {"class_path": "unlearn_mc.models.SmallCNN", "init_args": {"in_channels": 1, "num_classes": 10, "width": 8}},
    "data": {"dataset": "digits", "forget_ratio": 0.1},
    "base": {"epochs": 2},
    "methods": {
        "ga": {"method": "GradientAscent", "epochs": 1, "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01}}},
        "ft": {"method": "FineTune", "epochs": 1},
    },
    "curves": {"families": {"linear": {"curve": "linear"}, "bezier": {"curve": "bezier", "epochs": 1}}, "matrix": ["ga", "ft"], "paths_from": ["original"]},
    "evaluation": {"t_grid": 3, "bn_batches": 2},
    "analyses": {"ensemble": {"points": [0.5]}, "relearn": {"steps": [2, 4]}},
}
TABLES = ("methods", "curves", "intermediate_points", "bn_recalibration", "paths_from_original", "ensemble", "relearn")


def _write(folder: Path, study: dict, name: str = "study.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _results(folder: Path) -> dict[str, dict]:
    found = {}
    for path in sorted((folder / "out" / "stages").glob("*/result.json")):
        result = json.loads(path.read_text())
        found[result["stage"]] = {key: result.get(key) for key in ("metrics", "curve")}
    return found


RESULTS: dict = {}  # what run_study returned in the module's finished study


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        results = run_study(_write(folder, STUDY), say=lambda line: None)
    finally:
        os.chdir(cwd)
    RESULTS["finished"] = results
    return folder, folder / results.report


def test_run_study_returns_what_the_report_prints(finished_study):
    """``run_study`` hands back the study, its stages' results and the tables, without planning the study again."""
    folder, report = finished_study
    results = RESULTS["finished"]
    assert folder / results.report == report and len(results.runs) == 1 and results.wall_s > 0
    run = results.runs[0]
    assert set(run.results) == {stage.id for stage in plan_study(run.study)}
    with open(folder / results.study.output_dir / "methods.csv") as handle:
        written = list(csv.DictReader(handle))
    table = results.method_table()
    assert [row["model"] for row in table] == [row["model"] for row in written]
    for row, line in zip(table, written):
        assert float(line["forget_acc"]) == pytest.approx(row["forget_acc"], abs=1e-12)
    assert [row["curve"] for row in results.curve_summary()] == [stage.id for stage in plan_study(run.study) if stage.kind == "curve"]


def test_study_runs_end_to_end_and_reports_every_table(finished_study):
    folder, report = finished_study
    text = report.read_text()
    for heading in ("## Methods", "## Curves", "## BatchNorm statistics at the endpoints", "## Connectivity between methods", "## Original → unlearned", "## Intermediate points",
                    "## Ensembling along the curve", "## Relearning attack"):
        assert heading in text
    for table in TABLES:
        assert (folder / "out" / f"{table}.csv").is_file()
    for figure in ("barriers_linear.png", "barriers_bezier.png", "paths_from_original.png", "relearn.png"):
        assert f"({figure})" in text and (folder / "out" / figure).is_file()
    assert set(_results(folder)) == {"original", "retrain", "method-ga", "method-ft", "curve-linear-ga--ft", "curve-bezier-ga--ft",
                                     "curve-line-original--ga", "curve-line-original--ft"}
    assert (folder / "out" / "tensorboard" / "curve-bezier-ga--ft").is_dir()


def test_endpoint_table_sets_own_statistics_beside_the_curve_ends(finished_study):
    """Each endpoint's row holds its stage metrics and exactly the t = 0 / t = 1 row of the named curve."""
    folder, _ = finished_study
    results = _results(folder)
    with open(folder / "out" / "bn_recalibration.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["model"] for row in rows} == {"original", "ga", "ft"}  # retrain ends no curve of this study
    stage_of = {"original": "original", "retrain": "retrain", "ga": "method-ga", "ft": "method-ft"}
    for row in rows:
        own = results[stage_of[row["model"]]]["metrics"]
        curve = results[row["curve"]]["curve"]
        start = row["curve"].split("-", 2)[2].split("--")[0]
        end_row = curve["rows"][0 if start == row["model"] else -1]
        shifts = []
        for column in ("forget_acc", "retain_acc", "test_acc", "mia_efficacy"):
            assert float(row[f"{column}_own"]) == pytest.approx(own[column], abs=1e-9)
            assert float(row[f"{column}_recalibrated"]) == pytest.approx(end_row[column], abs=1e-9)
            shifts.append(abs(own[column] - end_row[column]))
        assert float(row["max_shift"]) == pytest.approx(max(shifts), abs=1e-9)


def test_second_run_reuses_every_finished_stage(finished_study, monkeypatch):
    folder, _ = finished_study
    monkeypatch.chdir(folder)
    before = {p: p.stat().st_mtime_ns for p in (folder / "out" / "stages").rglob("*") if p.is_file()}
    lines: list[str] = []
    run_study(folder / "study.yaml", say=lines.append)
    stage_lines = [line for line in lines if line.startswith("[")]
    assert len(stage_lines) == 8 and all(line.endswith("finished earlier, reused") for line in stage_lines)
    assert before == {p: p.stat().st_mtime_ns for p in (folder / "out" / "stages").rglob("*") if p.is_file()}


def test_a_finished_stage_with_another_config_is_refused(finished_study, monkeypatch):
    folder, _ = finished_study
    monkeypatch.chdir(folder)
    changed = json.loads(json.dumps(STUDY))
    changed["methods"]["ga"]["epochs"] = 2
    with pytest.raises(UnlearnMCError, match=r"stage 'method-ga' was finished with another config \(trainer.max_epochs was 1, now 2\)"):
        run_study(_write(folder, changed, "changed.yaml"), say=lambda line: None)


def test_a_study_killed_mid_stage_resumes_to_the_same_results(finished_study, tmp_path):
    folder, _ = finished_study
    path = _write(tmp_path, STUDY)
    process = subprocess.Popen([sys.executable, "-m", "unlearn_mc.cli", "study", "--config", str(path)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = tmp_path / "out" / "stages" / "method-ga"
    deadline = time.time() + 240
    while not started.is_dir() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert started.is_dir() and not (started / "result.json").exists()  # killed inside the stage
    assert (tmp_path / "out" / "stages" / "retrain" / "result.json").is_file()
    lines: list[str] = []
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        run_study(path, say=lines.append)
    finally:
        os.chdir(cwd)
    assert "[1/8] original: finished earlier, reused" in lines
    assert "[3/8] method-ga: running (fit)" in lines
    assert _results(tmp_path) == _results(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": {"x": {"method": "Forgetful"}}}, "unknown method 'Forgetful' in methods.x"),
        ({"curves": {"families": {"linear": {}}, "pairs": [["ga", "nobody"]]}}, "curves.pairs names endpoint 'nobody'"),
        ({"evaluation": {"t_grid": []}}, r"t_grid=\[\] is empty"),
        ({"curves": {"families": {"spline": {}}}}, "unknown curve family 'spline'"),
        ({"data": {"dataset": "digits", "forget_ratio": 1.5}}, "forget_ratio=1.5"),
    ],
)
def test_bad_study_files_are_refused_before_any_training(tmp_path, change, message):
    path = _write(tmp_path, STUDY | change)
    with pytest.raises(UnlearnMCError, match=message):
        load_study(path)


def test_cli_study_refuses_with_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, STUDY | {"evaluation": {"t_grid": []}})
    assert main(["study", "--config", str(path)]) == 2
    assert capsys.readouterr().err.strip() == "unlearn-mc: error: t_grid=[] is empty; use a number of points ≥ 2 or a non-empty list of t in [0, 1]."
    assert not (tmp_path / "out").exists()


def test_a_second_study_on_the_same_folder_is_refused_while_the_first_runs(finished_study, tmp_path, capsys):
    folder, _ = finished_study
    path = _write(tmp_path, STUDY)
    first = subprocess.Popen([sys.executable, "-m", "unlearn_mc.cli", "study", "--config", str(path)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    running = tmp_path / "out" / "stages" / "original"
    deadline = time.time() + 240
    while not running.is_dir() and time.time() < deadline and first.poll() is None:
        time.sleep(0.02)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        status = main(["study", "--config", str(path)])
    finally:
        os.chdir(cwd)
    message = capsys.readouterr().err.strip()
    assert status == 2, message
    assert message.startswith("unlearn-mc: error: the study folder 'out' is in use by process ") and str(first.pid) in message
    assert first.wait(timeout=600) == 0, first.stderr.read()[-3000:]
    assert _results(tmp_path) == _results(folder)  # the first run finished as if alone
    assert not (tmp_path / "out" / ".unlearn-mc.lock").exists()
