"""The study's analyses: a relearning attack that measures relearning, analyses that cannot end a study,
collapsed and diverged endpoints named, and the analyses on the stages' own split (class forgetting)."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.models import SmallCNN
from unlearn_mc.study import load_study, run_study
from unlearn_mc.study import analysis_runs, run as study_run
from unlearn_mc.study.analyses import NonFiniteError, ensemble_metrics, relearn_attack, relearn_split
from unlearn_mc.study.datamodule import study_datamodule
from unlearn_mc.study.endpoint_status import endpoint_statuses

pytestmark = pytest.mark.slow
NET = {"class_path": "unlearn_mc.models.SmallCNN", "init_args": {"in_channels": 1, "num_classes": 10, "width": 8}}
STUDY = {
    "output_dir": "out",
    "seed": 42,
    "trainer": {"accelerator": "cpu", "devices": 1, "check_val_every_n_epoch": 5},
    "net": NET,
    "data": {"dataset": "digits", "forget_rule": "class", "forget_classes": [3]},
    "base": {"epochs": 2},
    "methods": {"ft": {"method": "FineTune", "epochs": 1}},
    "curves": {"families": {"bezier": {"curve": "bezier", "epochs": 1}}, "pairs": [["original", "ft"]]},
    "evaluation": {"t_grid": 3, "bn_batches": 2},
    "analyses": {"ensemble": {"points": [0.5]}, "relearn": {"steps": [2, 4], "forget_fraction": 0.25},
                 "plane": {"models": ["original", "retrain", "ft"], "grid": 2}},
}


def _run(folder: Path, study: dict, name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return folder / run_study(path, say=lambda line: None).report
    finally:
        os.chdir(cwd)


def _pool_indices(dataset: Subset) -> set[int]:
    """The training-pool indices of a (nested) ``Subset`` of the digits pool."""
    if isinstance(dataset.dataset, Subset):
        return {int(dataset.dataset.indices[i]) for i in dataset.indices}
    return {int(i) for i in dataset.indices}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def class_study(tmp_path_factory):
    """The class-forgetting study, run once; the attack's data as ``relearn_attack`` received it, per call."""
    folder = tmp_path_factory.mktemp("class_study")
    calls: list[dict] = []
    attack = analysis_runs.relearn_attack

    def recording(net, fine_tune_data, scored_loader, *args, **kwargs):
        calls.append({"fine_tune": _pool_indices(fine_tune_data), "scored": _pool_indices(scored_loader.dataset)})
        return attack(net, fine_tune_data, scored_loader, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analysis_runs, "relearn_attack", recording)
        report = _run(folder, STUDY)
    return folder, report, calls


def test_class_forgetting_study_reports_statuses_and_relearn_controls(class_study):
    folder, report, _ = class_study
    text = report.read_text()
    assert "## Relearning attack" in text and "## Ensembling along the curve" in text and "Analyses that failed" not in text
    assert "## The plane through original, retrain, ft" in text and "![plane](plane/original--retrain--ft/plane.png)" in text
    assert "2×2 grid" in text and (folder / "out" / "plane" / "original--retrain--ft" / "plane.png").is_file()
    methods = _rows(folder / "out" / "methods.csv")
    assert [row["model"] for row in methods] == ["original", "retrain", "ft"]
    assert all(row["status"] in ("ok", "collapsed", "diverged") for row in methods)
    relearn = _rows(folder / "out" / "relearn.csv")
    endpoints = {(row["model"], row["attack"]) for row in relearn if not row["curve"]}
    assert endpoints == {(m, a) for m in ("original", "retrain", "ft") for a in ("forget", "retain_only")}
    assert all(row["status"] == "ok" and row["endpoint_status"] for row in relearn)
    retrain = next(row for row in relearn if row["model"] == "retrain" and row["attack"] == "forget")
    assert float(retrain["gain_beyond_retrain"]) == 0.0
    for row in relearn:  # every value a number, test accuracy measured before and after
        assert all(math.isfinite(float(row[key])) for key in ("forget_acc_step_0", "forget_acc_step_4", "test_acc_before", "test_acc_after"))
    assert "endpoint_status" in _rows(folder / "out" / "curves.csv")[0]


