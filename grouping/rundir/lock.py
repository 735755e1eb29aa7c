"""One process per run folder: an advisory lock on ``RUN/.lock``.

The lock is ``flock`` on an open file, so the kernel drops it when the process ends in any way,
SIGKILL included: a killed run never leaves a stale lock that blocks ``--resume``. The file itself
stays behind (deleting a lock file races with a process about to take it) and holds the pid of the
last holder, for the message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from grouping.errors import RunDirError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not guarded
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process ends)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> RunLock:
        """Take the lock without waiting, or a one-line error naming the holder."""
        if self._file is not None:
            return self
        try:
            f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while locked
        except OSError as exc:
            raise RunDirError(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise RunDirError(
                    f"run folder {self.path.parent} is in use by another grouping process "
                    f"(pid {holder}); wait for it to end or choose another --out"
                ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is None:
            return
        if fcntl is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
