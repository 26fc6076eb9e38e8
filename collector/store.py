"""The envelope store: exact bytes on disk, metadata beside them, an SQLite index over both.

Layout under the store root:

    <device>/<received UTC>-<nonce prefix>.envelope            exactly what the device printed
    <device>/<...>.envelope.meta.json                          schemas/metadata.schema.json, with
                                                               the verdict at collection
    <device>/<...>.envelope.verdict.json                       a verdict recorded later (signed
                                                               command outputs; older stores)
    state/_devices.json                                        every device's last poll,
                                                               increments, alerts sent
    index.sqlite                                               rebuildable from the files

Crash safety: each file is written to a temporary file (unnamed where Linux's O_TMPFILE works),
made durable, then hard-linked to its final name (a link never replaces an existing file, unlike
rename), and the name made durable too before a run ends (`Store.sync`). Durable means a fsync
of the file and of its folder (the folders of envelopes and metadata by a background thread),
or, where the file system takes it (`_BatchSync`), one syncfs for a whole batch of files
(`Store.save_many`), which also makes the names of the batch before it durable. A crash leaves
at most a `.*.tmp` file, which `reindex` removes. The index is marked dirty while a run writes;
a run that finds it dirty rebuilds it from the files first.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import re
import secrets
import sqlite3
import stat
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from .errors import DiskFullError, StoreError
from .sidecars import DAMAGE_UNREADABLE, DamagedFile, collected_verdict, read_appraisal, read_metadata

log = logging.getLogger(__name__)

__all__ = ["METADATA_FORMAT", "DamagedFile", "EnvelopeRecord", "Store", "StoredVerdict", "write_file_atomically"]

METADATA_FORMAT = "trust-dossier/envelope-metadata/1"
ENVELOPE_SUFFIX = ".envelope"
META_SUFFIX = ".envelope.meta.json"
VERDICT_SUFFIX = ".envelope.verdict.json"
APPRAISAL_SUFFIX = ".envelope.appraisal.json"  # written by collector.insights
INDEX_NAME = "index.sqlite"
DIRTY_MARKER = "index.dirty"
_DIRTY_TEXT = b"a collection run is writing\n"
#: A metadata file with the verdict in it stays under this; a larger verdict (its findings quote
#: device output) goes to its own `.envelope.verdict.json`. `dossier verify` reads metadata files
#: of up to 1 MiB.
MAX_METADATA_WITH_VERDICT = 256 * 1024
#: The received time at the start of a stored envelope's name (as `Store._entry` writes it).
_NAME_STAMP = "%Y%m%dT%H%M%S.%fZ"
#: `recover` logs this many damaged files one by one, then how many more there are: a store with
#: thousands of them must not bury the run's own output (`dossier store reindex` lists them all).
MAX_DAMAGE_WARNINGS = 20

#: errno values meaning the file system has no room left (a quota too: the fix is the same).
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: SQLite's primary result codes: a full disk; a file that is not (or no longer) a database.
_SQLITE_FULL, _SQLITE_CORRUPT, _SQLITE_NOTADB, _SQLITE_IOERR = 13, 11, 26, 10
#: SQLite reports a -wal or -shm file it cannot grow as an I/O error, not SQLITE_FULL: one with
#: less room than this left on the index's file system is taken for a full disk.
_LOW_SPACE_BYTES = 1024 * 1024

_INSERT = "INSERT OR REPLACE INTO envelopes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
#: `PRAGMA user_version` of an index in WAL mode with this schema (bump when the schema changes).
_INDEX_SET_UP = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    path TEXT PRIMARY KEY,          -- relative to the store root
    device TEXT NOT NULL,
    host TEXT,
    nonce TEXT,
    started TEXT,
    received TEXT NOT NULL,         -- ISO-8601 UTC; sorts as text
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    duration_s REAL,
    trusted INTEGER,                -- 1 / 0 / NULL when not verified yet
    reasons TEXT NOT NULL DEFAULT '[]',
    days_leaf INTEGER,
    days_root INTEGER,
    meta_missing INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS envelopes_by_device ON envelopes (device, received);
CREATE TABLE IF NOT EXISTS appraisals (
    path TEXT PRIMARY KEY,          -- the envelope appraised (collector.insights)
    device TEXT NOT NULL,
    received TEXT NOT NULL,
    status TEXT NOT NULL,           -- affirming | warning | contraindicated
    vector TEXT NOT NULL,           -- JSON: category -> status
    findings INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS appraisals_by_device ON appraisals (device, received);
"""


# A device name becomes a folder of the store: the inventory's name pattern, and none of the
# names the store itself uses at its top level.
DEVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
RESERVED_NAMES = frozenset({"state"})
#: The device states, one file for the fleet (a name no device can have: it starts with '_').
DEVICE_STATES_NAME = "_devices.json"
DEVICE_STATES_FORMAT = "trust-dossier/device-states/1"


def _is_device_name(device: object) -> bool:
    return isinstance(device, str) and bool(DEVICE_NAME_RE.fullmatch(device)) and device not in RESERVED_NAMES


def check_device_name(device: str) -> str:
    """Return `device` if it can name a folder of the store; raise StoreError otherwise."""
    if not _is_device_name(device):
        raise StoreError(
            f"invalid device name {device!r}: expected 1 to 63 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, and not one of {sorted(RESERVED_NAMES)}"
        )
    return device


@dataclass(frozen=True)
class StoredVerdict:
    """A verdict as the store records it: the verifier's JSON and the index's summary of it."""

    verdict_json: Mapping[str, Any]
    trusted: bool
    reasons: list[str]
    days_leaf: int | None
    days_root: int | None

    def apply_to(self, record: EnvelopeRecord) -> None:
        """Put the index's summary of this verdict on `record`."""
        record.trusted, record.reasons = self.trusted, self.reasons
        record.days_leaf, record.days_root = self.days_leaf, self.days_root


