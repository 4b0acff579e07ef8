"""Bad input through the ``unlearn-mc`` command, as a user meets it: exit status 2, one sentence on stderr
naming the problem, no traceback, and nothing written (no logs, no checkpoint, no split file)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from unlearn_mc.cli import main
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.lightning_cli import resolved_config
from unlearn_mc.models import SmallCNN

ROOT = Path(__file__).resolve().parents[1]
GA = ROOT / "configs/digits/unlearn/grad_ascent.yaml"
ORIGINAL = ROOT / "configs/digits/original.yaml"
CURVE = ROOT / "configs/digits/curve/bezier_ga_rl.yaml"
WIDTH16 = "--model.init_args.net.init_args.width=16"  # the session's digits models are width-16 SmallCNNs


class _RunsCode:
    """Unpickling this object would create the file ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def refused(capsys, tmp_path: Path, args: list[str]) -> str:
    """Run the CLI in ``tmp_path``; check exit 2, one ``unlearn-mc: error:`` sentence and no output; return it."""
    before = {path for path in tmp_path.rglob("*")}
    status = main(args)
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith("unlearn-mc: error: ") and message.endswith("."), message
    assert not re.search(r"[.!?] [A-Z]", message), f"more than one sentence: {message}"
    written = {path for path in tmp_path.rglob("*")} - before
    assert not written, f"written despite the error: {sorted(map(str, written))}"
    return message


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _curve_config(tmp_path: Path, digits_models, **evaluation) -> Path:
    config = resolved_config(CURVE)
    config["model"]["init_args"].update(start=str(digits_models.original), end=str(digits_models.retrain), retrain=None)
    config["model"]["init_args"]["net"]["init_args"]["width"] = 16
    config["trainer"]["callbacks"][1]["init_args"].update(evaluation)
    path = tmp_path / "inputs" / "curve.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def _inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir(exist_ok=True)
    return folder


def test_missing_checkpoint_path(workdir, capsys):
    message = refused(capsys, workdir, ["fit", "--config", str(GA), "--model.init_args.original=nowhere/original.ckpt"])
    assert "nowhere/original.ckpt" in message and "does not exist" in message


def test_checkpoint_of_another_architecture_names_the_first_mismatching_tensor(workdir, capsys, digits_models):
    # the config's net is a width-32 SmallCNN; the checkpoint holds a width-16 one
    message = refused(capsys, workdir, ["fit", "--config", str(GA), f"--model.init_args.original={digits_models.original}"])
    assert "features.0.0.weight" in message and "(16, 1, 3, 3)" in message and "(32, 1, 3, 3)" in message


def test_curve_endpoints_of_different_architectures(workdir, capsys, digits_models):
    other = _inputs(workdir) / "width8.pt"
    torch.save(SmallCNN(in_channels=1, num_classes=10, width=8).state_dict(), other)
    message = refused(capsys, workdir, ["fit", "--config", str(CURVE), WIDTH16, f"--model.init_args.start={digits_models.original}",
                                        f"--model.init_args.end={other}", "--model.init_args.retrain=null"])
    assert "width8.pt" in message and "shape" in message


def test_corrupted_checkpoint(workdir, capsys):
    corrupted = _inputs(workdir) / "corrupted.ckpt"
    corrupted.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    message = refused(capsys, workdir, ["fit", "--config", str(GA), f"--model.init_args.original={corrupted}"])
    assert "corrupted.ckpt" in message


@pytest.mark.parametrize(
    ("command", "option", "content"),
    [
        ("fit", "--model.init_args.original", {"state_dict": {}}),  # a checkpoint a module reads
        ("validate", "--ckpt_path", {"hyper_parameters": {}}),      # a checkpoint Lightning resumes from
    ],
    ids=["original", "ckpt_path"],
)
def test_checkpoint_that_would_run_code_is_refused_and_the_code_never_runs(workdir, capsys, command, option, content):
    evil = _inputs(workdir) / "evil.ckpt"
    marker = workdir / "inputs" / "pwned"
    with open(evil, "wb") as file:
        pickle.dump({**content, "payload": _RunsCode(str(marker))}, file)
    message = refused(capsys, workdir, [command, "--config", str(GA if command == "fit" else ORIGINAL), f"{option}={evil}"])
    assert "refused unread" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("--data.init_args.forget_ratio=1.5", "forget_ratio=1.5 must lie strictly between 0 and 1"),
        ("--data.init_args.forget_ratio=0", "forget_ratio=0"),
        ("--data.init_args.forget_count=5000", "forget_count=5000 exceeds"),
        ("--data.init_args.forget_count=0", "forget_count=0"),
    ],
)
def test_forget_set_size_out_of_range(workdir, capsys, override, fragment):
    extra = ["--data.init_args.forget_ratio=null"] if "forget_count" in override else []
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), *extra, override])
    assert fragment in message


