"""The same config and seed, run twice on CPU, give identical split files, weights and metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.cli import main
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.evaluation import evaluate_model
from unlearn_mc.models import SmallCNN

pytestmark = [pytest.mark.numerics]
ROOT = Path(__file__).resolve().parents[1]


def _run(workdir: Path, monkeypatch) -> tuple[bytes, dict[str, torch.Tensor], dict[str, float]]:
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    status = main(["fit", "--config", str(ROOT / "configs/digits/retrain.yaml"), "--trainer.max_epochs=2",
                   "--trainer.enable_progress_bar=false", "--trainer.logger=false"])
    assert status == 0
    net = load_network_weights(SmallCNN(in_channels=1, num_classes=10, width=32), "checkpoints/digits/retrain.ckpt").eval()
    metrics = evaluate_model(net, UnlearningDataModule(dataset="digits").eval_dataloaders())
    return Path("checkpoints/digits/split.json").read_bytes(), net.state_dict(), metrics


def test_two_runs_with_one_seed_are_identical(tmp_path, monkeypatch):
    split_a, weights_a, metrics_a = _run(tmp_path / "a", monkeypatch)
    split_b, weights_b, metrics_b = _run(tmp_path / "b", monkeypatch)
    assert split_a == split_b
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    assert metrics_a == metrics_b
