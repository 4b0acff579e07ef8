"""The shipped curve configs through ``unlearn-mc``: ``validate`` of a straight line, ``fit`` of a Bezier curve."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from unlearn_mc.cli import main
from unlearn_mc.curves import CurveModule
from unlearn_mc.lightning_cli import resolved_config
from unlearn_mc.models import SmallCNN

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, name: str, start: Path, end: Path, **evaluation) -> Path:
    """The shipped config (as ``fit`` reads it) with the test's width-16 endpoints and a short grid."""
    config = resolved_config(ROOT / "configs" / "digits" / "curve" / f"{name}.yaml")
    model = config["model"]["init_args"]
    model.update(start=str(start), end=str(end))
    model["net"]["init_args"]["width"] = 16
    if model.get("objective_args"):
        model["objective_args"]["original"] = str(start)
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("CurveEvaluation"):
            callback["init_args"].update(evaluation)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_validate_evaluates_the_straight_line_without_training(digits_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, "linear_ga_rl", digits_models.original, digits_models.retrain, t_grid=3)
    assert main(["validate", "--config", str(config), "--model.init_args.retrain", str(digits_models.retrain),
                 "--trainer.enable_progress_bar=false"]) == 0
    run = tmp_path / "lightning_logs" / "version_0"
    with open(run / "curve_eval.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["t"]) for row in rows] == [0.0, 0.5, 1.0]
    summary = json.loads((run / "curve_summary.json").read_text())
    assert summary["curve"] == {"family": "linear", "num_bends": 2}
    assert summary["best"]["criterion"] == "avg_gap"
    exported = tmp_path / "checkpoints" / "digits" / "curves" / "linear_ga_rl_best.pt"
    assert exported.is_file()


def test_fit_of_the_graddiff_bezier_config_saves_a_curve_checkpoint(digits_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, "bezier_ga_rl_graddiff", digits_models.original, digits_models.retrain, t_grid=3, figure=False)
    assert main(["fit", "--config", str(config), "--model.init_args.retrain", str(digits_models.retrain), "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
                 "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false"]) == 0
    checkpoint = tmp_path / "checkpoints" / "digits" / "curves" / "bezier_ga_rl_graddiff.ckpt"
    curve = CurveModule.load_curve(checkpoint, SmallCNN(in_channels=1, num_classes=10, width=16))
    assert curve.num_bends == 3 and curve.hparams.objective == "GradDiff"
    assert (tmp_path / "lightning_logs" / "version_0" / "curve_summary.json").is_file()