def test_recovery_is_scored_on_the_held_out_part_of_the_forget_set_only(class_study, monkeypatch):
    folder, _, calls = class_study
    monkeypatch.chdir(folder)  # the study's output_dir is relative
    split = json.loads((folder / "out" / "split.json").read_text())
    recorded = json.loads((folder / "out" / "relearn_split.json").read_text())
    fine_tune, scored = set(recorded["fine_tune"]), set(recorded["scored"])
    assert not fine_tune & scored and fine_tune | scored == set(split["forget"])
    assert len(fine_tune) == round(0.25 * len(split["forget"]))
    # each model is attacked twice, on the D_f part (forget) and on D_r (retain_only), and always scored on the held-out part
    assert len(calls) == 2 * 5  # original, retrain, ft, the bezier curve's best t and its member t=0.5
    assert all(call["scored"] == scored for call in calls)
    assert all(call["fine_tune"] == fine_tune for call in calls[0::2])
    assert all(not call["fine_tune"] & set(split["forget"]) for call in calls[1::2])
    # the original's accuracy before the attack, recomputed on exactly the scored samples
    datamodule = study_datamodule(load_study(folder / "study.yaml"))
    net = load_network_weights(SmallCNN(**NET["init_args"]), folder / "out" / "stages" / "original" / "model.ckpt").eval()
    forget = datamodule.scoring_dataset("forget")
    positions = [split["forget"].index(index) for index in sorted(scored)]
    with torch.no_grad():
        correct = [int(net(forget[p][0][None]).argmax()) == int(forget[p][1]) for p in positions]
    row = next(r for r in _rows(folder / "out" / "relearn.csv") if r["model"] == "original" and r["attack"] == "forget")
    assert float(row["forget_acc_step_0"]) == pytest.approx(sum(correct) / len(correct), abs=1e-9)
    assert int(row["scored_n"]) == len(scored)


def test_a_diverging_attack_is_a_non_finite_row_and_the_report_says_miscalibrated(class_study):
    folder, _, _ = class_study
    study = copy.deepcopy(STUDY)
    study["analyses"]["relearn"].update(lr=1e30, attacks=["forget"])
    text = _run(folder, study, "diverging.yaml").read_text()
    relearn = _rows(folder / "out" / "relearn.csv")
    assert all(row["status"] == "non-finite" and "attack stopped" in row["reason"] for row in relearn)
    assert "miscalibrated" in text and "Non-finite attacks" in text and "Analyses that failed" not in text
    assert (folder / "out" / "ensemble.csv").is_file()


def test_an_analysis_that_raises_is_named_and_the_rest_is_written(class_study, monkeypatch):
    folder, _, _ = class_study

    def broken(*args, **kwargs):
        raise RuntimeError("the attack broke\nin two lines")

    monkeypatch.setattr(analysis_runs, "_relearn_rows", broken)
    monkeypatch.setattr("unlearn_mc.study.report_tables.intermediate_rows", broken)
    monkeypatch.setattr(study_run, "run_plane_analysis", broken)
    text = _run(folder, STUDY, "broken.yaml").read_text()
    failed = text.split("## Analyses that failed", 1)[1].split("\n## ", 1)[0]
    assert "- relearn: RuntimeError: the attack broke in two lines." in failed
    assert "- plane: RuntimeError: the attack broke in two lines." in failed and "## The plane through" not in text
    assert "- intermediate_points: RuntimeError: the attack broke in two lines." in failed
    assert text.index("## Analyses that failed") < text.index("## Methods")
    out = folder / "out"
    assert not (out / "relearn.csv").exists() and not (out / "intermediate_points.csv").exists()  # no stale table
    for table in ("methods", "curves", "ensemble", "bn_recalibration"):
        assert (out / f"{table}.csv").is_file()
    assert "RuntimeError" in (out / "analysis_failures.log").read_text()


def test_a_collapsed_endpoint_is_named_and_on_collapse_stop_refuses(class_study):
    folder, _, _ = class_study
    study = copy.deepcopy(STUDY)
    study["methods"]["ga_big"] = {"method": "GradientAscent", "epochs": 2, "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.5}}}
    study["curves"]["pairs"] = [["original", "ga_big"]]
    study["curves"]["families"] = {"linear": {"curve": "linear"}}
    study["analyses"] = {}
    text = _run(folder, study, "collapse.yaml").read_text()
    status = {row["model"]: row["status"] for row in _rows(folder / "out" / "methods.csv")}
    assert status["ga_big"] == "collapsed" and status["original"] == "ok"
    top = text.split("## Methods", 1)[0]
    assert "## Collapsed or diverged endpoints" in top and "ga_big collapsed: its retain accuracy" in top
    assert _rows(folder / "out" / "curves.csv")[0]["endpoint_status"] == "ga_big collapsed"

    study["evaluation"]["on_collapse"] = "stop"
    study["curves"]["pairs"] = [["retrain", "ga_big"]]  # a curve not fitted yet: the stop comes before it
    with pytest.raises(UnlearnMCError) as refused:
        _run(folder, study, "stop.yaml")
    message = str(refused.value)
    assert message.startswith("ga_big collapsed: its retain accuracy") and "evaluation.on_collapse is 'stop'" in message
    assert message.count(". ") == 0 and message.endswith(".")
    assert not (folder / "out" / "stages" / "curve-linear-retrain--ga_big").exists()


def test_the_study_floor_marks_collapse(class_study, monkeypatch):
    """collapse_floor raises the threshold above 1.5 × chance: every endpoint below it is collapsed."""
    folder, _, _ = class_study
    monkeypatch.chdir(folder)
    study = load_study(folder / "study.yaml")
    results = {stage: json.loads((folder / "out" / "stages" / stage / "result.json").read_text()) for stage in ("original", "retrain", "method-ft")}
    assert {entry["status"] for entry in endpoint_statuses(study, results, 10).values()} == {"ok"}
    study.evaluation["collapse_floor"] = 1.0
    statuses = endpoint_statuses(study, results, 10)
    assert all(entry["status"] == "collapsed" and "collapse_floor 1.0" in entry["reason"] for entry in statuses.values())
    diverged = copy.deepcopy(results)
    diverged["method-ft"]["stop_reason"] = "the loss became nan at epoch 0, step 3; training stopped"
    assert endpoint_statuses(study, diverged, 10)["ft"]["status"] == "diverged"


def test_relearn_split_and_a_non_finite_attack_without_a_study():
    fine_tune, scored = relearn_split(40, 0.25, seed=3)
    assert len(fine_tune) == 10 and not set(fine_tune) & set(scored) and sorted([*fine_tune, *scored]) == list(range(40))
    with pytest.raises(UnlearnMCError, match="leaves none to score"):
        relearn_split(3, 0.9, seed=0)
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 3, (32,)))
    loader = DataLoader(data, batch_size=8)
    net = nn.Linear(4, 3)
    record = relearn_attack(net, data, loader, loader, [2, 4], lr=0.1)
    assert record.status == "ok" and set(record.forget_acc) == {0, 2, 4} and math.isfinite(record.test_acc_after)
    blown = relearn_attack(net, data, loader, loader, [2, 4], lr=float("inf"))
    assert blown.status == "non-finite" and "step 1" in blown.reason and math.isnan(blown.forget_acc[4]) and math.isnan(blown.test_acc_after)


