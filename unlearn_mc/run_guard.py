"""What a run holds while it writes, and what it takes back when it is refused.

``folder_lock`` holds an exclusive lock on a folder (a study's ``output_dir``, a stage's checkpoint) while one
run writes it: a second run on the same folder is refused with one sentence naming the process that holds it.
The lock is ``fcntl.flock`` on a small file holding the holder's pid and command; the kernel releases it when
the process ends, however it ends, so a killed run never leaves a stale lock.

``RunGuard`` collects the locks of one command and the paths it is about to create; when the run is refused
(an ``UnlearnMCError`` after those paths were created, e.g. a batch the network cannot take), the paths that did
not exist before are removed, so a refused run leaves no folder and no file behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from unlearn_mc.errors import UnlearnMCError

LOCK_NAME = ".unlearn-mc.lock"


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike, what: str, lock_file: str = LOCK_NAME) -> Iterator[Path]:
    """Hold ``<path>/<lock_file>`` exclusively until the block ends (the folder is created if needed);
    raise ``UnlearnMCError`` at once if another process holds it. The lock file is removed on release."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / lock_file
    while True:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise UnlearnMCError(
                f"the {what} {str(folder)!r} is in use by {_holder(lock_path)}; wait for that run to finish or choose another folder."
            ) from None
        try:  # the previous holder may have removed the file between our open and our lock: lock the file that is there now
            if os.stat(lock_path).st_ino == os.fstat(descriptor).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200]
        os.write(descriptor, f"process {os.getpid()} ({command})".encode())
        yield lock_path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)  # while still holding it, so no one else ever holds a removed file
        os.close(descriptor)


class RunGuard:
    """The locks one command holds and the outputs it creates; ``close(refused=True)`` removes those outputs."""

    def __init__(self) -> None:
        self._locks = contextlib.ExitStack()
        self._new_paths: list[Path] = []

    def hold(self, path: str | os.PathLike, what: str, lock_file: str = LOCK_NAME) -> None:
        """Take ``folder_lock(path, what, lock_file)`` until ``close``; the folder counts as created here if it was new."""
        self.track(path)
        self._locks.enter_context(folder_lock(path, what, lock_file))

    def track(self, path: str | os.PathLike) -> None:
        """Note ``path`` (and its missing parents) as created by this run if it does not exist yet."""
        path = Path(path).absolute()
        while not path.exists() and path != path.parent:
            if path not in self._new_paths:
                self._new_paths.append(path)
            path = path.parent

    def close(self, refused: bool = False) -> None:
        """Release the locks; when the run was refused, first remove every tracked path it created."""
        try:
            if refused:
                for path in sorted(self._new_paths, key=lambda p: len(p.parts)):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path, ignore_errors=True)
                    elif path.exists() or path.is_symlink():
                        path.unlink()
        finally:
            self._locks.close()
            self._new_paths.clear()