@dataclass
class EnvelopeRecord:
    """One stored envelope as the index knows it."""

    path: str
    device: str
    received: str
    bytes: int
    sha256: str
    host: str | None = None
    nonce: str | None = None
    started: str | None = None
    duration_s: float | None = None
    trusted: bool | None = None
    reasons: list[str] = field(default_factory=list)
    days_leaf: int | None = None
    days_root: int | None = None
    meta_missing: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_TMP_PREFIX = secrets.token_hex(4)
_tmp_counter = itertools.count()


def _json_file(value: Any) -> bytes:
    """A sidecar file's bytes: indented, sorted keys, a final newline (orjson: ~20x faster
    than `json` with indent, the same layout)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str) + b"\n"


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

    Cheaper than a named temporary file by a name created and removed (storing an envelope,
    its metadata and verdict: 0.70 -> 0.44 ms of CPU on this machine's ext4, measured alone),
    and a crash leaves nothing behind: the file only ever appears complete, under its name.
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
    polling with dozens of threads that cost ~2 ms of CPU per envelope on this machine, far more
    than the call itself. One `syncfs` writes and flushes everything dirty on the file system,
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


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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
    fsync cost the storing thread ~1-8 ms of waiting on this machine's disk (a third of a
    stored envelope's wall time, the most of any step). Here a thread fsyncs the directories
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


@dataclass
class _Entry:
    """One envelope on its way into the store (`Store.save`, `Store.save_many`)."""

    directory: Path
    name: str
    envelope_path: Path
    output: bytes
    meta: dict[str, Any]
    record: EnvelopeRecord


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


def _low_on_space(folder: Path) -> bool:
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < _LOW_SPACE_BYTES


def _index_error(root: Path, exc: sqlite3.Error | OSError, doing: str) -> StoreError:
    """The StoreError for an index of the store at `root` that could not be `doing` ("opened",
    "written", "rebuilt"): disk full, damaged, or another cause, each named as what it is."""
    index = root / INDEX_NAME
    code = getattr(exc, "sqlite_errorcode", None)
    if _disk_full(exc) or (code is not None and code & 0xFF == _SQLITE_IOERR and _low_on_space(root)):
        error: StoreError = DiskFullError(
            f"the disk is full: the index {index} cannot be {doing} ({exc}); free space on the file "
            f"system holding {root}, then run `dossier store reindex --store {root}` (the envelopes "
            "stored so far are kept and the index is rebuilt from them)")
    elif code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        error = StoreError(f"the index {index} is damaged ({exc}); run `dossier store reindex --store "
                           f"{root}` to rebuild it from the files")
    else:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        error = StoreError(f"the index {index} cannot be {doing} ({reason}); check the permissions "
                           f"and the disk, then run `dossier store reindex --store {root}`")
    error.__cause__ = exc
    return error


class Store:
    """A directory of stored envelopes with its index. Thread-safe for concurrent saves."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._made_dirs: set[Path] = set()  # mkdir once per directory, not once per envelope
        self._elsewhere: set[Path] = set()  # folders on another file system than the root's
        self._device_dirs: dict[str, Path] = {}  # device name -> its folder, made
        # One syncfs per batch of files instead of a fsync each, where the file system allows.
        self._batch: _BatchSync | None = _BatchSync(self.root) if _BatchSync.usable(self.root) else None
        if self._batch is not None:
            weakref.finalize(self, self._batch.close)
        self._names = _NameSyncer(self._batch.sync if self._batch is not None else None)
        self._held: list[tuple[Any, ...]] = []  # index rows not written yet (batched_index)
        self._hold_up_to = 0
        # A write to the index failed since it was last rebuilt: the dirty marker stays
        # (`mark_clean`). While this store holds the marker (`mark_dirty`), such a failure is
        # logged and the run goes on: the next run rebuilds the index from the files.
        self._index_failed = False
        self._marked_dirty = False
        self._index_failure_logged = False

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, create: bool = True) -> Store:
        """Open (and with `create`, make) a store; raises StoreError if it is unusable."""
        root = Path(root)
        if not root.is_dir():
            if not create:
                raise StoreError(f"expected a store directory at {root}, found none; run "
                                 "`dossier collect --store DIR` first")
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create store directory {root}: {exc.strerror}") from exc
        store = cls(root)
        if not (root / INDEX_NAME).exists():
            store.reindex()
        return store

    # --- index -----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The index connection (call with `_lock` held); rows held back by `batched_index`
        are written first, so a reader always sees every envelope saved so far."""
        db = self._open_connection()
        if self._held:
            self._write_held(db)
        return db

    def _write_held(self, db: sqlite3.Connection) -> None:
        rows, self._held = self._held, []
        with self._index_write():
            db.execute("BEGIN")
            try:
                db.executemany(_INSERT, rows)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
                    db.execute("ROLLBACK")
                raise

    @contextmanager
    def _index_write(self) -> Iterator[None]:
        """Around a write to the index (with `_lock` held). A failure is remembered, so that
        the dirty marker stays (`mark_clean`), and named (disk full, damaged). While this store
        holds the marker it is logged and the caller goes on (the rows are rebuilt from the
        files by the next run); otherwise it is raised as a StoreError."""
        try:
            yield
        except (sqlite3.Error, StoreError) as exc:
            self._index_failed = True
            error = exc if isinstance(exc, StoreError) else _index_error(self.root, exc, "written")
            if not self._marked_dirty:
                raise error  # noqa: B904 (its cause is set: `_index_error`)
            self._held = []  # rebuilt from their files by the next run, as every row of this one
            if not self._index_failure_logged:
                self._index_failure_logged = True
                log.error("%s; the envelopes are stored, the index stays marked dirty and the next run "
                          "rebuilds it", error)

    @contextmanager
    def batched_index(self, rows: int = 64) -> Iterator[None]:
        """Within the block, index rows are written `rows` at a time, one transaction each
        (and all that are left at its end), instead of one transaction per envelope. The
        index is derived data: a crash before they are written is what `recover` repairs
        (a collection run marks the index dirty first)."""
        with self._lock:
            self._hold_up_to = rows
        try:
            yield
        finally:
            with self._lock, self._index_write():
                self._hold_up_to = 0
                if self._held:
                    self._write_held(self._open_connection())

    def _put_row(self, record: EnvelopeRecord) -> None:
        """Write (or, within `batched_index`, hold back) `record`'s row; call with `_lock` held."""
        row = self._row_values(record)
        with self._index_write():
            if self._hold_up_to:
                self._held.append(row)
                if self._db is None:
                    self._open_connection()  # now, in the storing thread, rather than at the run's end
                if len(self._held) >= self._hold_up_to:
                    self._write_held(self._open_connection())
                return
            self._connection().execute(_INSERT, row)

    def _open_connection(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = sqlite3.connect(self.root / INDEX_NAME, check_same_thread=False,
                                           isolation_level=None, timeout=30)
                self._db.execute("PRAGMA synchronous=NORMAL")
                # Set up once per index file (WAL mode is kept in the file): a store is opened
                # at every run, and this is half a millisecond.
                if self._db.execute("PRAGMA user_version").fetchone()[0] != _INDEX_SET_UP:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    self._db.executescript(_SCHEMA)
                    self._db.execute(f"PRAGMA user_version = {_INDEX_SET_UP}")
            except sqlite3.Error as exc:
                if self._db is not None:
                    self._db.close()
                self._db = None
                self._index_failed = True  # the dirty marker stays until it is rebuilt
                raise _index_error(self.root, exc, "opened") from exc
        return self._db

    def sync(self) -> None:
        """Return once the names of every file stored so far are durable (their directories
        synced in the background, or by the syncfs of later batches and one more here, see
        `_NameSyncer`); raises StoreError if that failed. A run calls it before it ends, `close`
        too."""
        self._names.wait()

    def close(self) -> None:
        self._names.close()
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        with self._lock:
            if self._held:
                self._write_held(self._open_connection())
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _row_values(record: EnvelopeRecord) -> tuple[Any, ...]:
        return (record.path, record.device, record.host, record.nonce, record.started,
                record.received, record.bytes, record.sha256, record.duration_s,
                None if record.trusted is None else int(record.trusted), json.dumps(record.reasons),
                record.days_leaf, record.days_root, int(record.meta_missing))

    def _insert(self, db: sqlite3.Connection, record: EnvelopeRecord) -> None:
        db.execute(_INSERT, self._row_values(record))

    @staticmethod
    def _row(row: tuple[Any, ...]) -> EnvelopeRecord:
        (path, device, host, nonce, started, received, size, digest, duration, trusted, reasons,
         days_leaf, days_root, meta_missing) = row
        return EnvelopeRecord(path=path, device=device, host=host, nonce=nonce, started=started,
                              received=received, bytes=size, sha256=digest, duration_s=duration,
                              trusted=None if trusted is None else bool(trusted),
                              reasons=json.loads(reasons), days_leaf=days_leaf,
                              days_root=days_root, meta_missing=bool(meta_missing))

    def latest(self) -> dict[str, EnvelopeRecord]:
        """The newest envelope of every device."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT * FROM envelopes e WHERE received = "
                "(SELECT MAX(received) FROM envelopes WHERE device = e.device) ORDER BY device"
            ).fetchall()
        return {record.device: record for record in map(self._row, rows)}

    def latest_trusted(self) -> dict[str, EnvelopeRecord]:
        """The newest trusted envelope of every device that has one."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT * FROM envelopes e WHERE trusted = 1 AND received = (SELECT MAX(received) "
                "FROM envelopes WHERE device = e.device AND trusted = 1) ORDER BY device"
            ).fetchall()
        return {record.device: record for record in map(self._row, rows)}

    def history(self, device: str, limit: int | None = None) -> list[EnvelopeRecord]:
        """A device's envelopes, newest first."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT * FROM envelopes WHERE device = ? ORDER BY received DESC LIMIT ?",
                (device, -1 if limit is None else limit),
            ).fetchall()
        return list(map(self._row, rows))

    # --- writing ---------------------------------------------------------------------------

    def save(self, *, device: str, host: str, nonce_hex: str, output: bytes, started: datetime,
             received: datetime, duration_s: float, extra: Mapping[str, Any] | None = None,
             index: bool = True,
             check: Callable[[EnvelopeRecord], StoredVerdict | None] | None = None) -> EnvelopeRecord:
        """Store `output` byte for byte plus its metadata, index it, and return the record.

        `check` (the collector's verification) is called once the envelope is stored and
        before its metadata is written; the verdict it returns goes into the metadata file
        (one file, not two, per envelope) and the index row. If it raises, the metadata is
        written without a verdict and the exception goes on.
        `index=False` leaves the index row to `save_verdict` (or `index`), so that a verified
        envelope costs one index write, not two; the caller must then make sure one of them runs
        (a crash in between is covered: the run marks the index dirty, and it is rebuilt)."""
        entry = self._entry(device=device, host=host, nonce_hex=nonce_hex, output=output, started=started,
                            received=received, duration_s=duration_s, extra=extra)
        try:
            # Envelope first: if we crash before the metadata exists, the bytes are kept and
            # reindex lists the envelope as missing its metadata rather than losing it.
            write_file_atomically(entry.envelope_path, output, sync_dir=False)
        except OSError as exc:
            raise _write_error(entry.envelope_path, exc) from exc
        verdict: StoredVerdict | None = None
        try:
            verdict = check(entry.record) if check is not None else None
        finally:  # the metadata and the index row are written even if `check` raised
            try:
                for path, data, sync in self._sidecars(entry, verdict):
                    try:
                        write_file_atomically(path, data, sync=sync, sync_dir=False)
                    except OSError as exc:
                        raise _write_error(path, exc) from exc
            finally:  # the envelope's name is made durable even if its metadata failed
                self._name_added(entry.directory)
            if index:
                self.index(entry.record)
        return entry.record

    def save_many(self, entries: Sequence[Mapping[str, Any]], *, index: bool = True,
                  check: Callable[[list[EnvelopeRecord | None]], list[StoredVerdict | None]] | None = None,
                  ) -> list[EnvelopeRecord | StoreError]:
        """`save` for several envelopes (each entry: `save`'s keyword arguments but `check` and
        `index`): every envelope written, made durable with one syncfs for them all where the
        file system allows (`_BatchSync`; else `save` one by one), and named; then `check` with
        the records in entry order (None for one not stored), which returns the verdicts in that
        order; then the metadata files the same way. Returns, per entry, its record or the
        StoreError that kept it (or its metadata) from being stored; one entry's failure never
        stops the others. If `check` raises, every metadata file is written without a verdict
        and the exception goes on."""
        batch = self._batch
        if batch is None:
            return self._save_each(entries, index=index, check=check)
        results: list[EnvelopeRecord | StoreError | None] = [None] * len(entries)
        prepared: list[_Entry | None] = []
        for position, fields in enumerate(entries):
            try:
                prepared.append(self._entry(**fields))
            except StoreError as exc:
                prepared.append(None)
                results[position] = exc
        try:
            self._write_together(batch, [(position, entry.envelope_path, entry.output, True)
                                         for position, entry in enumerate(prepared) if entry is not None], results)
        finally:  # every envelope named so far gets its name made durable, whatever happens next
            stored = [entry.record if entry is not None and results[position] is None else None
                      for position, entry in enumerate(prepared)]
            for record, entry in zip(stored, prepared, strict=True):
                if record is not None and entry is not None:
                    self._name_added(entry.directory)
        verdicts: list[StoredVerdict | None] = [None] * len(entries)
        try:
            if check is not None and any(record is not None for record in stored):
                verdicts = list(check(stored))
                if len(verdicts) != len(entries):
                    raise ValueError(f"expected one verdict per entry ({len(entries)}), found {len(verdicts)}")
        finally:  # the metadata files and index rows are written even if `check` raised
            if len(verdicts) != len(entries):
                verdicts = [None] * len(entries)
            sidecars = [(position, path, data, sync)
                        for position, entry in enumerate(prepared) if entry is not None and stored[position] is not None
                        for path, data, sync in self._sidecars(entry, verdicts[position])]
            try:
                self._write_together(batch, sidecars, results)
            finally:
                for position, entry in enumerate(prepared):
                    if entry is None or stored[position] is None:
                        continue
                    self._name_added(entry.directory)
                    if results[position] is None:
                        results[position] = entry.record
                        if index:
                            self.index(entry.record)
        return results  # type: ignore[return-value]

    def _save_each(self, entries: Sequence[Mapping[str, Any]], *, index: bool,
                   check: Callable[[list[EnvelopeRecord | None]], list[StoredVerdict | None]] | None,
                   ) -> list[EnvelopeRecord | StoreError]:
        """`save_many` one `save` at a time (no syncfs here); a failing `check` is raised once
        every entry is stored."""
        results: list[EnvelopeRecord | StoreError] = []
        failure: BaseException | None = None

        def check_one(position: int, record: EnvelopeRecord) -> StoredVerdict | None:
            """`check` on the batch's shape: this record at its position, None elsewhere."""
            nonlocal failure
            if check is None or failure is not None:
                return None
            try:
                return check([record if other == position else None for other in range(len(entries))])[position]
            except BaseException as exc:  # raised after the other entries are stored
                failure = exc
                return None

        for position, fields in enumerate(entries):
            try:
                results.append(self.save(**fields, index=index,
                                         check=lambda record, position=position: check_one(position, record)))
            except StoreError as exc:
                results.append(exc)
        if failure is not None:
            raise failure
        return results

    def _write_together(self, batch: _BatchSync, files: list[tuple[int, Path, bytes, bool]],
                        results: list[Any]) -> None:
        """Write `files` (entry position, path, bytes, whether it must be durable) unnamed, make
        them durable with one syncfs (a fsync each if it reports a failure), then name them;
        a file that fails puts a StoreError at its entry's position in `results` (and the
        entry's later files are skipped)."""
        opened: list[tuple[int, Path, bytes, int]] = []
        try:
            for position, path, data, sync in files:
                if results[position] is not None:
                    continue
                try:
                    fd = _open_unnamed(path.parent, data)
                    if fd is None:  # no unnamed files after all: the usual way, fsync and all
                        write_file_atomically(path, data, sync=sync, sync_dir=False)
                        continue
                except (OSError, StoreError) as exc:
                    results[position] = _write_error(path, exc)
                    continue
                opened.append((position, path, data, fd))
            names_before = self._names.added()
            if any(sync for *_, sync in files) and opened:
                synced = batch.sync()
                if synced:
                    self._names.covered(names_before)  # the syncfs made those durable too
                for position, path, _, fd in opened:
                    if synced and (not self._elsewhere or path.parent not in self._elsewhere):
                        continue
                    try:
                        os.fsync(fd)
                    except OSError as exc:
                        results[position] = _write_error(path, exc)
            for position, path, data, fd in opened:
                if results[position] is not None:
                    continue
                try:
                    if not _name_unnamed(fd, path):  # no /proc to link from: the usual way
                        write_file_atomically(path, data, sync_dir=False)
                except (OSError, StoreError) as exc:
                    results[position] = _write_error(path, exc)
        finally:
            for *_, fd in opened:
                os.close(fd)

    def _entry(self, *, device: str, host: str, nonce_hex: str, output: bytes, started: datetime,
               received: datetime, duration_s: float, extra: Mapping[str, Any] | None = None) -> _Entry:
        """Where an envelope goes, its metadata and its record (the device's folder made)."""
        from . import __version__

        device_dir = self._device_dirs.get(device)
        if device_dir is None:  # one Path per device, made (and checked) once per store
            device_dir = self._device_dirs[device] = self._directory(self.root / check_device_name(device))
        stamp = received.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{nonce_hex[:8].lower()}"
        envelope_path = device_dir / (name + ENVELOPE_SUFFIX)
        digest = sha256(output).hexdigest()
        meta = {
            "format": METADATA_FORMAT,
            "device": device,
            "host": host,
            "nonce": nonce_hex,
            "started": _iso(started),
            "received": _iso(received),
            "bytes": len(output),
            "sha256": digest,
            "duration_s": round(duration_s, 6),
            "collector_version": __version__,
            **(extra or {}),
        }
        record = EnvelopeRecord(path=f"{device_dir.name}/{envelope_path.name}", device=device,
                                received=meta["received"], bytes=len(output), sha256=digest,
                                host=host, nonce=nonce_hex, started=meta["started"],
                                duration_s=meta["duration_s"])
        return _Entry(device_dir, name, envelope_path, output, meta, record)

    @staticmethod
    def _sidecars(entry: _Entry, verdict: StoredVerdict | None) -> list[tuple[Path, bytes, bool]]:
        """The files written after the envelope: (path, bytes, whether fsynced). The metadata
        with the verdict in it (which also goes on the record); a verdict too large for it in
        its own file (derived data, not fsynced: see `save_verdict`)."""
        meta = entry.meta
        separate: bytes | None = None
        if verdict is not None:
            meta["verdict"] = verdict.verdict_json
            verdict.apply_to(entry.record)
        meta_bytes = _json_file(meta)
        if verdict is not None and len(meta_bytes) > MAX_METADATA_WITH_VERDICT:
            # Findings quote what the device printed: a verdict that large goes to its own
            # file, so that the metadata stays small enough for every reader of it.
            del meta["verdict"]
            meta_bytes, separate = _json_file(meta), _json_file(verdict.verdict_json)
        files = [(entry.directory / (entry.name + META_SUFFIX), meta_bytes, True)]
        if separate is not None:
            files.append((entry.directory / (entry.name + VERDICT_SUFFIX), separate, False))
        return files

    def verdict(self, record: EnvelopeRecord) -> dict[str, Any] | None:
        """The verdict recorded for `record` at collection (in its metadata, or the separate
        verdict file older collectors and signed-command outputs have); None if none was."""
        path = self.root / record.path
        base = path.name[: -len(ENVELOPE_SUFFIX)]
        meta_path = path.with_name(base + META_SUFFIX)
        meta, _ = read_metadata(meta_path)  # its other fields' damage is reindex's to report
        verdict, problems = collected_verdict(meta_path, meta, path.with_name(base + VERDICT_SUFFIX))
        for problem in problems:
            log.warning("damaged file in the store: %s", problem)
        return verdict.verdict_json if verdict is not None else None

    def index(self, record: EnvelopeRecord) -> None:
        """Write `record`'s row in the index (replacing an older one for the same file)."""
        with self._lock:
            self._put_row(record)

    def save_verdict(self, record: EnvelopeRecord, verdict_json: Mapping[str, Any], *,
                     trusted: bool, reasons: list[str], days_leaf: int | None,
                     days_root: int | None) -> EnvelopeRecord:
        """Store the verifier's verdict beside the envelope and record it in the index."""
        path = self.root / record.path
        verdict_path = path.with_name(path.name[: -len(ENVELOPE_SUFFIX)] + VERDICT_SUFFIX)
        try:
            # Derived data: the verdict is recomputable from the envelope and its metadata
            # (verification at the received time is deterministic), so no fsync here; a crash
            # can only turn it into "not verified yet", never lose or alter an envelope.
            write_file_atomically(verdict_path, _json_file(verdict_json), sync=False)
        except OSError as exc:
            raise _write_error(verdict_path, exc) from exc
        StoredVerdict(verdict_json, trusted, reasons, days_leaf, days_root).apply_to(record)
        with self._lock:
            self._put_row(record)
        return record

    def _directory(self, path: Path) -> Path:
        if path not in self._made_dirs:
            try:
                path.mkdir()
                self._name_added(path.parent)  # the new folder's own name, durable with the rest
            except FileExistsError:
                pass  # a folder (or a symlink to one) is what we want: checked below
            except OSError as exc:
                raise StoreError(f"cannot create {path}: {exc.strerror}") from exc
            try:
                info = path.stat()  # one stat: the kind of entry, and its file system
            except OSError:
                info = None
            if info is None or not stat.S_ISDIR(info.st_mode):
                raise StoreError(f"cannot create {path}: expected a folder there, found a file")
            if self._batch is not None and info.st_dev != self._batch.device:
                self._elsewhere.add(path)  # e.g. a symlink to another disk: no syncfs of ours covers it
            self._made_dirs.add(path)
        return path

    def _name_added(self, directory: Path) -> None:
        """A new name in `directory`: made durable in the background or by the next syncfs, or
        at once for a folder on another file system than the store's (`_elsewhere`)."""
        if directory in self._elsewhere:
            try:
                _fsync_dir(directory)
            except OSError as exc:
                raise StoreError(f"cannot make the names in {directory} durable: {exc.strerror or exc}") from exc
            return
        self._names.add(directory)

    # --- appraisals (collector.insights) ----------------------------------------------------

    @staticmethod
    def _insert_appraisal(db: sqlite3.Connection, record: EnvelopeRecord, appraisal: Mapping[str, Any]) -> None:
        db.execute("INSERT OR REPLACE INTO appraisals VALUES (?,?,?,?,?,?)",
                   (record.path, record.device, record.received, appraisal["status"],
                    json.dumps(appraisal.get("trust_vector") or {}), len(appraisal.get("findings") or [])))

    def save_appraisal(self, record: EnvelopeRecord, appraisal: Mapping[str, Any]) -> None:
        """Store an appraisal beside the envelope (replacing an older one) and index its status."""
        path = self.root / record.path
        target = path.with_name(path.name[: -len(ENVELOPE_SUFFIX)] + APPRAISAL_SUFFIX)
        try:
            # Derived data (re-appraising with a new policy replaces it), so replace is allowed.
            write_file_atomically(target, json.dumps(appraisal, indent=1, sort_keys=True, default=str).encode()
                                  + b"\n", replace=True)
        except OSError as exc:
            raise _write_error(target, exc) from exc
        with self._lock, self._index_write():
            self._insert_appraisal(self._connection(), record, appraisal)

    def appraisal(self, record: EnvelopeRecord) -> dict[str, Any] | None:
        """The stored appraisal of `record` (None when it was not appraised)."""
        path = self.root / record.path
        appraisal, problems = read_appraisal(path.with_name(path.name[: -len(ENVELOPE_SUFFIX)] + APPRAISAL_SUFFIX))
        for problem in problems:
            log.warning("damaged file in the store: %s", problem)
        return appraisal

    def appraisal_statuses(self, device: str | None = None) -> list[tuple[str, str, str, str]]:
        """(device, received, path, status) of every appraisal, oldest first."""
        query = "SELECT device, received, path, status FROM appraisals"
        args: tuple[Any, ...] = ()
        if device is not None:
            query, args = query + " WHERE device = ?", (device,)
        with self._lock:
            return list(self._connection().execute(query + " ORDER BY device, received", args))

    def envelope_bytes(self, record: EnvelopeRecord) -> bytes:
        return (self.root / record.path).read_bytes()

    # --- per-device state (not derived from envelopes, so it survives reindex) -----------

    def states(self, *, on_damage: Callable[[StoreError], None] | None = None) -> dict[str, dict[str, Any]]:
        """Every device's state: `state/_devices.json`, and for devices it does not hold, the
        one-file-per-device states (`state/<device>.json`) that stores written before it may
        have. A state file that cannot be read raises StoreError naming it, or with
        `on_damage`, is reported to it and skipped (its devices start afresh)."""
        directory = self.root / "state"
        if not directory.is_dir():
            return {}
        states: dict[str, dict[str, Any]] = {}

        def damaged(problem: StoreError) -> None:
            if on_damage is None:
                raise problem
            on_damage(problem)

        combined = directory / DEVICE_STATES_NAME
        try:
            if combined.exists():
                document = _read_state_file(combined)
                if document.get("format") != DEVICE_STATES_FORMAT or not isinstance(document.get("devices"), dict):
                    raise StoreError(
                        f"state file {combined}: expected a {DEVICE_STATES_FORMAT} document with a "
                        f"'devices' object, found format {document.get('format')!r} and devices of type "
                        f"{type(document.get('devices')).__name__}; delete it to start the increments "
                        "and alert schedules afresh")
                for device, state in document["devices"].items():
                    if isinstance(state, dict) and _is_device_name(device):
                        states[device] = state
                    else:
                        damaged(StoreError(
                            f"state file {combined}: expected each entry of 'devices' to be a device "
                            f"name with an object, found {device!r} with {type(state).__name__}; that "
                            "entry is ignored (the file is rewritten without it)"))
        except StoreError as exc:
            damaged(exc)
        for path in sorted(directory.glob("*.json")):
            if path.stem in states or not _is_device_name(path.stem):
                continue  # superseded by the combined file, or not a device's
            try:
                states[path.stem] = _read_state_file(path)
            except StoreError as exc:
                damaged(exc)
        return states

    def readable_states(self) -> dict[str, dict[str, Any]]:
        """`states`, with a damaged state file logged as a warning and skipped (its devices
        start afresh, or show no state) rather than stopping the caller: states are advisory."""
        return self.states(on_damage=lambda exc: log.warning("%s", exc))

    def read_state(self, device: str) -> dict[str, Any]:
        """One device's state ({} when it has none); see `states`."""
        check_device_name(device)
        return self.states().get(device, {})

    def write_states(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the device states with `states` (every device's, in one file: one file
        written per batch of polls, not one per poll). Advisory (increments, alert schedule):
        atomic but not fsynced. Losing the newest states to a power cut costs at most a
        repeated block or alert, never an envelope."""
        for device in states:
            check_device_name(device)
        directory = self._directory(self.root / "state")
        document = {"format": DEVICE_STATES_FORMAT, "devices": states}
        path = directory / DEVICE_STATES_NAME
        try:
            write_file_atomically(path, orjson.dumps(document, option=orjson.OPT_SORT_KEYS, default=str),
                                  replace=True, sync=False)
        except OSError as exc:
            raise StoreError(f"cannot write the device states to {path}: {exc.strerror or exc}") from exc

    # --- crash recovery ----------------------------------------------------------------------

    def mark_dirty(self) -> None:
        """Mark the index as possibly behind the files until `mark_clean` (durable at once:
        before any name stored after it). Raises StoreError (DiskFullError on a full disk)
        when it cannot: a run must not store what a crash could leave unindexed."""
        marker = self.root / DIRTY_MARKER
        try:
            write_file_atomically(marker, _DIRTY_TEXT, replace=True)
        except OSError as exc:
            raise _os_error(exc, f"mark the index dirty ({marker})") from exc
        self._marked()

    def _marked(self) -> None:
        self._marked_dirty, self._index_failure_logged = True, False

    def mark_clean(self) -> bool:
        """Clear the dirty marker, unless a write to the index failed since it was last rebuilt:
        then the marker stays (logged), so that the next run rebuilds the index from the files.
        Returns whether it was cleared."""
        with self._lock:
            if self._held and not self._index_failed:
                with self._index_write():
                    self._write_held(self._open_connection())
            failed = self._index_failed
        if failed:
            log.warning("the index %s missed some writes; it stays marked dirty and the next run "
                        "(or `dossier store reindex --store %s`) rebuilds it from the files",
                        self.root / INDEX_NAME, self.root)
            return False
        (self.root / DIRTY_MARKER).unlink(missing_ok=True)
        self._marked_dirty = False
        return True

    @property
    def dirty(self) -> bool:
        return (self.root / DIRTY_MARKER).exists()

    def recover(self, *, on_damage: Callable[[DamagedFile], None] | None = None) -> int | None:
        """Rebuild the index if the last run did not finish cleanly; returns envelopes indexed
        (None when there was nothing to do, or it could not be done).

        Never stops the caller from collecting: a damaged file is reported to `on_damage` (by
        default logged as a warning, the first MAX_DAMAGE_WARNINGS of them) and an index that
        cannot be rebuilt (a full disk) is logged, the marker kept for the next run."""
        if not self.dirty and (self.root / INDEX_NAME).exists():
            return None
        damaged: list[DamagedFile] = []
        try:
            count = self.reindex(on_damage=on_damage or damaged.append)
        except StoreError as exc:
            log.warning("cannot rebuild the index before collecting: %s; collecting goes on, the "
                        "index stays marked dirty", exc)
            return None
        finally:
            for damage in damaged[:MAX_DAMAGE_WARNINGS]:
                log.warning("damaged file in the store (its envelope is indexed as far as its files "
                            "tell; nothing was changed): %s", damage)
            if len(damaged) > MAX_DAMAGE_WARNINGS:
                log.warning("%d more damaged files; `dossier store reindex --store %s` lists them all",
                            len(damaged) - MAX_DAMAGE_WARNINGS, self.root)
        self.mark_clean()
        return count

    def _envelope_files(self) -> Iterator[Path]:
        for device_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name != "state"):
            yield from sorted(device_dir.glob("*" + ENVELOPE_SUFFIX))

    def reindex(self, *, on_damage: Callable[[DamagedFile], None] | None = None) -> int:
        """Rebuild the index from the files (removing leftover temporary files); returns the
        number of envelopes indexed.

        A stored file that cannot be used as it is (a damaged metadata, verdict or appraisal
        file; an envelope that cannot be read) is reported to `on_damage` (by default logged as
        a warning): its envelope is indexed from what its files tell (its received time from its
        name when the metadata lacks it), or left out when it cannot be read. Nothing stored is
        changed. Raises StoreError (DiskFullError on a full disk) when the new index cannot be
        written: the old one stays, and no temporary file."""
        report = on_damage or (lambda damage: log.warning("damaged file in the store: %s", damage))
        fresh = self.root / f".{INDEX_NAME}.{secrets.token_hex(4)}.tmp"
        with self._lock:
            self._held = []  # their files are read below; verdicts too, as written so far
            if self._db is not None:
                self._db.close()
                self._db = None
            try:
                for leftover in itertools.chain(self.root.glob("*/.*.tmp"),
                                                self.root.glob(f".{INDEX_NAME}.*.tmp*")):  # a reindex cut short
                    leftover.unlink(missing_ok=True)
                count = self._build_index(fresh, report)
                for suffix in ("-wal", "-shm"):
                    (self.root / (INDEX_NAME + suffix)).unlink(missing_ok=True)
                os.replace(fresh, self.root / INDEX_NAME)
                _fsync_dir(self.root)
            except (sqlite3.Error, OSError) as exc:
                self._index_failed = True
                raise _index_error(self.root, exc, "rebuilt") from exc
            finally:
                for temporary in (fresh, *(Path(f"{fresh}{suffix}") for suffix in ("-journal", "-wal", "-shm"))):
                    temporary.unlink(missing_ok=True)  # gone already once the index is in place
            self._index_failed = False
        return count

    def _build_index(self, path: Path, report: Callable[[DamagedFile], None]) -> int:
        """Write a new index of every envelope to `path`; returns how many it holds."""
        db = sqlite3.connect(path, isolation_level=None)
        count = 0
        try:
            db.executescript(_SCHEMA)
            db.execute("BEGIN")
            for envelope in self._envelope_files():
                record = self._record_from_files(envelope, report)
                if record is None:
                    continue
                self._insert(db, record)
                appraisal_path = envelope.with_name(envelope.name[: -len(ENVELOPE_SUFFIX)] + APPRAISAL_SUFFIX)
                appraisal, problems = read_appraisal(appraisal_path)
                for problem in problems:
                    report(problem)
                if appraisal is not None:
                    self._insert_appraisal(db, record, appraisal)
                count += 1
            db.execute("COMMIT")
        finally:
            db.close()
        return count

    def _record_from_files(self, path: Path, report: Callable[[DamagedFile], None]) -> EnvelopeRecord | None:
        """The index row of envelope `path` from its files, as far as they can be read (each
        damaged one reported); None when the envelope itself cannot be read."""
        base = path.name[: -len(ENVELOPE_SUFFIX)]
        try:
            data = path.read_bytes()
        except OSError as exc:
            report(DamagedFile(DAMAGE_UNREADABLE, str(path), "a readable envelope",
                               f"{exc.strerror or exc}; left out of the index"))
            return None
        meta_path = path.with_name(base + META_SUFFIX)
        meta, problems = read_metadata(meta_path)
        verdict, verdict_problems = collected_verdict(meta_path, meta, path.with_name(base + VERDICT_SUFFIX))
        for problem in problems + verdict_problems:
            report(problem)
        fields = meta or {}
        # The index sorts by received time: the metadata's, else the one in the file's name
        # (`_entry`), else when the file was last written.
        if "received" in fields:
            received = _iso(parse_iso(fields["received"]))
        else:
            try:
                received = _iso(datetime.strptime(base.partition("-")[0], _NAME_STAMP).replace(tzinfo=UTC))
            except ValueError:
                received = _iso(datetime.fromtimestamp(path.stat().st_mtime, UTC))
        record = EnvelopeRecord(path=str(path.relative_to(self.root)), device=fields.get("device", path.parent.name),
                                received=received, bytes=len(data), sha256=sha256(data).hexdigest(),
                                host=fields.get("host"), nonce=fields.get("nonce"), started=fields.get("started"),
                                duration_s=fields.get("duration_s"), meta_missing=meta is None)
        if verdict is not None:
            StoredVerdict(*verdict).apply_to(record)
        return record

    # --- pruning -----------------------------------------------------------------------------

    def _poll_units(self, records: Sequence[EnvelopeRecord]) -> dict[str, str]:
        """`_poll_unit_keys` of one device's records, from their metadata."""
        metas = [read_metadata((self.root / record.path).with_name(
            PurePosixPath(record.path).name[: -len(ENVELOPE_SUFFIX)] + META_SUFFIX))[0] for record in records]
        return _poll_unit_keys(records, metas)

    def prune(self, *, keep_days: float | None, keep_last: int | None, now: datetime | None = None,
              dry_run: bool = False) -> list[EnvelopeRecord]:
        """Delete envelopes older than `keep_days` beyond each device's newest `keep_last`.

        The newest trusted envelope of a device is never deleted, nor any newer one whose
        verdict is unknown (it may be the newest trusted), and a poll's outputs go together: one
        kept keeps the others of its poll (its signer among them). Returns what was (or, with
        `dry_run`, would be) deleted. Raises StoreError when neither limit is given.
        """
        if keep_days is None and keep_last is None:
            raise StoreError("expected --keep-days and/or --keep-last, found neither; refusing "
                             "to prune without a limit")
        now = now or datetime.now(UTC)
        cutoff = _iso(now - timedelta(days=keep_days)) if keep_days is not None else None
        with self._lock:
            devices = [row[0] for row in self._connection().execute(
                "SELECT DISTINCT device FROM envelopes")]
        doomed: list[EnvelopeRecord] = []
        for device in devices:
            records = self.history(device)
            newest_trusted = next((r.path for r in records if r.trusted), None)
            # Envelopes newer than the newest known-trusted one whose verdict is unknown (not
            # verified yet, or the verdict file lost in a crash) may be the real newest trusted
            # one: they are kept until verified.
            unsure: set[str] = set()
            for record in records:  # newest first
                if record.path == newest_trusted:
                    break
                if record.trusted is None:
                    unsure.add(record.path)
            expired = set()
            for position, record in enumerate(records):
                if record.path == newest_trusted or record.path in unsure:
                    continue
                if keep_last is not None and position < keep_last:
                    continue
                if cutoff is not None and record.received >= cutoff:
                    continue
                expired.add(record.path)
            # A poll's outputs are one unit (an XE integrity output verifies only with the SUDI
            # output of its poll as signer): deleted together, or kept together if one is kept.
            units = self._poll_units(records)
            kept_units = {units[record.path] for record in records if record.path not in expired}
            doomed.extend(record for record in records
                          if record.path in expired and units[record.path] not in kept_units)
        if not dry_run:
            for record in doomed:
                path = self.root / record.path
                base = path.name[: -len(ENVELOPE_SUFFIX)]
                # Sidecars first: a crash midway leaves an envelope without metadata, which
                # reindex still lists, never metadata pointing at nothing.
                for sidecar in (APPRAISAL_SUFFIX, VERDICT_SUFFIX, META_SUFFIX):
                    path.with_name(base + sidecar).unlink(missing_ok=True)
                path.unlink(missing_ok=True)
                with self._lock:
                    self._connection().execute("DELETE FROM envelopes WHERE path = ?", (record.path,))
                    self._connection().execute("DELETE FROM appraisals WHERE path = ?", (record.path,))
        return doomed


def new_poll_id() -> str:
    """A fresh id shared by the outputs of one poll (metadata `poll_id`)."""
    return secrets.token_hex(8)


def _poll_unit_keys(records: Sequence[EnvelopeRecord], metas: Sequence[dict[str, Any] | None]) -> dict[str, str]:
    """For each record's path, the key of the poll unit it belongs to: outputs sharing a
    `poll_id`, and an output with the output it names as `signer`. Outputs stored before poll
    ids (IOS XE, `platform` in the metadata): a `sudi` output and the outputs after it up to the
    next `sudi`, as earlier collectors stored a poll. Anything else is a unit of its own."""
    parent: dict[str, str] = {record.path: record.path for record in records}

    def find(path: str) -> str:
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    def join(one: str, other: str) -> None:
        if other in parent:
            parent[find(one)] = find(other)

    by_poll: dict[str, str] = {}
    legacy_sudi: str | None = None
    for record, meta in sorted(zip(records, metas), key=lambda pair: pair[0].received):
        meta = meta or {}
        poll_id, signer = meta.get("poll_id"), meta.get("signer")
        if isinstance(poll_id, str):
            join(record.path, by_poll.setdefault(poll_id, record.path))
        elif meta.get("platform") is not None:
            if meta.get("output") == "sudi":
                legacy_sudi = record.path
            elif legacy_sudi is not None:
                join(record.path, legacy_sudi)
        if isinstance(signer, str) and "/" not in signer:
            join(record.path, str(PurePosixPath(record.path).with_name(signer)))
    return {path: find(path) for path in parent}


def _read_state_file(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"state file {path} is unreadable ({exc}); delete it to start the "
                         "increments and alert schedules afresh") from exc
    if not isinstance(value, dict):
        raise StoreError(f"state file {path}: expected a JSON object, found {type(value).__name__}; "
                         "delete it to start the increments and alert schedules afresh")
    return value
