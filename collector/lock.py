"""A run lock so two overlapping collections (cron + a manual run) cannot both write a store."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from .errors import LockError

__all__ = ["RunLock"]

log = logging.getLogger(__name__)


class RunLock:
    """`flock` on `<store>/collect.lock`; the kernel drops it if the holder dies (even SIGKILL)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise LockError naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            try:
                info = json.loads(holder)
                who = f"pid {info.get('pid')} since {info.get('since')}"
            except ValueError:
                who = "another process"
            raise LockError(
                f"another collection run ({who}) holds {self.path}; expected no overlapping run. "
                "Wait for it to finish, or lengthen the cron interval; this run collected nothing."
            ) from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(),
                                      "since": datetime.now(UTC).isoformat(timespec="seconds")}).encode(), 0)
        except OSError as exc:
            # Who holds it only words the message of a run that finds it taken; the flock is the
            # lock. A full disk must not stop `dossier store reindex` here, before it can say so.
            log.debug("cannot record the holder in %s (%s); the lock is held", self.path, exc)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
