"""What several workers agree on, in PostgreSQL: runs, per-device claims, last attempts, heartbeats.

A device is polled at most once per run: before polling it a worker claims (run id, device)
with one INSERT that only one worker can win. A chunk redelivered after its worker died skips
the devices already done and takes over the ones the dead worker claimed but did not finish
(its heartbeat stopped), so none is skipped either.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..storage.postgres import connect, guarded

__all__ = ["Claim", "Coordination", "DeviceAttempt", "WorkerBeat"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started TIMESTAMPTZ NOT NULL DEFAULT now(), interval_s DOUBLE PRECISION NOT NULL,
    devices INTEGER NOT NULL, chunks INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    run_id TEXT NOT NULL, device TEXT NOT NULL, worker TEXT NOT NULL,
    claimed TIMESTAMPTZ NOT NULL DEFAULT now(), finished TIMESTAMPTZ, status TEXT, takeovers INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, device)
);
CREATE TABLE IF NOT EXISTS device_attempts (
    device TEXT PRIMARY KEY, run_id TEXT NOT NULL, worker TEXT NOT NULL, attempted TIMESTAMPTZ NOT NULL,
    finished TIMESTAMPTZ, status TEXT, interval_s DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    worker TEXT PRIMARY KEY, queues TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    key_fingerprint TEXT, started TIMESTAMPTZ NOT NULL DEFAULT now(), beat TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_s DOUBLE PRECISION NOT NULL
);
"""
_SCHEMA_LOCK = 0x7D05_5E02


@dataclass(frozen=True)
class Claim:
    """The right to poll one device in one run (taken over from `previous_worker`, which stopped)."""

    run_id: str
    device: str
    claimed: datetime
    previous_worker: str | None = None
    previous_claimed: datetime | None = None  # when the worker taken over from claimed it


@dataclass(frozen=True)
class DeviceAttempt:
    device: str
    run_id: str
    worker: str
    attempted: datetime
    finished: datetime | None
    status: str | None
    interval_s: float


@dataclass(frozen=True)
class WorkerBeat:
    worker: str
    queues: str
    host: str
    pid: int
    beat: datetime
    heartbeat_s: float
    key_fingerprint: str | None


