"""One way to write a finished result: under a temporary name beside it, then renamed into place.

A reader (or a study resumed after a crash) sees either the old file or the complete new one, never half a
file: ``os.replace`` within one folder is atomic on POSIX and Windows. Every output file of the project is
written through ``atomic_path`` (or its two shorthands below).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """``<folder>/.<name>.<pid>.tmp``: hidden, beside ``path`` (same file system), distinct per process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to (a file or a whole folder); when the block ends,
    rename it onto ``path`` in one step; when the block raises, remove it and leave ``path`` as it was.

    The parent folder is created. A folder can replace only a missing or empty ``path`` (remove an old one first).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    _remove(temporary)  # a leftover of a crashed process with the same pid
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists() or temporary.is_symlink():
            _remove(temporary)


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through ``atomic_path``; return the path."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through ``atomic_path``; return the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)
