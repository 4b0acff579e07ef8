"""The ``unlearn-mc`` command: fit from a config, log the contract's metrics, reject bad values clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from unlearn_mc.cli import main

ROOT = Path(__file__).resolve().parents[1]
VAL_METRICS = ("forget_acc", "retain_acc", "test_acc", "forget_loss", "retain_loss", "test_loss", "mia_efficacy")


def test_fit_from_config_writes_logs_config_and_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = main(["fit", "--config", str(ROOT / "configs/digits/original.yaml"), "--trainer.max_epochs=2",
                   "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false"])
    assert status == 0
    run = tmp_path / "lightning_logs" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_args"]["stage"] == "original"
    events = EventAccumulator(str(run))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {f"val/{name}" for name in VAL_METRICS} <= scalars
    assert "train/loss_epoch" in scalars
    assert (tmp_path / "checkpoints" / "digits" / "original.ckpt").is_file()
    assert (tmp_path / "checkpoints" / "digits" / "split.json").is_file()


@pytest.mark.slow  # a subprocess: the console script end to end
def test_bad_value_exits_non_zero_with_one_sentence(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "unlearn_mc.cli", "fit", "--config", str(ROOT / "configs/digits/original.yaml"), "--data.forget_ratio=1.5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == "unlearn-mc: error: forget_ratio=1.5 must lie strictly between 0 and 1."
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "lightning_logs").exists() and not (tmp_path / "checkpoints").exists()


def test_print_config_shows_the_resolved_model(capsys):
    try:
        main(["fit", "--config", str(ROOT / "configs/digits/retrain.yaml"), "--print_config"])
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["stage"] == "retrain"
    assert printed["data"]["init_args"]["forget_ratio"] == 0.1