class Coordination:
    """Runs, claims, attempts and heartbeats in the shared PostgreSQL database (thread-safe)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._db = connect(dsn)
        self._lock = threading.Lock()
        with self._sql() as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _sql(self) -> AbstractContextManager[Any]:
        return guarded(self._db, self._lock, self.dsn, "the PostgreSQL coordination tables")

    # --- runs and claims --------------------------------------------------------------------

    def start_run(self, run_id: str, *, interval_s: float, devices: int, chunks: int) -> None:
        with self._sql() as db:
            db.execute("INSERT INTO runs (run_id, interval_s, devices, chunks) VALUES (%s, %s, %s, %s)",
                       (run_id, interval_s, devices, chunks))

    def claim_many(self, run_id: str, devices: Sequence[str], worker: str, *, silent_after_s: float,
                   interval_s: float) -> dict[str, Claim]:
        """`claim` for a chunk's devices: the unclaimed ones in one statement, then each one
        claimed already (done, held, or to take over) on its own. Returns the claims won."""
        with self._sql() as db, db.transaction():
            rows = db.execute("INSERT INTO claims (run_id, device, worker) SELECT %s, unnest(%s::text[]), %s "
                              "ON CONFLICT DO NOTHING RETURNING device, claimed",
                              (run_id, list(devices), worker)).fetchall()
            if rows:
                db.cursor().executemany(
                    "INSERT INTO device_attempts (device, run_id, worker, attempted, interval_s) VALUES (%s, %s, %s, "
                    "%s, %s) ON CONFLICT (device) DO UPDATE SET run_id = EXCLUDED.run_id, worker = EXCLUDED.worker, "
                    "attempted = EXCLUDED.attempted, finished = NULL, status = NULL, interval_s = EXCLUDED.interval_s",
                    [(device, run_id, worker, claimed, interval_s) for device, claimed in rows])
        won = {device: Claim(run_id, device, claimed) for device, claimed in rows}
        for device in devices:
            if device not in won:
                claim = self.claim(run_id, device, worker, silent_after_s=silent_after_s, interval_s=interval_s)
                if claim is not None:
                    won[device] = claim
        return won

    def claim(self, run_id: str, device: str, worker: str, *, silent_after_s: float,
              interval_s: float) -> Claim | None:
        """Claim `device` for `run_id`, or None: done already in this run, or held by a worker
        still heartbeating. A claim held by a worker that stopped heartbeating (or by this
        worker, from a chunk redelivered to it) is taken over."""
        with self._sql() as db, db.transaction():
            row = db.execute("INSERT INTO claims (run_id, device, worker) VALUES (%s, %s, %s) "
                             "ON CONFLICT DO NOTHING RETURNING claimed", (run_id, device, worker)).fetchone()
            previous = previous_claimed = None
            if row is None:
                # Held already: take it over only from a silent worker and only if unfinished;
                # the row lock (FOR UPDATE) makes one of two racing takers win.
                held = db.execute(
                    "SELECT c.worker, c.finished, w.beat, c.claimed FROM claims c LEFT JOIN workers w ON w.worker = c.worker "
                    "WHERE c.run_id = %s AND c.device = %s FOR UPDATE OF c", (run_id, device)).fetchone()
                holder, finished, beat, previous_claimed = held
                alive = db.execute("SELECT %s::timestamptz > now() - make_interval(secs => %s)",
                                   (beat, silent_after_s)).fetchone()[0] if beat is not None else False
                if finished is not None or (alive and holder != worker):
                    return None
                previous = holder
                row = db.execute("UPDATE claims SET worker = %s, claimed = now(), takeovers = takeovers + 1 "
                                 "WHERE run_id = %s AND device = %s RETURNING claimed",
                                 (worker, run_id, device)).fetchone()
            db.execute("INSERT INTO device_attempts (device, run_id, worker, attempted, interval_s) "
                       "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (device) DO UPDATE SET run_id = EXCLUDED.run_id, "
                       "worker = EXCLUDED.worker, attempted = EXCLUDED.attempted, finished = NULL, status = NULL, "
                       "interval_s = EXCLUDED.interval_s", (device, run_id, worker, row[0], interval_s))
        return Claim(run_id, device, row[0], previous, previous_claimed)

    def finish(self, claim: Claim, status: str) -> None:
        """The claimed device's poll ended (`status`: trusted, untrusted, failed, skipped).
        A skipped device (the worker was stopping) is released for another worker."""
        with self._sql() as db, db.transaction():
            if status == "skipped":
                db.execute("DELETE FROM claims WHERE run_id = %s AND device = %s", (claim.run_id, claim.device))
            else:
                db.execute("UPDATE claims SET finished = now(), status = %s WHERE run_id = %s AND device = %s",
                           (status, claim.run_id, claim.device))
            db.execute("UPDATE device_attempts SET finished = now(), status = %s WHERE device = %s AND run_id = %s",
                       (status, claim.device, claim.run_id))

    def finish_many(self, finished: Sequence[tuple[Claim, str]]) -> None:
        """`finish` for several claims in one transaction (a poll's end costs the collecting
        threads one database round trip per batch, not several per device)."""
        done = [(status, claim.run_id, claim.device) for claim, status in finished if status != "skipped"]
        released = [(claim.run_id, claim.device) for claim, status in finished if status == "skipped"]
        if not finished:
            return
        with self._sql() as db, db.transaction():
            cursor = db.cursor()
            if done:
                cursor.executemany("UPDATE claims SET finished = now(), status = %s WHERE run_id = %s AND device = %s",
                                   done)
            if released:
                cursor.executemany("DELETE FROM claims WHERE run_id = %s AND device = %s", released)
            cursor.executemany("UPDATE device_attempts SET finished = now(), status = %s WHERE device = %s AND "
                               "run_id = %s", [(status, claim.device, claim.run_id) for claim, status in finished])

    def run_claims(self, run_id: str) -> list[tuple[str, str, str | None, int]]:
        """(device, worker, status, takeovers) of every claim of `run_id`."""
        with self._sql() as db:
            return [tuple(row) for row in db.execute(  # type: ignore[misc]
                "SELECT device, worker, status, takeovers FROM claims WHERE run_id = %s ORDER BY device",
                (run_id,))]

    # --- nothing goes quiet -------------------------------------------------------------------

    def attempts(self) -> dict[str, DeviceAttempt]:
        with self._sql() as db:
            rows = db.execute("SELECT device, run_id, worker, attempted, finished, status, interval_s "
                              "FROM device_attempts").fetchall()
        return {row[0]: DeviceAttempt(*row) for row in rows}

    def stale_devices(self, devices: Sequence[str], *, intervals: float, interval_s: float,
                      now: datetime | None = None) -> dict[str, datetime | None]:
        """Of `devices` (the fleet), those not attempted for more than `intervals` intervals:
        name -> last attempt (None: never)."""
        attempts = self.attempts()
        with self._sql() as db:
            current = now or db.execute("SELECT now()").fetchone()[0]
        stale: dict[str, datetime | None] = {}
        for device in devices:
            attempt = attempts.get(device)
            if attempt is None:
                stale[device] = None
            elif (current - attempt.attempted).total_seconds() > intervals * max(attempt.interval_s, interval_s):
                stale[device] = attempt.attempted
        return stale

    def heartbeat(self, worker: str, *, queues: Sequence[str], host: str, pid: int, heartbeat_s: float,
                  key_fingerprint: str | None) -> None:
        with self._sql() as db:
            db.execute("INSERT INTO workers (worker, queues, host, pid, key_fingerprint, heartbeat_s) "
                       "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (worker) DO UPDATE SET beat = now(), "
                       "queues = EXCLUDED.queues, host = EXCLUDED.host, pid = EXCLUDED.pid, "
                       "key_fingerprint = EXCLUDED.key_fingerprint, heartbeat_s = EXCLUDED.heartbeat_s",
                       (worker, ",".join(queues), host, pid, key_fingerprint, heartbeat_s))

    def retire(self, worker: str) -> None:
        """A worker that stops on purpose is no longer expected to beat."""
        with self._sql() as db:
            db.execute("DELETE FROM workers WHERE worker = %s", (worker,))

    def workers(self) -> list[WorkerBeat]:
        with self._sql() as db:
            rows = db.execute("SELECT worker, queues, host, pid, beat, heartbeat_s, key_fingerprint FROM workers "
                              "ORDER BY worker").fetchall()
        return [WorkerBeat(*row) for row in rows]

    def silent_workers(self, *, beats: float) -> list[WorkerBeat]:
        """Workers whose last heartbeat is older than `beats` of their own heartbeat periods."""
        with self._sql() as db:
            rows = db.execute("SELECT worker, queues, host, pid, beat, heartbeat_s, key_fingerprint FROM workers "
                              "WHERE beat < now() - make_interval(secs => heartbeat_s * %s) ORDER BY worker",
                              (beats,)).fetchall()
        return [WorkerBeat(*row) for row in rows]