def test_a_class_that_does_not_exist(workdir, capsys):
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), "--data.init_args.forget_rule=class",
                                        "--data.init_args.forget_classes=[12]"])
    assert "forget class 12 does not exist" in message


def test_an_empty_forget_class_list(workdir, capsys):
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), "--data.init_args.forget_rule=class",
                                        "--data.init_args.forget_classes=[]"])
    assert "forget_classes" in message


def test_a_split_file_whose_settings_differ(workdir, capsys):
    split = _inputs(workdir) / "split.json"
    UnlearningDataModule(dataset="digits", forget_ratio=0.1, split_seed=0, split_file=str(split)).setup()
    saved = split.read_bytes()
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), f"--data.init_args.split_file={split}",
                                        "--data.init_args.split_seed=1"])
    assert "split_seed" in message
    assert split.read_bytes() == saved  # never replaced


def test_a_curve_with_fewer_than_two_bends(workdir, capsys, digits_models):
    message = refused(capsys, workdir, ["fit", "--config", str(CURVE), WIDTH16, f"--model.init_args.start={digits_models.original}",
                                        f"--model.init_args.end={digits_models.retrain}", "--model.init_args.num_bends=1"])
    assert "num_bends=1" in message


@pytest.mark.parametrize("grid", [[0.0, 0.5, 1.5], [], 0])
def test_a_t_grid_outside_0_1_or_empty(workdir, capsys, digits_models, grid):
    config = _curve_config(workdir, digits_models, t_grid=grid)
    message = refused(capsys, workdir, ["fit", "--config", str(config)])
    assert "t_grid" in message


def test_an_unknown_method(workdir, capsys):
    message = refused(capsys, workdir, ["fit", "--config", str(GA), "--model.class_path=unlearn_mc.unlearning.Forgetful"])
    assert "Forgetful" in message


def test_an_unknown_curve_family(workdir, capsys, digits_models):
    message = refused(capsys, workdir, ["fit", "--config", str(CURVE), WIDTH16, f"--model.init_args.start={digits_models.original}",
                                        f"--model.init_args.end={digits_models.retrain}", "--model.init_args.curve=spline"])
    assert "spline" in message


def test_a_dataset_folder_that_is_missing(workdir, capsys):
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), "--data.init_args.dataset=image_folder",
                                        "--data.init_args.data_dir=no/such/folder"])
    assert "no/such/folder" in message and "does not exist" in message


def test_torchvision_files_missing_with_download_off(workdir, capsys):
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), "--data.init_args.dataset=cifar10",
                                        "--data.init_args.data_dir=no/cifar", "--data.init_args.download=false"])
    assert "no/cifar" in message


def test_nan_inputs_in_an_npz_dataset(workdir, capsys):
    x = np.random.default_rng(0).normal(size=(60, 1, 8, 8)).astype(np.float32)
    x[7, 0, 2, 2] = np.nan
    arrays = _inputs(workdir) / "arrays.npz"
    np.savez(arrays, x=x, y=np.arange(60) % 10)
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), "--data.init_args.dataset=npz",
                                        f"--data.init_args.data_dir={arrays}"])
    assert "NaN" in message


def test_a_fresh_fit_over_a_finished_stage_is_refused(workdir, capsys):
    finished = workdir / "checkpoints" / "digits" / "original.ckpt"
    finished.parent.mkdir(parents=True)
    finished.write_bytes(b"the weights later stages were trained from")
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), "--trainer.max_epochs=1"])
    assert "original.ckpt" in message and "already holds this stage" in message and "--ckpt_path last" in message
    assert finished.read_bytes() == b"the weights later stages were trained from"


