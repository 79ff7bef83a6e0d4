"""An exclusive lock on an output folder, so that two processes never write the same results.

The lock is ``flock`` on ``<folder>/.fgaseg.lock``: the operating system drops it when the
holder exits or is killed, so there are no stale locks to clean up. Where ``fcntl`` does not
exist (Windows) the folder is not guarded.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fgaseg.errors import ConfigError

LOCK_NAME = ".fgaseg.lock"


@contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock for the ``with`` block; ``ConfigError`` at once if another holds it.

    ``what`` names the job in the message (``"fgaseg ablation"``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(folder / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(f"{folder} is being written by another {what} ({holder}); wait for it to "
                              "finish, stop it, or choose another --out") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
