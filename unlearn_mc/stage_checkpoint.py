"""``StageCheckpoint``: one stage's checkpoint file, refreshed at every training epoch end, and its own ``last``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lightning.pytorch.callbacks import ModelCheckpoint

from unlearn_mc.errors import UnlearnMCError


class StageCheckpoint(ModelCheckpoint):
    """Saves ``<dirpath>/<filename>.ckpt`` at the end of every training epoch (the latest weights, overwritten),
    and ``<dirpath>/<filename>-last.ckpt`` (by default a link to it).

    Stages of a study share a folder (``checkpoints/digits/original.ckpt``, ``grad_ascent.ckpt`` …), and
    Lightning resolves ``--ckpt_path last`` to the newest ``last*.ckpt`` of the folder, whichever stage
    wrote it. Naming the last checkpoint after the stage makes ``--ckpt_path last`` resume this stage and
    no other. Resuming from it redoes an epoch that was interrupted, with the random generators of the
    checkpoint (``ResumesRandomness``), so the run ends as an uninterrupted one would.

    A fresh ``fit`` (no ``--ckpt_path``) refuses to start over an existing stage file
    (``refuse_overwriting``, called by the CLI before anything is written): later stages were trained
    from it, so replacing it would silently break the chain.

    Args:
        dirpath: the folder of the checkpoints.
        filename: the stage's file name without ``.ckpt``.
        save_last: ``link`` (a symbolic link to the latest file), ``True`` (a copy) or ``False``.
        every_n_epochs: save every this many epochs.
    """

    def __init__(self, dirpath: str, filename: str, save_last: bool | Literal["link"] = "link", every_n_epochs: int = 1) -> None:
        super().__init__(
            dirpath=dirpath, filename=filename, save_last=save_last, every_n_epochs=every_n_epochs,
            enable_version_counter=False, save_on_train_epoch_end=True,
        )
        self.CHECKPOINT_NAME_LAST = f"{filename}-last"

    @property
    def stage_file(self) -> Path:
        return Path(self.dirpath) / f"{self.filename}{self.FILE_EXTENSION}"

    @property
    def last_file(self) -> Path:
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def refuse_overwriting(self, nothing_to_resume: bool = False) -> None:
        """Raise ``UnlearnMCError`` when the stage file exists: a fit that starts over would overwrite a finished
        result. ``nothing_to_resume``: the fit asked for ``--ckpt_path last`` but there is no ``last`` file, so
        Lightning would start over too."""
        if not self.stage_file.exists():
            return
        if nothing_to_resume:
            raise UnlearnMCError(
                f"--ckpt_path last finds no {str(self.last_file)!r} to resume from, and {str(self.stage_file)!r} already "
                "holds this stage from an earlier run, so the fit would start over and replace it; move the file away to train the stage again."
            )
        raise UnlearnMCError(
            f"checkpoint {str(self.stage_file)!r} already holds this stage from an earlier run; resume it with "
            "--ckpt_path last, or move the file away to train the stage again."
        )
