"""Pruning: which stored envelopes may go, and deleting them with their sidecars."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from verifier.stored import legacy_poll_role, stored_time

from ..errors import StoreError
from ..sidecars import read_metadata
from .layout import APPRAISAL_SUFFIX, ENVELOPE_SUFFIX, META_SUFFIX, VERDICT_SUFFIX, EnvelopeRecord

__all__ = ["Pruning"]


class Pruning:
    """Pruning of a store (a mixin of `collector.store.Store`)."""

    root: Path
    _lock: threading.Lock

    def _connection(self) -> sqlite3.Connection:
        raise NotImplementedError

    def history(self, device: str, limit: int | None = None) -> list[EnvelopeRecord]:
        raise NotImplementedError

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
        cutoff = stored_time(now - timedelta(days=keep_days)) if keep_days is not None else None
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



def _poll_unit_keys(records: Sequence[EnvelopeRecord], metas: Sequence[dict[str, Any] | None]) -> dict[str, str]:
    """For each record's path, the key of the poll unit it belongs to: outputs sharing a
    `poll_id`, and an output with the output it names as `signer`. Outputs stored before poll
    ids (`verifier.stored.legacy_poll_role`): a `sudi` output and the outputs after it up to the
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
        elif (role := legacy_poll_role(meta)) == "start":
            legacy_sudi = record.path
        elif role == "member" and legacy_sudi is not None:
            join(record.path, legacy_sudi)
        if isinstance(signer, str) and "/" not in signer:
            join(record.path, str(PurePosixPath(record.path).with_name(signer)))
    return {path: find(path) for path in parent}

