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

`Store` is the one interface callers use (`collector.storage.interface.EnvelopeStore` writes it
down). Its parts live in `collector.storage`: `layout` (names, records), `durable` (crash-safe
writes: a file appears complete under its name or not at all), `index` (the SQLite index, marked
dirty while a run writes and rebuilt from the files by the next run that finds it so), `states`
(device states) and `pruning`. This module keeps what ties them: saving and reading envelopes
and their sidecars.
"""

from __future__ import annotations

import json
import errno
import logging
import os
import sqlite3
import stat
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

from verifier.policy import MAX_ENVELOPE_BYTES
from verifier.stored import (StoredFileError, new_metadata, read_stored_bytes, sidecar_bytes, stored_name,
                             stored_time)

from .errors import StoreError
from .sidecars import DAMAGE_UNREADABLE, DamagedFile, collected_verdict, read_appraisal, read_metadata
from .storage.durable import (_BatchSync, _fsync_dir, _name_unnamed, _NameSyncer, _open_unnamed,
                              _sync_directories, _write_error, write_file_atomically)
from .storage.index import SQLiteIndex
from .storage.interface import EnvelopeStore
from .storage.layout import (_NAME_STAMP, APPRAISAL_SUFFIX, DEVICE_NAME_RE, DIRTY_MARKER,
                             ENVELOPE_SUFFIX, INDEX_NAME, MAX_DAMAGE_WARNINGS, MAX_METADATA_WITH_VERDICT,
                             META_SUFFIX, METADATA_FORMAT, RESERVED_NAMES, VERDICT_SUFFIX, EnvelopeRecord,
                             StoredVerdict, _Entry, check_device_name, new_poll_id, parse_iso)
from .storage.pruning import Pruning, _poll_unit_keys
from .storage.states import DEVICE_STATES_FORMAT, DEVICE_STATES_NAME, DeviceStates

log = logging.getLogger(__name__)

__all__ = ["APPRAISAL_SUFFIX", "DEVICE_NAME_RE", "DEVICE_STATES_FORMAT", "DEVICE_STATES_NAME", "DIRTY_MARKER",
           "ENVELOPE_SUFFIX", "INDEX_NAME", "MAX_DAMAGE_WARNINGS", "MAX_METADATA_WITH_VERDICT",
           "META_SUFFIX", "METADATA_FORMAT", "RESERVED_NAMES", "VERDICT_SUFFIX", "DamagedFile", "EnvelopeRecord",
           "EnvelopeStore", "Store", "StoredVerdict", "check_device_name", "new_poll_id", "parse_iso",
           "write_file_atomically"]
# Re-exported for callers of the store's internals from before the split (tests of durability).
_REEXPORTED = (_BatchSync, _sync_directories, _poll_unit_keys)


class Store(SQLiteIndex, DeviceStates, Pruning):
    """A directory of stored envelopes with its index (`EnvelopeStore`, on local files and SQLite).
    Thread-safe for concurrent saves."""

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

    @staticmethod
    def _folder(root: str | os.PathLike[str], *, create: bool, missing: str) -> Path:
        """The store's folder, made when missing and `create`; raises StoreError (`missing` when
        it is missing and not to be made)."""
        root = Path(root)
        if not root.is_dir():
            if not create:
                raise StoreError(missing)
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create store directory {root}: {exc.strerror}") from exc
        return root

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, create: bool = True) -> Store:
        """Open (and with `create`, make) a store; raises StoreError if it is unusable."""
        root = cls._folder(root, create=create, missing=f"expected a store directory at {root}, found none; "
                                                        "run `dossier collect --store DIR` first")
        store = cls(root)
        if not (root / INDEX_NAME).exists():
            store.reindex()
        return store


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
        name = stored_name(received, nonce_hex)
        envelope_path = device_dir / (name + ENVELOPE_SUFFIX)
        meta = new_metadata(device=device, host=host, nonce_hex=nonce_hex, output=output, started=started,
                            received=received, duration_s=duration_s, writer_version=__version__, extra=extra)
        record = EnvelopeRecord(path=f"{device_dir.name}/{envelope_path.name}", device=device,
                                received=meta["received"], bytes=len(output), sha256=meta["sha256"],
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
        meta_bytes = sidecar_bytes(meta)
        if verdict is not None and len(meta_bytes) > MAX_METADATA_WITH_VERDICT:
            # Findings quote what the device printed: a verdict that large goes to its own
            # file, so that the metadata stays small enough for every reader of it.
            del meta["verdict"]
            meta_bytes, separate = sidecar_bytes(meta), sidecar_bytes(verdict.verdict_json)
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
            write_file_atomically(verdict_path, sidecar_bytes(verdict_json), sync=False)
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

    def save_appraisal(self, record: EnvelopeRecord, appraisal: Mapping[str, Any]) -> None:
        """Store an appraisal beside the envelope (replacing an older one) and index its status."""
        self._write_appraisal_file(record, appraisal)
        with self._lock, self._index_write():
            self._insert_appraisal(self._connection(), record, appraisal)

    def _write_appraisal_file(self, record: EnvelopeRecord, appraisal: Mapping[str, Any]) -> None:
        path = self.root / record.path
        target = path.with_name(path.name[: -len(ENVELOPE_SUFFIX)] + APPRAISAL_SUFFIX)
        try:
            # Derived data (re-appraising with a new policy replaces it), so replace is allowed.
            write_file_atomically(target, json.dumps(appraisal, indent=1, sort_keys=True, default=str).encode()
                                  + b"\n", replace=True)
        except OSError as exc:
            raise _write_error(target, exc) from exc

    def appraisal(self, record: EnvelopeRecord) -> dict[str, Any] | None:
        """The stored appraisal of `record` (None when it was not appraised)."""
        path = self.root / record.path
        appraisal, problems = read_appraisal(path.with_name(path.name[: -len(ENVELOPE_SUFFIX)] + APPRAISAL_SUFFIX))
        for problem in problems:
            log.warning("damaged file in the store: %s", problem)
        return appraisal

    def envelope_bytes(self, record: EnvelopeRecord) -> bytes:
        """The stored envelope's bytes; raises OSError when it cannot be read or is no regular
        file (a named pipe put there is refused, never waited on)."""
        path = self.root / record.path
        try:
            return read_stored_bytes(path, MAX_ENVELOPE_BYTES, "envelope")
        except StoredFileError as exc:
            raise OSError(errno.EINVAL, f"expected {exc.expected}, found {exc.found}", str(path)) from None

    # --- reading the files back (`reindex`) ----------------------------------------------------

    def envelope_files(self) -> Iterator[Path]:
        """Every envelope file of the store, by device folder then name (not the index: the files)."""
        for device_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name != "state"):
            yield from sorted(device_dir.glob("*" + ENVELOPE_SUFFIX))

    _envelope_files = envelope_files  # what the index (`SQLiteIndex.reindex`) reads back


    def _record_from_files(self, path: Path, report: Callable[[DamagedFile], None]) -> EnvelopeRecord | None:
        """The index row of envelope `path` from its files, as far as they can be read (each
        damaged one reported); None when the envelope itself cannot be read."""
        base = path.name[: -len(ENVELOPE_SUFFIX)]
        try:
            data = read_stored_bytes(path, MAX_ENVELOPE_BYTES, "envelope")  # never waits on a named pipe
        except StoredFileError as exc:
            report(DamagedFile(DAMAGE_UNREADABLE, str(path), exc.expected, f"{exc.found}; left out of the index"))
            return None
        if len(data) > MAX_ENVELOPE_BYTES:
            report(DamagedFile(DAMAGE_UNREADABLE, str(path), f"an envelope of at most {MAX_ENVELOPE_BYTES} bytes",
                               "a larger one; left out of the index"))
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
            received = stored_time(parse_iso(fields["received"]))
        else:
            try:
                received = stored_time(datetime.strptime(base.partition("-")[0], _NAME_STAMP).replace(tzinfo=UTC))
            except ValueError:
                received = stored_time(datetime.fromtimestamp(path.stat().st_mtime, UTC))
        record = EnvelopeRecord(path=str(path.relative_to(self.root)), device=fields.get("device", path.parent.name),
                                received=received, bytes=len(data), sha256=sha256(data).hexdigest(),
                                host=fields.get("host"), nonce=fields.get("nonce"), started=fields.get("started"),
                                duration_s=fields.get("duration_s"), meta_missing=meta is None)
        if verdict is not None:
            StoredVerdict(*verdict).apply_to(record)
        return record