def test_an_ensemble_member_with_non_finite_outputs_raises_a_named_error():
    class NaNCurve:
        def eval(self):
            return self

        def network_fn(self, t):
            return lambda inputs: torch.full((len(inputs), 3), math.nan)

    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 3, (8,))), batch_size=4)
    with pytest.raises(NonFiniteError, match=r"t=0.50 gave non-finite outputs on the forget split"):
        ensemble_metrics(NaNCurve(), [0.5], {"forget": loader}, None, None, torch.device("cpu"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"evaluation": {"collapse_floor": 1.5}}, r"evaluation.collapse_floor=1.5 must be an accuracy in \[0, 1\]"),
        ({"evaluation": {"on_collapse": "halt"}}, "evaluation.on_collapse='halt' must be 'report'"),
        ({"analyses": {"relearn": {"forget_fraction": 1.0}}}, "forget_fraction=1.0 must lie strictly between 0 and 1"),
        ({"analyses": {"relearn": {"lr": 0}}}, "analyses.relearn.lr=0 must be a positive number"),
        ({"analyses": {"relearn": {"attacks": ["retain"]}}}, r"analyses.relearn.attacks=\['retain'\] must list 'forget'"),
        ({"analyses": {"relearn": {"step": [2]}}}, r"analyses.relearn has unknown key\(s\) \['step'\]"),
    ],
)
def test_bad_analysis_settings_are_refused_in_one_sentence(tmp_path, change, message):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY | change))
    with pytest.raises(UnlearnMCError, match=message) as refused:
        load_study(path)
    assert str(refused.value).count(". ") == 0


def test_a_study_on_28x28_arrays_with_random_forgetting_finishes_with_its_report(tmp_path):
    """The digits study pointed at another real 28×28 dataset through ``dataset: npz`` (here the digits themselves,
    upsampled to 28×28 and split into a train and a test part) trains every stage and writes every analysis."""
    import numpy as np
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = F.interpolate(torch.tensor(digits.images[:600, None] / 16.0, dtype=torch.float32), size=(28, 28), mode="bilinear")
    x, y = ((images - images.mean()) / images.std()).numpy(), digits.target[:600]
    np.savez(tmp_path / "arrays28.npz", x=x[:500], y=y[:500], x_test=x[500:], y_test=y[500:])
    study = copy.deepcopy(STUDY)
    study["data"] = {"dataset": "npz", "data_dir": str(tmp_path / "arrays28.npz"), "forget_ratio": 0.1}
    study["methods"] = {"ga": {"method": "GradientAscent", "epochs": 1}, "ft": {"method": "FineTune", "epochs": 1}}
    study["curves"] = {"families": {"bezier": {"curve": "bezier", "epochs": 1}}, "pairs": [["ga", "ft"]]}
    report = _run(tmp_path, study)
    text = report.read_text()
    assert "## Relearning attack" in text and "## Analyses that failed" not in text
    assert {row["status"] for row in _rows(tmp_path / "out" / "methods.csv")} <= {"ok", "collapsed", "diverged"}
    controls = {row["model"] for row in _rows(tmp_path / "out" / "relearn.csv") if not row["curve"]}
    assert {"original", "retrain", "ga", "ft"} <= controls
