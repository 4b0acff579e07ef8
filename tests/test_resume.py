"""A run killed mid-epoch (SIGKILL) and resumed with ``--ckpt_path last`` ends where an uninterrupted run with the
same seed ends: same weights (or bends) and the same metrics, to RESUME_TOLERANCE (float summation order is
the only difference left, so the tolerance is tight). Checked for an unlearning method and a curve fit."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.numerics]
ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
RESUME_TOLERANCE = 1e-5
COMMON = ["--trainer.enable_progress_bar=false", "--model.init_args.net.init_args.width=16"]


def run(workdir: Path, args: list[str], kill_at_step: int | None = None) -> subprocess.CompletedProcess:
    extra = []
    if kill_at_step is not None:
        extra = ["--trainer.callbacks+=kill_switch.KillAtStep", f"--trainer.callbacks.init_args.step={kill_at_step}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "unlearn_mc.cli", *args, *COMMON, *extra], cwd=workdir, capture_output=True, text=True,
                          timeout=600, env=env)


def interrupted_then_resumed(tmp_path: Path, args: list[str], kill_at_step: int) -> Path:
    workdir = tmp_path / "resumed"
    killed = run(workdir, args, kill_at_step=kill_at_step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = run(workdir, [*args, "--ckpt_path=last"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Restoring states from the checkpoint path" in resumed.stderr + resumed.stdout
    return workdir


def uninterrupted(tmp_path: Path, args: list[str]) -> Path:
    workdir = tmp_path / "straight"
    result = run(workdir, args)
    assert result.returncode == 0, result.stderr[-2000:]
    return workdir


def state_of(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            assert torch.allclose(a[key], b[key], rtol=0, atol=RESUME_TOLERANCE), key
        else:
            assert torch.equal(a[key], b[key]), key


def test_an_unlearning_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(digits_models, tmp_path):
    # GradDiff on digits: 21 steps per epoch (the retain set in batches of 64, the forget set cycled); killed at step 30
    args = ["fit", "--config", str(ROOT / "configs/digits/unlearn/grad_diff.yaml"), "--trainer.max_epochs=2",
            f"--model.init_args.original={digits_models.original}", f"--model.init_args.retrain={digits_models.retrain}",
            f"--data.init_args.split_file={digits_models.workdir / 'split_random.json'}"]
    resumed = interrupted_then_resumed(tmp_path, args, kill_at_step=30)
    straight = uninterrupted(tmp_path, args)
    name = "checkpoints/digits/grad_diff.ckpt"
    assert state_of(straight / name)["net.features.0.0.weight"].ne(state_of(digits_models.original)["net.features.0.0.weight"]).any()
    assert_same_state(state_of(resumed / name), state_of(straight / name))
    assert (resumed / "checkpoints/digits/grad_diff-last.ckpt").exists()


def test_a_curve_fit_killed_mid_epoch_resumes_to_the_uninterrupted_curve(digits_models, tmp_path):
    args = ["fit", "--config", str(ROOT / "configs/digits/curve/bezier_ga_rl.yaml"), "--trainer.max_epochs=2",
            "--trainer.check_val_every_n_epoch=2", "--model.init_args.lr_scheduler.init_args.T_max=2",
            f"--model.init_args.start={digits_models.original}", f"--model.init_args.end={digits_models.retrain}",
            f"--model.init_args.retrain={digits_models.retrain}", "--data.init_args.split_file=split.json",
            "--trainer.callbacks.init_args.t_grid=3", "--trainer.callbacks.init_args.export_path=null"]
    # 21 retain batches per epoch: killed at step 30, in the middle of the second epoch
    resumed = interrupted_then_resumed(tmp_path, args, kill_at_step=30)
    straight = uninterrupted(tmp_path, args)
    name = "checkpoints/digits/curves/bezier_ga_rl.ckpt"
    assert_same_state(state_of(resumed / name), state_of(straight / name))
    rows = []
    for workdir in (resumed, straight):
        csv_path = sorted((workdir / "lightning_logs").glob("version_*/curve_eval.csv"))[-1]
        with open(csv_path) as file:
            rows.append([{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)])
    assert len(rows[0]) == len(rows[1]) == 3
    for row_resumed, row_straight in zip(*rows):
        for key, value in row_straight.items():
            assert abs(row_resumed[key] - value) <= RESUME_TOLERANCE, (row_straight["t"], key)
