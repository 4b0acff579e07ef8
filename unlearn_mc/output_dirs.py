"""Checking, before any work starts, that the folders a run writes to can be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from unlearn_mc.errors import UnlearnMCError


def ensure_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Prove that ``path`` can be written, creating nothing that stays: the folder itself if it exists,
    else its nearest existing ancestor (where it would be created), is tested by creating and removing
    a file in it. (``os.access`` is not enough: it answers yes to root even on read-only mounts.)
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{str(existing)!r} is a file")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-check-"):
            pass
    except OSError as error:
        raise UnlearnMCError(f"the {what} folder {str(path)!r} is not writable ({error.strerror or error}); choose another folder.") from None
    return path


def check_run_outputs(trainer: L.Trainer) -> None:
    """Raise ``UnlearnMCError`` unless the logger's and every checkpoint callback's folders are writable."""
    if trainer.logger is not None and getattr(trainer.logger, "save_dir", None):
        ensure_writable_dir(trainer.logger.save_dir, "log")
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            ensure_writable_dir(callback.dirpath, "checkpoint")
