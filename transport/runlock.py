"""One `sigbus up` per data directory: an exclusive lock held for the life of the process.

Two servers on one JetStream store corrupt each other's view of the streams, and
the second one's exit used to delete the first one's state file (issue 12). The
lock is an ``flock`` on ``<data dir>/sigbus-up.lock``: the kernel releases it when
the process dies, however it dies, so a stale lock file never blocks a restart.
The file holds the holder's pid, so `sigbus down` finds it even without the state file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

from sigbus.transport.errors import ConfigError

LOCK_FILE = "sigbus-up.lock"


def _pid_in(handle: IO[str]) -> int | None:
    handle.seek(0)
    text = handle.read().strip()
    return int(text) if text.isdigit() else None


class RunLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`ConfigError` naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            pid = _pid_in(handle)
            handle.close()
            raise ConfigError(
                f"`sigbus up` is already running on {self.path.parent} (pid {pid}): "
                "stop it with `sigbus down`, or use another --data-dir"
            ) from e
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def running_pid(data_dir: Path) -> int | None:
    """The pid of the `sigbus up` holding the lock on ``data_dir``, or ``None`` if none does."""
    path = data_dir / LOCK_FILE
    if not path.exists():
        return None
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(handle)  # held: someone runs
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None
