"""The text configs through ``unlearn-mc``: bad input refused in one sentence before anything is written, and the
chain original → two methods → Bezier curve → evaluation along t on a tiny BERT and a generated JSONL."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_cli_bad_input import refused
from text_helpers import write_sentiment_jsonl

from unlearn_mc.checkpoints import network_state_from_file
from unlearn_mc.cli import main
from unlearn_mc.curves import CurveModule
from unlearn_mc.lightning_cli import resolved_config
from unlearn_mc.models import HFSequenceClassifier

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "configs" / "text"
TINY = ["--model.init_args.net.init_args.config.hidden_size=16", "--model.init_args.net.init_args.config.intermediate_size=32"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_missing_data_file(workdir, capsys):
    message = refused(capsys, workdir, ["fit", "--config", str(TEXT / "original.yaml"), "--data.init_args.data_dir=nowhere.jsonl"])
    assert "nowhere.jsonl" in message and "does not exist" in message


def test_a_line_without_its_label(workdir, capsys):
    data = workdir / "inputs" / "bad.jsonl"
    data.parent.mkdir()
    data.write_text('{"text": "a good film", "label": 1}\n{"text": "a bad film"}\n')
    message = refused(capsys, workdir, ["fit", "--config", str(TEXT / "original.yaml"), f"--data.init_args.data_dir={data}"])
    assert "record 2" in message and "'label'" in message


def test_a_model_folder_that_does_not_exist(workdir, capsys):
    data = write_sentiment_jsonl(workdir / "inputs.jsonl", 20)
    config = resolved_config(TEXT / "original.yaml")
    config["model"]["init_args"]["net"]["init_args"] = {"model_dir": "no/model", "num_classes": 2}
    (workdir / "from_folder.yaml").write_text(yaml.safe_dump(config))
    message = refused(capsys, workdir, ["fit", "--config", str(workdir / "from_folder.yaml"), f"--data.init_args.data_dir={data}"])
    assert "'no/model'" in message and "does not exist" in message


def _fit(config: str, data: Path, *extra: str) -> float:
    started = time.perf_counter()
    status = main(["fit", "--config", str(TEXT / config), f"--data.init_args.data_dir={data}", *TINY, "--trainer.max_epochs=1",
                   "--trainer.enable_progress_bar=false", *extra])
    assert status == 0
    return time.perf_counter() - started


@pytest.mark.slow
def test_original_two_methods_bezier_curve_and_evaluation_along_t(workdir):
    data = write_sentiment_jsonl(workdir / "text.jsonl", 80)
    timings = {"original": _fit("original.yaml", data)}
    for method in ("grad_ascent", "grad_diff"):
        timings[method] = _fit(f"unlearn/{method}.yaml", data, "--model.init_args.retrain=null")
    timings["bezier"] = _fit("curve/bezier.yaml", data, "--model.init_args.retrain=null")
    print("CPU seconds per stage:", {name: round(value, 1) for name, value in timings.items()})

    net = HFSequenceClassifier(config={"model_type": "bert", "vocab_size": 256, "hidden_size": 16, "num_hidden_layers": 2,
                                       "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 128})
    curve = CurveModule.load_curve(workdir / "checkpoints/text/curves/bezier.ckpt", net)
    for t, stage in ((0.0, "grad_ascent"), (1.0, "grad_diff")):
        expected = network_state_from_file(net, workdir / f"checkpoints/text/{stage}.ckpt")
        at_t = curve.state_dict_at(t)
        assert all(torch.equal(at_t[key], value) for key, value in expected.items()), f"φ({t}) is not {stage}"
    logs = sorted(workdir.glob("lightning_logs/version_*/curve_eval.csv"))
    rows = list(csv.DictReader(logs[-1].open()))
    assert [float(row["t"]) for row in rows] == pytest.approx([k / 10 for k in range(11)])
    assert {"forget_acc", "retain_acc", "test_acc", "mia_efficacy"} <= set(rows[0])
    assert (logs[-1].parent / "curve_summary.json").is_file()


@pytest.mark.slow
def test_a_text_study_runs_every_stage_and_writes_its_report(workdir):
    data = write_sentiment_jsonl(workdir / "text.jsonl", 80)
    config = yaml.safe_load((TEXT / "study.yaml").read_text())
    config["data"]["data_dir"] = str(data)
    config["output_dir"] = str(workdir / "study")
    config["base"]["epochs"] = 2
    config["net"]["init_args"]["config"].update(hidden_size=16, intermediate_size=32)
    for method in config["methods"].values():
        method["epochs"] = 1
    config["curves"]["families"]["bezier"]["epochs"] = 1
    config["evaluation"]["t_grid"] = 3
    (workdir / "study.yaml").write_text(yaml.safe_dump(config))
    assert main(["study", "--config", str(workdir / "study.yaml")]) == 0
    rows = list(csv.DictReader((workdir / "study" / "methods.csv").open()))
    assert [row["model"] for row in rows] == ["original", "retrain", "grad_ascent", "grad_diff", "npo"]
    assert (workdir / "study" / "report.md").is_file() and (workdir / "study" / "curves.csv").is_file()
