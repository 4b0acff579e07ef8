"""Bad input gets one clear sentence (UnlearnMCError / exit 2) and writes nothing; unsafe files are never unpickled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from unlearn_mc.checkpoints import load_network_weights, read_checkpoint
from unlearn_mc.cli import main
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.models import MLP, SmallCNN
from unlearn_mc.output_dirs import ensure_writable_dir

ROOT = Path(__file__).resolve().parents[1]


def test_missing_checkpoint_path(tmp_path):
    with pytest.raises(UnlearnMCError, match=r"checkpoint file .*nope.ckpt' does not exist"):
        load_network_weights(SmallCNN(), tmp_path / "nope.ckpt")


def test_checkpoint_of_another_architecture_names_the_first_mismatch(tmp_path):
    torch.save({"state_dict": {f"net.{k}": v for k, v in SmallCNN(width=8).state_dict().items()}}, tmp_path / "small.ckpt")
    with pytest.raises(UnlearnMCError, match=r"tensor 'features.0.0.weight' has shape \(8, 1, 3, 3\) in the checkpoint but \(32, 1, 3, 3\)"):
        load_network_weights(SmallCNN(width=32), tmp_path / "small.ckpt")
    with pytest.raises(UnlearnMCError, match=r"tensor 'layers.1.weight' is missing"):
        load_network_weights(MLP(), tmp_path / "small.ckpt")


def test_prefixed_state_dicts_load(tmp_path):
    source = SmallCNN(width=8)
    for prefix in ("", "net.", "module.", "net.module."):
        torch.save({f"{prefix}{k}": v for k, v in source.state_dict().items()}, tmp_path / "w.pt")
        target = load_network_weights(SmallCNN(width=8), tmp_path / "w.pt")
        assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_corrupted_checkpoint(tmp_path):
    torch.save(SmallCNN(width=8).state_dict(), tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "w.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnlearnMCError, match="not a readable torch file"):
        read_checkpoint(tmp_path / "w.pt")


class _RunsCode:
    """Unpickling this object would create a marker file: the attack weights_only=True must stop."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_run_code_is_refused_unread(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _RunsCode(str(marker))}, tmp_path / "evil.ckpt")
    with pytest.raises(UnlearnMCError, match="refused unread"):
        read_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UnlearnMCError, match=r"the log folder .*a_file/logs' is not writable"):
        ensure_writable_dir(tmp_path / "a_file" / "logs", "log")


def test_cli_refuses_an_unwritable_log_folder_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocked").write_text("a file where a folder should be")
    status = main(["fit", "--config", str(ROOT / "configs/digits/original.yaml"), "--trainer.default_root_dir=blocked/runs",
                   "--trainer.enable_progress_bar=false"])
    assert status == 2
    assert "is not writable" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints" / "digits" / "original.ckpt").exists()


def test_missing_dataset_folder(tmp_path):
    from unlearn_mc.data import UnlearningDataModule

    with pytest.raises(UnlearnMCError, match=r"image folder .*missing' does not exist"):
        UnlearningDataModule(dataset="image_folder", data_dir=str(tmp_path / "missing"), split_file=str(tmp_path / "s.json")).setup()
