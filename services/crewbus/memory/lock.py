"""One owner per embedded store: an exclusive, non-blocking flock on a file in its dir.

The lock dies with the process (kill -9 included), so a crashed service never leaves a
stale lock behind. The file records who holds it, for the refusal message.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from crewbus.memory.errors import StoreLocked

LOCK_NAME = "crewbus-memory.lock"


class DirLock:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise StoreLocked(str(self.directory), holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
