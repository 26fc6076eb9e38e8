"""The store with its index in PostgreSQL: for collectors on several machines sharing one store.

The stored files (envelopes, metadata, verdicts, appraisals) are the same as `Store`'s, on a
folder every worker reaches; only the index and the device states move to PostgreSQL, so that
any machine can answer "latest per device" and several writers update the states without
overwriting each other's. Object storage would replace the file half of `Store` behind the
same `EnvelopeStore` interface; it is not built.

psycopg is imported here only: `dossier collect` without a database never loads it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..sidecars import DamagedFile, read_appraisal
from ..store import Store
from .layout import APPRAISAL_SUFFIX, ENVELOPE_SUFFIX, EnvelopeRecord, appraisal_row, check_device_name

log = logging.getLogger("collector.store")

__all__ = ["PostgresStore", "connect", "guarded"]

#: Index rows held back within a run and written together: a batch of the collector's outputs.
MAX_HELD_ROWS = 16
#: Seconds to wait for the database before a command fails naming it (a worker retries its
#: chunk; a reader exits 2).
CONNECT_TIMEOUT_S = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    path TEXT PRIMARY KEY, device TEXT NOT NULL, host TEXT, nonce TEXT, started TEXT,
    received TEXT NOT NULL, bytes BIGINT NOT NULL, sha256 TEXT NOT NULL, duration_s DOUBLE PRECISION,
    trusted BOOLEAN, reasons TEXT NOT NULL DEFAULT '[]', days_leaf INTEGER, days_root INTEGER,
    meta_missing BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS envelopes_by_device ON envelopes (device, received);
CREATE TABLE IF NOT EXISTS appraisals (
    path TEXT PRIMARY KEY, device TEXT NOT NULL, received TEXT NOT NULL, status TEXT NOT NULL,
    vector TEXT NOT NULL, findings INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS appraisals_by_device ON appraisals (device, received);
CREATE TABLE IF NOT EXISTS device_states (
    device TEXT PRIMARY KEY, state TEXT NOT NULL, updated TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""
_COLUMNS = ("path, device, host, nonce, started, received, bytes, sha256, duration_s, trusted, reasons, "
            "days_leaf, days_root, meta_missing")
_UPSERT = (f"INSERT INTO envelopes ({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
           "ON CONFLICT (path) DO UPDATE SET " + ", ".join(
               f"{column} = EXCLUDED.{column}" for column in _COLUMNS.split(", ")[1:]))
# One advisory lock id for "the schema is being created": two workers starting together would
# otherwise race on CREATE TABLE IF NOT EXISTS (it is not atomic in PostgreSQL).
_SCHEMA_LOCK = 0x7D05_5E01


def connect(dsn: str) -> Any:
    """An autocommit psycopg connection to `dsn`; raises StoreError naming the database (never
    the password) when it cannot be reached."""
    import psycopg

    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach the PostgreSQL index ({_redacted(dsn)}): expected a database that "
                         f"accepts the configured DSN, found: {str(exc).strip()}") from None


def _redacted(dsn: str) -> str:
    """`dsn` without its password, for messages and logs."""
    from psycopg.conninfo import conninfo_to_dict

    import psycopg

    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:  # shown as nothing rather than leaked
        return "an unparsable DSN"
    return " ".join(f"{key}={value}" for key, value in sorted(parts.items()) if key != "password")


@contextmanager
def guarded(connection: Any, lock: threading.Lock, dsn: str, what: str) -> Iterator[Any]:
    """`connection` under `lock`; a database error becomes a StoreError naming `what` and the
    database (never its password)."""
    import psycopg

    with lock:
        try:
            yield connection
        except psycopg.Error as exc:
            raise StoreError(f"{what} ({_redacted(dsn)}) failed: {str(exc).strip()}") from exc


class PostgresStore(Store):
    """`Store`'s files on a shared folder with the index and device states in PostgreSQL
    (`EnvelopeStore`). Thread-safe: one connection, used under the store's lock."""

    def __init__(self, root: Path, dsn: str) -> None:
        super().__init__(root)
        self.dsn = dsn
        self._pg = connect(dsn)
        self._pg_lock = threading.Lock()
        self._seen_states: dict[str, str] = {}  # device -> its state as read, to write back only changes
        self._held_rows: list[tuple[Any, ...]] = []  # index rows not written yet (`batched_index`)
        self._hold_up_to = 0
        with self._pg_lock, self._pg.transaction():
            self._pg.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            self._pg.execute(_SCHEMA)

    @classmethod
    def open_shared(cls, root: str | Path, dsn: str, *, create: bool = True) -> PostgresStore:
        """Open the shared store at `root` with its index at `dsn`; raises StoreError."""
        return cls(cls._folder(root, create=create, missing=f"expected the shared store folder at {root}, found "
                                                            "none; mount it, or run a `dossier worker` first"), dsn)

    def close(self) -> None:
        super().close()
        self.flush_index()
        with self._pg_lock:
            self._pg.close()

    def _sql(self) -> AbstractContextManager[Any]:
        return guarded(self._pg, self._pg_lock, self.dsn, "the PostgreSQL index")

    # --- a run: rows are committed a batch at a time -------------------------------------------

    def mark_dirty(self) -> None:
        """Nothing to mark: rows are committed as they are stored (a batch at a time). What a
        crash between storing a file and its row leaves unindexed, `reindex` (or a worker taking over the device,
        `collector.distributed.chunks`) finds from the files."""
        self._marked_dirty = True

    def mark_clean(self) -> bool:
        self._marked_dirty = False
        return True

    def recover(self, *, on_damage: Callable[[DamagedFile], None] | None = None) -> int | None:
        return None

    @contextmanager
    def batched_index(self, rows: int = MAX_HELD_ROWS) -> Iterator[None]:
        """Within the block, rows are written up to `rows` at a time (one round trip: each
        database call hands the GIL over among the session threads), and all at its end."""
        with self._pg_lock:
            self._hold_up_to = min(rows, MAX_HELD_ROWS)
        try:
            yield
        finally:
            with self._pg_lock:
                self._hold_up_to = 0
            self.flush_index()

    def _put_row(self, record: EnvelopeRecord) -> None:
        with self._pg_lock:
            self._held_rows.append(self._pg_row(record))
            if len(self._held_rows) < self._hold_up_to:
                return
        self.flush_index()

    def flush_index(self) -> None:
        """Write the index rows held back so far (before telling anyone those outputs are done)."""
        with self._sql() as db:
            rows, self._held_rows = self._held_rows, []
            if rows:
                with db.transaction():
                    db.cursor().executemany(_UPSERT, rows)

    def index(self, record: EnvelopeRecord) -> None:
        self._put_row(record)

    def index_files(self, paths: list[Path]) -> list[EnvelopeRecord]:
        """Index the envelopes at `paths` from their files (a writer died between storing and
        indexing them); returns their records."""
        records = []
        for path in paths:
            record = self._record_from_files(path, lambda damage: log.warning("damaged file in the store: %s", damage))
            if record is not None:
                self._put_row(record)
                records.append(record)
        return records

    @staticmethod
    def _pg_row(record: EnvelopeRecord) -> tuple[Any, ...]:
        return (record.path, record.device, record.host, record.nonce, record.started, record.received,
                record.bytes, record.sha256, record.duration_s, record.trusted, json.dumps(record.reasons),
                record.days_leaf, record.days_root, record.meta_missing)

    @staticmethod
    def _pg_record(row: tuple[Any, ...]) -> EnvelopeRecord:
        (path, device, host, nonce, started, received, size, digest, duration, trusted, reasons,
         days_leaf, days_root, meta_missing) = row
        return EnvelopeRecord(path=path, device=device, host=host, nonce=nonce, started=started, received=received,
                              bytes=size, sha256=digest, duration_s=duration, trusted=trusted,
                              reasons=json.loads(reasons), days_leaf=days_leaf, days_root=days_root,
                              meta_missing=bool(meta_missing))

    # --- reading -----------------------------------------------------------------------------

    def _records(self, query: str, args: tuple[Any, ...] = ()) -> list[EnvelopeRecord]:
        self.flush_index()  # a reader sees every envelope saved so far
        with self._sql() as db:
            rows = db.execute(query, args).fetchall()
        return [self._pg_record(row) for row in rows]

    def latest(self) -> dict[str, EnvelopeRecord]:
        rows = self._records(f"SELECT DISTINCT ON (device) {_COLUMNS} FROM envelopes "
                             "ORDER BY device, received DESC, path DESC")
        return {record.device: record for record in rows}

    def latest_trusted(self) -> dict[str, EnvelopeRecord]:
        rows = self._records(f"SELECT DISTINCT ON (device) {_COLUMNS} FROM envelopes WHERE trusted "
                             "ORDER BY device, received DESC, path DESC")
        return {record.device: record for record in rows}

    def history(self, device: str, limit: int | None = None) -> list[EnvelopeRecord]:
        return self._records(f"SELECT {_COLUMNS} FROM envelopes WHERE device = %s ORDER BY received DESC "
                             "LIMIT %s", (device, limit))

    def count(self) -> int:
        """How many envelopes the index holds."""
        with self._sql() as db:
            return int(db.execute("SELECT count(*) FROM envelopes").fetchone()[0])

    # --- appraisals -----------------------------------------------------------------------------

    def _connection(self) -> Any:
        raise StoreError("expected the SQLite index, found the PostgreSQL one: this operation (pruning) is not "
                         "available on a shared index yet; prune from one machine with the files only")

    def save_appraisal(self, record: EnvelopeRecord, appraisal: Mapping[str, Any]) -> None:
        self._write_appraisal_file(record, appraisal)
        with self._sql() as db:
            db.execute("INSERT INTO appraisals VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (path) DO UPDATE SET "
                       "status = EXCLUDED.status, vector = EXCLUDED.vector, findings = EXCLUDED.findings",
                       appraisal_row(record, appraisal))

    def appraisal_statuses(self, device: str | None = None) -> list[tuple[str, str, str, str]]:
        query = "SELECT device, received, path, status FROM appraisals"
        args: tuple[Any, ...] = ()
        if device is not None:
            query, args = query + " WHERE device = %s", (device,)
        with self._sql() as db:
            return [tuple(row) for row in db.execute(query + " ORDER BY device, received", args)]  # type: ignore[misc]

    # --- device states: one row per device, written back only when changed -----------------------

    def states(self, *, on_damage: Callable[[StoreError], None] | None = None) -> dict[str, dict[str, Any]]:
        with self._sql() as db:
            rows = db.execute("SELECT device, state FROM device_states").fetchall()
        states = {}
        for device, text in rows:
            try:
                state = json.loads(text)
            except ValueError:
                problem = StoreError(f"device_states row {device!r}: expected a JSON object, found text that does "
                                     "not parse; that device's state starts afresh")
                if on_damage is None:
                    raise problem from None
                on_damage(problem)
                continue
            self._seen_states[device] = text
            states[device] = state
        return states

    def read_state(self, device: str) -> dict[str, Any]:
        check_device_name(device)
        return self.states().get(device, {})

    def write_states(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Upsert the states that changed since they were read: another worker's newer state of
        a device this one only read is never written over."""
        changed = []
        for device, state in states.items():
            check_device_name(device)
            text = json.dumps(state, sort_keys=True, default=str)
            if self._seen_states.get(device) != text:
                changed.append((device, text))
        if not changed:
            return
        with self._sql() as db, db.transaction():
            db.cursor().executemany("INSERT INTO device_states (device, state) VALUES (%s, %s) ON CONFLICT (device) "
                                    "DO UPDATE SET state = EXCLUDED.state, updated = now()", changed)
        self._seen_states.update(changed)

    # --- upkeep ---------------------------------------------------------------------------------

    def reindex(self, *, on_damage: Callable[[DamagedFile], None] | None = None) -> int:
        """Rebuild the index from the shared files in one transaction (readers see the old index
        until it commits); returns how many envelopes it holds."""
        report = on_damage or (lambda damage: log.warning("damaged file in the store: %s", damage))
        rows, appraisals = [], []
        for envelope in self.envelope_files():
            record = self._record_from_files(envelope, report)
            if record is None:
                continue
            rows.append(self._pg_row(record))
            appraisal, problems = read_appraisal(
                envelope.with_name(envelope.name[: -len(ENVELOPE_SUFFIX)] + APPRAISAL_SUFFIX))
            for problem in problems:
                report(problem)
            if appraisal is not None:
                appraisals.append(appraisal_row(record, appraisal))
        with self._sql() as db, db.transaction():
            db.execute("DELETE FROM envelopes")
            db.execute("DELETE FROM appraisals")
            cursor = db.cursor()
            cursor.executemany(_UPSERT, rows)
            cursor.executemany("INSERT INTO appraisals VALUES (%s,%s,%s,%s,%s,%s)", appraisals)
        return len(rows)

    def envelope_files(self) -> Iterator[Path]:
        for device_dir in sorted(p for p in self.root.iterdir()
                                 if p.is_dir() and p.name not in ("state", "records.d")):
            yield from sorted(device_dir.glob("*" + ENVELOPE_SUFFIX))

    def files_since(self, device: str, since: datetime) -> list[Path]:
        """The device's envelope files received at or after `since` (from their names)."""
        from verifier.stored import parse_stored_name

        folder = self.root / device
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.glob("*" + ENVELOPE_SUFFIX)):
            parsed = parse_stored_name(path.name)
            if parsed is not None and parsed.received >= since:
                found.append(path)
        return found
