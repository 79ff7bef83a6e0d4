"""An exclusive lock on an output folder, so that two processes never write the same results.

The lock is ``flock`` on the folder itself (no lock file is written): the operating system
drops it when the holder exits or is killed, so there are no stale locks to clean up. Where
``fcntl`` does not exist (Windows) or the file system has no ``flock`` for folders, the folder
is not guarded.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fgaseg.errors import ConfigError


@contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Create ``folder`` if needed and hold its lock for the ``with`` block; ``ConfigError``
    (one line) at once if another process holds it. ``what`` names the job (``"fgaseg ablation"``).
    A folder created here that is still empty at the end is removed: a job that failed before
    writing anything leaves nothing behind.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {folder} ({exc.strerror or exc})") from None
    try:
        with _flock(folder, what):
            yield
    finally:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


@contextmanager
def _flock(folder: Path, what: str) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                locked = False  # no flock for folders on this file system: unguarded
            else:
                raise ConfigError(f"{folder} is being written by another {what} right now; wait for it "
                                  "to finish, stop it, or choose another --out") from None
        yield
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
