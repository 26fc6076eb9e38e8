"""Durable writes: a file appears complete under its name or not at all, and stays after a
power cut (O_TMPFILE and `linkat`, fsync or one `syncfs` per batch, names made durable by a
background thread).

Each file is written to a temporary file (unnamed where Linux's O_TMPFILE works), made
durable, then hard-linked to its final name (a link never replaces an existing file, unlike
rename), and the name made durable too before a run ends (`Store.sync`). Durable means a fsync
of the file and of its folder (the folders of envelopes and metadata by a background thread,
`_NameSyncer`), or, where the file system takes it (`_BatchSync`), one syncfs for a whole batch
of files (`Store.save_many`), which also makes the names of the batch before it durable. A crash
leaves at most a `.*.tmp` file, which `reindex` removes.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import secrets
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DiskFullError, StoreError

log = logging.getLogger("collector.store")  # one logger for the store, whichever module logs

__all__ = ["write_file_atomically"]

#: errno values meaning the file system has no room left (a quota too: the fix is the same).
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: SQLite's result code for a full disk (`_disk_full` reads SQLite errors too).
_SQLITE_FULL = 13

_TMP_PREFIX = secrets.token_hex(4)
_tmp_counter = itertools.count()



def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Linux's O_TMPFILE: a file with no name until it is linked. None where the platform lacks it;
#: set to None at the first file system that refuses it (the named-temporary path is used then).
_O_TMPFILE: int | None = getattr(os, "O_TMPFILE", None) if sys.platform.startswith("linux") else None


def _write_unnamed(path: Path, data: bytes, mode: int, sync: bool) -> bool:
    """Write `data` into an unnamed file in `path`'s directory, fsync it, and give it its name
    with `linkat` (which never replaces a file). Returns False when the file system or the
    kernel cannot (no O_TMPFILE, or no /proc to link from): nothing was written then.

    Cheaper than a named temporary file (no name to create and remove, so fewer directory
    updates per stored file), and a crash leaves nothing behind: the file only ever appears
    complete, under its name.
    """
    fd = _open_unnamed(path.parent, data, mode)
    if fd is None:
        return False
    try:
        if sync:
            os.fsync(fd)
        return _name_unnamed(fd, path)
    finally:
        os.close(fd)


def _open_unnamed(directory: Path, data: bytes, mode: int = 0o644) -> int | None:
    """An unnamed file (O_TMPFILE) in `directory` holding `data`, not yet synced; None when
    the kernel or the file system has no such files (then never tried again)."""
    global _O_TMPFILE
    flags = _O_TMPFILE
    if flags is None:
        return None
    try:
        fd = os.open(directory, os.O_WRONLY | flags, mode)
    except OSError as exc:
        # EISDIR: a kernel that predates O_TMPFILE; EOPNOTSUPP: a file system without it.
        if exc.errno in (errno.EISDIR, errno.EOPNOTSUPP, errno.EINVAL):
            _O_TMPFILE = None
            return None
        raise
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd


def _name_unnamed(fd: int, path: Path) -> bool:
    """Give the unnamed file `fd` its name `path` (never replacing a file: StoreError if one
    is there). False when linking from /proc is impossible here (then never tried again)."""
    global _O_TMPFILE
    try:
        # linkat(AT_SYMLINK_FOLLOW) on the /proc name of the descriptor: passing a
        # src_dir_fd makes os.link call linkat (it is ignored, the source path is absolute).
        os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd)
    except FileExistsError as exc:
        raise StoreError(f"expected {path} not to exist, found it there; the store never "
                         "overwrites a stored file") from exc
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOTSUP):
            raise
        if not path.parent.is_dir():
            raise
        # No /proc here, or linking from it refused (a security module): name temporaries.
        _O_TMPFILE = None
        return False
    return True


#: File systems on which `syncfs` makes every file's data and every name durable as a `fsync`
#: of each would (local, block-device backed). Elsewhere (FUSE, network file systems) a store
#: fsyncs each file.
_SYNCFS_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs"})
_syncfs_function: Any = None  # libc's syncfs, loaded at first use (False: not available)


def _syncfs() -> Any:
    """libc's `syncfs`, or None where the kernel does not report write-back errors through it
    (Linux before 5.8 returns 0 even when writing failed) or there is no such call."""
    global _syncfs_function
    if _syncfs_function is None:
        _syncfs_function = False
        release = re.match(r"(\d+)\.(\d+)", os.uname().release) if sys.platform.startswith("linux") else None
        if release and (int(release[1]), int(release[2])) >= (5, 8):
            try:
                import ctypes

                function = ctypes.CDLL(None, use_errno=True).syncfs
                function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
                _syncfs_function = function
            except (OSError, AttributeError):
                pass
    return _syncfs_function or None


def _file_system_type(path: Path) -> str | None:
    """The type of the file system holding `path` (Linux's /proc/self/mountinfo), or None."""
    try:
        device = os.stat(path).st_dev
    except (OSError, ValueError):
        return None
    if device not in _file_system_types:
        _file_system_types[device] = None
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
                for line in mounts:
                    fields = line.split()
                    # id parent major:minor root mountpoint options [optional...] - type source ...
                    if len(fields) > 3 and fields[2] == f"{os.major(device)}:{os.minor(device)}" and "-" in fields:
                        _file_system_types[device] = fields[fields.index("-") + 1]
                        break
        except (OSError, ValueError):
            pass
    return _file_system_types[device]


_file_system_types: dict[int, str | None] = {}  # per device number, read once per process


class _BatchSync:
    """Makes many files durable with one `syncfs` instead of a `fsync` each (`Store.save_many`).

    Each `fsync` blocks its thread on the disk and hands the GIL over twice; in a collector
    polling with dozens of threads each such round costs far more CPU than the call itself. One `syncfs` writes and flushes everything dirty on the file system,
    so it also makes earlier names durable. Errors: the descriptor `syncfs` is called on is
    opened with the store, before any file is written, so any write-back failure since then is
    reported (Linux >= 5.8) to the next call, one call at a time; on failure each file is
    fsynced on its own, which names the failing one, and so is every file after it. Files in a
    folder on another file system (a symlink) are fsynced each.
    """

    def __init__(self, root: Path) -> None:
        self.fd = os.open(root, os.O_RDONLY)
        self.device = os.fstat(self.fd).st_dev  # syncfs covers this file system only
        self._syncfs = _syncfs()
        # After a reported failure, a later syncfs returning 0 proves nothing about pages whose
        # write-back failed before (the error is reported once): from then on, fsync each file.
        self.failed = False
        # One call at a time: an error is reported to one call only, so a call made beside the
        # one that got it could return 0 for files whose write-back failed.
        self._lock = threading.Lock()

    @classmethod
    def usable(cls, root: Path) -> bool:
        return _O_TMPFILE is not None and _syncfs() is not None and _file_system_type(root) in _SYNCFS_FILE_SYSTEMS

    def sync(self) -> bool:
        """True when everything written so far is durable; False when some write-back failed
        (somewhere on the file system: the caller fsyncs its own files to find out) or this
        is closed."""
        with self._lock:
            if self.fd < 0 or self.failed:
                return False
            if self._syncfs(self.fd) == 0:
                return True
            import ctypes

            self.failed = True
            reason = os.strerror(ctypes.get_errno())
        log.warning("syncfs on the store's file system reported %s; fsyncing each file from now on", reason)
        return False

    def close(self) -> None:
        with self._lock:
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def write_file_atomically(path: Path, data: bytes, *, replace: bool = False, mode: int = 0o644,
                          sync: bool = True, sync_dir: bool = True) -> None:
    """Write `data` to `path` via temp file + fsync + link/rename; never overwrite unless `replace`.

    The temporary file has no name at all where Linux's O_TMPFILE works, else a hidden
    `.<name>.<random><n>.tmp` in the same directory (which `Store.reindex` removes if a crash
    leaves one). `sync_dir=False` leaves the directory fsync to a later write in the same
    directory (one fsync then covers both names); `sync=False` skips fsync entirely (advisory
    files only). Raises StoreError (FileExistsError as cause) when `path` exists and `replace`
    is false.
    """
    if not replace and _write_unnamed(path, data, mode, sync):
        if sync and sync_dir:
            _fsync_dir(path.parent)
        return
    while True:
        # Unique within the process by a counter, across processes by a random prefix drawn
        # once (no random draw per file); O_EXCL catches the impossible collision.
        tmp = path.parent / f".{path.name}.{_TMP_PREFIX}{next(_tmp_counter)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            break
        except FileExistsError:
            continue
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    linked = False
    try:
        if replace:
            os.replace(tmp, path)
            linked = True  # the temporary name is gone
        else:
            try:
                os.link(tmp, path)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    raise StoreError(
                        f"expected {path} not to exist, found it there; the store never "
                        "overwrites a stored file"
                    ) from exc
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                # File systems without hard links: rename after an existence check. The run
                # lock keeps other collectors out, so the window is ours alone.
                if os.path.lexists(path):  # any entry, even a dangling symlink: never replaced
                    raise StoreError(f"expected {path} not to exist, found it there") from exc
                os.rename(tmp, path)
    finally:
        if not linked:
            tmp.unlink(missing_ok=True)
    if sync and sync_dir:
        _fsync_dir(path.parent)



def _sync_directories(directories: set[Path]) -> None:
    """fsync each of `directories` (every one tried; the first failure raised after)."""
    failure: Exception | None = None
    for directory in directories:
        try:
            _fsync_dir(directory)
        except (OSError, ValueError) as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class _NameSyncer:
    """Makes the names of stored files durable in the background, off the storing thread.

    A file's data is fsynced before it gets its name (`write_file_atomically`); the directory
    holding the new name must be fsynced too, or a power cut may lose the name. That directory
    fsync is the longest wait of any step of storing an envelope, so it is kept off the
    storing thread: here a thread fsyncs the directories
    handed over (each once per pass, however many names it got). `wait` returns once every
    name handed over before the call is durable, or raises the first failure; with no thread
    (none could be started, or it ended), the waiting thread syncs them itself.

    With `sync_all` (a store whose file system takes `syncfs`, `_BatchSync`), there is no
    thread: each batch of `Store.save_many` makes the names handed over before it durable with
    its own `syncfs` (`covered`), and `wait` syncs what is left with one more.
    """

    def __init__(self, sync_all: Callable[[], bool] | None = None) -> None:
        self._sync_all = sync_all
        self._cond = threading.Condition()
        self._pending: set[Path] = set()
        self._added = 0  # names handed over so far (a sequence number)
        self._done = 0  # every name up to this number is synced (or its sync failed)
        self._syncing = False  # one pass at a time
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def add(self, directory: Path) -> None:
        with self._cond:
            self._added += 1
            self._pending.add(directory)
            if self._sync_all is not None:
                return  # made durable by the next syncfs (`covered`) or by `wait`
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="store-sync", daemon=True)
                try:
                    thread.start()
                    self._thread = thread
                except RuntimeError:  # no thread now (a limit): `wait` syncs them itself
                    self._thread = None
            self._cond.notify_all()

    def added(self) -> int:
        """How many names were handed over so far (for `covered`)."""
        with self._cond:
            return self._added

    def covered(self, upto: int) -> None:
        """Every name up to number `upto` was made durable (by a syncfs begun after it was
        handed over)."""
        with self._cond:
            self._done = max(self._done, upto)
            if self._added == upto:
                self._pending.clear()
            self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            target = self._added
            while self._done < target:
                if self._syncing or (self._thread is not None and self._thread.is_alive()):
                    self._cond.wait(0.5)
                    continue
                batch, upto = self._take()
                self._cond.release()
                try:
                    self._sync(batch, upto)
                finally:
                    self._cond.acquire()
            error, self._error = self._error, None
        if error is not None:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise StoreError(f"cannot make the names of stored files durable ({reason}); check the "
                             "disk: the files were written, their directory entries may not survive "
                             "a power cut") from error

    def close(self) -> None:
        """`wait`, then let the thread end now rather than after its idle time."""
        self.wait()
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def _take(self) -> tuple[set[Path], int]:
        """Under the lock: everything handed over so far, as one pass."""
        batch, self._pending = self._pending, set()
        self._syncing = True
        return batch, self._added

    def _sync(self, batch: set[Path], upto: int) -> None:
        failure: Exception | None = None
        try:
            if batch and not (self._sync_all is not None and self._sync_all()):
                _sync_directories(batch)
        except Exception as exc:  # recorded for `wait`, never lost with this thread
            failure = exc
        finally:
            with self._cond:
                self._done = max(self._done, upto)
                self._syncing = False
                if failure is not None and self._error is None:
                    self._error = failure
                self._cond.notify_all()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    ready = lambda: (self._pending and not self._syncing) or self._closing  # noqa: E731
                    if not ready():
                        self._cond.wait_for(ready, timeout=5.0)
                    if not self._pending or self._syncing:  # idle for a while, or closed
                        return
                    batch, upto = self._take()
                self._sync(batch, upto)
        finally:
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None  # the next `add` starts another
                self._closing = False
                self._cond.notify_all()



def _write_error(path: Path, exc: BaseException) -> StoreError:
    """The StoreError for `path` that could not be written because of `exc` (one already a
    StoreError, e.g. "never overwrites", as it is)."""
    if isinstance(exc, StoreError):
        return exc
    return _os_error(exc, f"write {path}")


def _disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the file system has no room left (an OSError or an SQLite error)."""
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        # SQLite's own text for SQLITE_FULL, for an error raised without its code.
        return (code & 0xFF == _SQLITE_FULL) if code is not None else "database or disk is full" in str(exc)
    return False


def _os_error(exc: BaseException, doing: str) -> StoreError:
    """The StoreError for a failure to `doing` ("write PATH"): a DiskFullError when the disk
    is full, which says so first (nothing is damaged then: space is what is missing)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    if _disk_full(exc):
        error: StoreError = DiskFullError(f"the disk is full: cannot {doing}: {reason}; free space on "
                                          "that file system, then run again: what was stored is kept")
    else:
        error = StoreError(f"cannot {doing}: {reason}")
    error.__cause__ = exc
    return error

