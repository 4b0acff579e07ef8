"""Locks on the folders a run writes, and the outputs a refused run takes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn_mc.cli import main
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.run_guard import RunGuard, folder_lock

ROOT = Path(__file__).resolve().parents[1]
HOLD = "import sys, time; from unlearn_mc.run_guard import folder_lock\nwith folder_lock(sys.argv[1], 'folder', sys.argv[2]):\n    print('held', flush=True); time.sleep(600)"


def hold_in_another_process(folder: Path, lock_file: str = ".unlearn-mc.lock") -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), lock_file], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_folder_held_by_another_process_is_refused_naming_it_and_freed_when_that_process_is_killed(tmp_path):
    holder = hold_in_another_process(tmp_path / "out")
    try:
        with pytest.raises(UnlearnMCError, match=rf"the study folder '.*out' is in use by process {holder.pid} "):
            with folder_lock(tmp_path / "out", "study folder"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with folder_lock(tmp_path / "out", "study folder") as lock:  # the kernel released the killed holder's lock
        assert lock.read_text().startswith(f"process {os.getpid()} ")
    assert not lock.exists()


def test_a_stage_held_by_another_run_is_refused_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    stage_folder = tmp_path / "checkpoints" / "digits"
    holder = hold_in_another_process(stage_folder, ".original.lock")
    try:
        before = set(tmp_path.rglob("*"))
        status = main(["fit", "--config", str(ROOT / "configs/digits/original.yaml"), "--trainer.max_epochs=1"])
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert status == 2
        assert "stage 'original' in the checkpoint folder" in message and f"in use by process {holder.pid}" in message
        assert set(tmp_path.rglob("*")) == before  # no log folder, no split file
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_guard_removes_only_what_the_refused_run_created(tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "old.txt").write_text("from an earlier run")
    guard = RunGuard()
    guard.track(kept)
    guard.track(tmp_path / "logs" / "version_0")
    (tmp_path / "logs" / "version_0").mkdir(parents=True)
    (kept / "new.txt").write_text("this run")
    guard.close(refused=True)
    assert (kept / "old.txt").is_file() and not (tmp_path / "logs").exists()
