"""The store's index: an SQLite database over the stored files, derived from them and
rebuilt from them (`reindex`) whenever a run may have left it behind (the dirty marker).

`SQLiteIndex` holds the index's part of `collector.store.Store`; a shared index (another
database) replaces this module behind `collector.storage.interface.EnvelopeStore`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import DiskFullError, StoreError
from ..sidecars import DamagedFile, read_appraisal
from .durable import _disk_full, _fsync_dir, _os_error, write_file_atomically
from .layout import (_DIRTY_TEXT, APPRAISAL_SUFFIX, DIRTY_MARKER, ENVELOPE_SUFFIX, INDEX_NAME,
                     MAX_DAMAGE_WARNINGS, EnvelopeRecord, appraisal_row)

log = logging.getLogger("collector.store")  # one logger for the store, whichever module logs

__all__ = ["SQLiteIndex"]

#: SQLite's primary result codes: a file that is not (or no longer) a database; an I/O error.
_SQLITE_CORRUPT, _SQLITE_NOTADB, _SQLITE_IOERR = 11, 26, 10
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



class SQLiteIndex:
    """The index of a store (a mixin of `collector.store.Store`, which sets these up)."""

    root: Path
    _lock: threading.Lock
    _db: sqlite3.Connection | None
    _held: list[tuple[Any, ...]]
    _hold_up_to: int
    _index_failed: bool
    _marked_dirty: bool
    _index_failure_logged: bool

    def _envelope_files(self) -> Iterator[Path]:
        raise NotImplementedError

    def _record_from_files(self, path: Path, report: Callable[[DamagedFile], None]) -> EnvelopeRecord | None:
        raise NotImplementedError

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


    def index(self, record: EnvelopeRecord) -> None:
        """Write `record`'s row in the index (replacing an older one for the same file)."""
        with self._lock:
            self._put_row(record)


    # --- appraisals (collector.insights) ----------------------------------------------------

    @staticmethod
    def _insert_appraisal(db: sqlite3.Connection, record: EnvelopeRecord, appraisal: Mapping[str, Any]) -> None:
        db.execute("INSERT OR REPLACE INTO appraisals VALUES (?,?,?,?,?,?)", appraisal_row(record, appraisal))

    def appraisal_statuses(self, device: str | None = None) -> list[tuple[str, str, str, str]]:
        """(device, received, path, status) of every appraisal, oldest first."""
        query = "SELECT device, received, path, status FROM appraisals"
        args: tuple[Any, ...] = ()
        if device is not None:
            query, args = query + " WHERE device = ?", (device,)
        with self._lock:
            return list(self._connection().execute(query + " ORDER BY device, received", args))

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