# ---------------------------------------------------------------- what Lightning and torch would reject with a traceback
@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("--trainer.devices=0", "devices='0'"),
        ("--trainer.max_epochs=-5", "max_epochs must be a non-negative integer or -1"),
        ("--trainer.strategy=nonsense", "strategy='nonsense'"),
        ("--trainer.accelerator=mps", "MPSAccelerator can not run on your system"),
        ("--trainer.limit_train_batches=1.5", "1.5 for limit_train_batches"),
        ("--trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch=0 must be at least 1"),
        ("--trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0 must be at least 1"),
    ],
)
def test_trainer_settings_lightning_rejects(workdir, capsys, override, fragment):
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), override])
    assert fragment in message


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("--model.init_args.net.init_args.in_channels=3", "expected input[2, 1, 8, 8] to have 3 channels"),
        ("--model.init_args.net.init_args.num_classes=5", "labels run from 0 to 9 but the network outputs 5 logits"),
    ],
)
def test_a_network_that_does_not_fit_the_data(workdir, capsys, override, fragment):
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), override])
    assert fragment in message


def _npz(folder: Path, **arrays) -> Path:
    rng = np.random.default_rng(0)
    contents = {"x": rng.normal(size=(60, 1, 8, 8)).astype(np.float32), "y": np.arange(60) % 10, **arrays}
    path = _inputs(folder) / "arrays.npz"
    np.savez(path, **contents)
    return path


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        ({"y": (np.arange(60) % 10).astype(np.float32) + 0.5}, "'y' in"),
        ({"y": np.arange(60) % 10 - 1}, "holds the label -1"),
        ({"y": np.zeros((60, 2), dtype=np.int64)}, "has shape (60, 2)"),
        ({"y": np.arange(50) % 10}, "'x' has 60 samples but 'y' has 50"),
        ({"x": np.zeros(60, dtype=np.float32)}, "'x' in"),
        ({"x_test": np.zeros((10, 3, 8, 8), dtype=np.float32), "y_test": np.arange(10)}, "'x_test' samples have shape (3, 8, 8)"),
    ],
    ids=["float labels", "negative label", "2-D labels", "lengths", "1-D inputs", "test shape"],
)
def test_arrays_of_the_wrong_shape_dtype_or_label_range(workdir, capsys, arrays, fragment):
    path = _npz(workdir, **arrays)
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), "--data.init_args.dataset=npz", f"--data.init_args.data_dir={path}"])
    assert fragment in message and "arrays.npz" in message
    if "label" in fragment:
        assert "integers 0 … num_classes−1" in message


def test_a_user_datamodule_without_a_training_loader(workdir, capsys):
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), "--data=user_modules.OnlyValidation"])
    assert "OnlyValidation has no train_dataloader()" in message


def test_a_refusal_during_training_leaves_no_log_folder(workdir, capsys, digits_models):
    """GradDiff needs forget and retain streams; a DataModule serving plain batches is refused at the first step,
    after Lightning created the log folder and the checkpoint folder: both are taken back."""
    message = refused(capsys, workdir, ["fit", "--config", str(ROOT / "configs/digits/unlearn/grad_diff.yaml"), WIDTH16,
                                        f"--model.init_args.original={digits_models.original}", "--model.init_args.retrain=null",
                                        "--data=user_modules.PlainBatches", "--trainer.max_epochs=1"])
    assert "needs the streams ['forget', 'retain']" in message


def test_resuming_with_no_last_checkpoint_never_replaces_a_finished_stage(workdir, capsys):
    finished = workdir / "checkpoints" / "digits" / "original.ckpt"
    finished.parent.mkdir(parents=True)
    finished.write_bytes(b"the weights later stages were trained from")
    message = refused(capsys, workdir, ["fit", "--config", str(ORIGINAL), "--ckpt_path=last"])
    assert "original-last.ckpt' to resume from" in message and "original.ckpt" in message
    assert finished.read_bytes() == b"the weights later stages were trained from"
