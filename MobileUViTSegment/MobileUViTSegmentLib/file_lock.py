"""An exclusive lock between processes on one file, for work that must not run twice at once (a weights download).

Why: four ``segment`` runs started together on a machine without the weights would otherwise all append to the same
partial download and corrupt it. The lock is an OS lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) on
``<path>``, so it is released by the OS when its holder dies, never left stale. The lock file is removed on release;
a waiter that got the lock on a file just removed (it opened it before the removal) sees that the path no longer
names its file and tries again, so two holders can never coexist.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

from .progress import CancelToken

POLL_SECONDS = 0.1

if sys.platform == "win32":  # pragma: no cover (the suite runs on Linux)
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _still_names(path: Path, fd: int) -> bool:
    """Whether ``path`` is still the file open as ``fd`` (not removed or replaced by the previous holder)."""
    try:
        on_disk, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def exclusive_lock(path: Path, cancel: Optional[CancelToken] = None,
                   on_wait: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Hold the lock on ``path`` for the ``with`` block, waiting while another process holds it.

    ``on_wait`` is called once when the lock is busy (to tell the user why nothing moves); ``cancel`` is checked while
    waiting (raises :class:`~.errors.Cancelled`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if _try_lock(fd):
            if _still_names(path, fd):
                break
            _unlock(fd)
        os.close(fd)
        if not told and on_wait is not None:
            on_wait()
            told = True
        if cancel is not None:
            cancel.raise_if_cancelled()
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # Windows cannot remove a file another process has open
            path.unlink()
        _unlock(fd)
        os.close(fd)
