"""An exclusive lock on a run folder, so two processes never write into one run.

The lock is ``<folder>/run.lock``, held with ``flock`` (the kernel releases it when the holder dies, even by
SIGKILL) and holding ``pid host`` so that a refused process can name the holder. A file left by a holder that
died is reclaimed with a log line; the file is removed on a clean release.
"""
from __future__ import annotations

import fcntl
import logging
import os
import socket
from pathlib import Path

from minigpt4.runtime.errors import UserError

log = logging.getLogger(__name__)
LOCK_FILE = "run.lock"


class RunLocked(UserError, RuntimeError):
    """Another live process holds the run folder's lock; the message names it."""


class RunLock:
    """An exclusive lock on a run folder, so two processes never write into one run."""
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLocked` naming the process that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(f"{self.folder} is in use by {describe(self.path)} (lock {self.path}); wait for it to "
                            f"finish or stop it, or choose another run.output_dir") from None
        previous = os.read(fd, 256).decode(errors="replace").strip()
        if previous:
            log.warning("reclaimed the stale lock %s of %s, which is no longer running", self.path, previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} host {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe(path: Path) -> str:
    """``pid N host H`` as written by the holder (or a note when it has not written it yet)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    return f"process {text}" if text else "another process"


def holder(folder: str | Path) -> str | None:
    """Who holds ``folder``'s lock right now (``None`` when nobody does); never takes it for long."""
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return describe(path)
    finally:
        os.close(fd)
    return None
