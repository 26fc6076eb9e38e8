"""The collector's side of the record log: its signing key, appending, checking a store.

The format and the check are the verifier's (`verifier.records`); this module keeps the key
(Ed25519, created on first use, mode 0600, outside the store by default) and appends one signed
record per stored envelope, safe against concurrent writers (`flock` on the log) and crashes
(a torn last line is cut off and recorded in a signed "torn" line, never dropped silently).
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from verifier.errors import VerifierError
from verifier.findings import Finding, Severity
from verifier.records import (LOG_NAME, MAX_LINE_BYTES, LogCheck, RecordFormatError, check_record,
                              default_key_path, header_fields, key_fingerprint, line_hash, load_public_key, make_line,
                              parse_line, public_key_path, read_log, read_stored_envelope, record_fields,
                              torn_fields)

from .errors import StoreError

if TYPE_CHECKING:
    from .store import EnvelopeRecord, Store

__all__ = ["RecordLog", "StoreRecords", "check_key_outside", "default_key_path", "flag_untrusted",
           "load_or_create_key", "public_key_of"]

log = logging.getLogger(__name__)

_KEY_MODE = 0o600
#: A stored envelope is read whole to hash it; the verifier accepts no larger (64 MiB).
_MAX_ENVELOPE_BYTES = 64 * 1024 * 1024


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The collector's signing key at `path`, made on first use (mode 0600, its public half
    beside it as *.pub.pem); raises StoreError if it is readable by others or not Ed25519."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _KEY_MODE)
    except FileExistsError:
        return _read_key(path)
    except OSError as exc:
        raise StoreError(f"cannot create the collector key {path}: {exc.strerror or exc}") from exc
    key = Ed25519PrivateKey.generate()
    try:
        os.write(fd, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        os.fsync(fd)
    finally:
        os.close(fd)
    public = public_key_path(path)
    public.write_bytes(_public_pem(key.public_key()))
    log.info("created the collector key %s (SHA-256 %s)", path, key_fingerprint(key.public_key()))
    return key


def _read_key(path: Path) -> Ed25519PrivateKey:
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise StoreError(f"the collector key {path} is readable or writable by others: expected mode 0600, "
                         f"found {stat.S_IMODE(info.st_mode):04o}; run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"the collector key {path}: expected an Ed25519 private key in PEM, found {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreError(f"the collector key {path}: expected an Ed25519 key, found {type(key).__name__}")
    return key


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_of(path: Path) -> tuple[bytes, str]:
    """The public PEM and SHA-256 fingerprint of the key at `path` (private or public PEM)."""
    try:
        key = load_public_key(path)
    except VerifierError as exc:
        raise StoreError(str(exc)) from exc
    return _public_pem(key), key_fingerprint(key)


def check_key_outside(key_path: Path, store_root: Path) -> None:
    """Refuse a key inside the store: whoever writes the store could then swap it."""
    key, root = Path(key_path).resolve(), Path(store_root).resolve()
    if key == root or root in key.parents:
        raise StoreError(f"the collector key {key_path} is inside the store {store_root}: expected it outside "
                         "(beside the trust store by default), where whoever writes the store cannot swap it")


class RecordLog:
    """Appends signed records to `<store>/records.jsonl` (thread-safe; `flock` across processes)."""

    def __init__(self, store_root: Path, key: Ed25519PrivateKey) -> None:
        self.path = Path(store_root) / LOG_NAME
        self._key = key
        self._fingerprint = key_fingerprint(key.public_key())
        self._lock = threading.Lock()
        self._known: tuple[int, int] | None = None  # (inode, size) of the log as last appended
        self._seq = -1
        self._prev = ""

    def check_key(self) -> None:
        """Raise StoreError if the log was started by another key (before any device is polled)."""
        try:
            with open(self.path, "rb") as handle:
                first = handle.readline(MAX_LINE_BYTES + 1)
        except FileNotFoundError:
            return
        if not first.endswith(b"\n"):
            return  # a torn header: repaired at the first append
        try:
            named = parse_line(first[:-1])["key"]
        except RecordFormatError as exc:
            raise StoreError(f"record log {self.path}: line 1 is not its header ({exc})") from exc
        if named != self._fingerprint:
            raise StoreError(
                f"record log {self.path} was started with collector key {named}, but this collector holds "
                f"{self._fingerprint}: expected the same key (give --collector-key with the key that started "
                "this store's log, or collect into a new store)")

    def append(self, records: Iterable[EnvelopeRecord]) -> None:
        """Sign and append one record per stored envelope, in one write and one fdatasync."""
        fields = [record_fields(path=r.path, sha256_hex=r.sha256, size=r.bytes, device=r.device,
                                nonce=r.nonce or "", started=r.started, received=r.received,
                                trusted=r.trusted, reasons=list(r.reasons)) for r in records]
        if not fields:
            return
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot open the record log {self.path}: {exc.strerror or exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # another collector process may append too
                info = os.fstat(fd)
                out: list[bytes] = []
                if self._known != (info.st_ino, info.st_size):
                    out = self._catch_up(fd, info.st_size)  # another writer, or first append
                seq, prev = self._seq, self._prev
                for one in fields:
                    seq += 1
                    line = make_line({**one, "seq": seq, "prev": prev, "key": self._fingerprint}, self._key)
                    out.append(line + b"\n")
                    prev = line_hash(line)
                data = b"".join(out)
                try:
                    written = os.write(fd, data)
                    if written != len(data):
                        raise OSError(0, f"short write ({written} of {len(data)} bytes)")
                    os.fdatasync(fd)
                except OSError as exc:
                    self._known = None  # a torn line may be there now: read the tail again next time
                    raise StoreError(f"cannot append to the record log {self.path}: {exc.strerror or exc}") from exc
                self._seq, self._prev = seq, prev
                self._known = (info.st_ino, os.fstat(fd).st_size)
            finally:
                os.close(fd)  # drops the flock too

    def _catch_up(self, fd: int, size: int) -> list[bytes]:
        """Read the log's last line (seq and hash); a torn tail is cut off and the line that
        records it returned first; an empty log gets its header. Call with the flock held."""
        if size == 0:
            return [self._start()]
        tail = os.pread(fd, min(size, 2 * MAX_LINE_BYTES + 2), max(0, size - 2 * MAX_LINE_BYTES - 2))
        cut = b""
        if not tail.endswith(b"\n"):
            end = tail.rfind(b"\n") + 1
            cut, keep = tail[end:], size - (len(tail) - end)
            os.ftruncate(fd, keep)
            log.warning("record log %s: cut off a torn append of %d bytes (recorded in the log)", self.path, len(cut))
            if keep == 0:
                return [self._start(), self._torn(cut)]
            tail = tail[:end]
        last = tail[:-1].rsplit(b"\n", 1)[-1]
        try:
            self._seq = parse_line(last)["seq"]
        except RecordFormatError as exc:
            raise StoreError(f"record log {self.path}: its last line is not a record line ({exc}); "
                             "expected a log written by the collector") from exc
        self._prev = line_hash(last)
        return [self._torn(cut)] if cut else []

    def _start(self) -> bytes:
        created = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        line = make_line(header_fields(self._key.public_key(), created), self._key)
        self._seq, self._prev = 0, line_hash(line)
        return line + b"\n"

    def _torn(self, cut: bytes) -> bytes:
        self._seq += 1
        line = make_line({**torn_fields(cut), "seq": self._seq, "prev": self._prev, "key": self._fingerprint},
                         self._key)
        self._prev = line_hash(line)
        return line + b"\n"


@dataclass
class StoreRecords:
    """The record log of a store, read once, checking stored envelopes (status, reindex)."""

    store: Store
    log: LogCheck
    checked: dict[str, list[Finding]] = field(default_factory=dict)

    @classmethod
    def read(cls, store: Store, public_key_path: Path | None) -> StoreRecords:
        """Read `store`'s log, checked against the public key at `public_key_path` (None: the
        key the log names, with a warning); raises StoreError if the key cannot be read."""
        key = None
        if public_key_path is not None:
            try:
                key = load_public_key(public_key_path)
            except VerifierError as exc:
                raise StoreError(str(exc)) from exc
        return cls(store, read_log(store.root / LOG_NAME, key))

    def errors(self, record: EnvelopeRecord) -> list[Finding]:
        """The error findings about one stored envelope (its file read and hashed once)."""
        findings = self.findings(record)
        return [finding for finding in findings if finding.severity is Severity.ERROR]

    def findings(self, record: EnvelopeRecord) -> list[Finding]:
        if record.path not in self.checked:
            path = self.store.root / record.path
            try:
                raw, meta, verdict = read_stored_envelope(path, _MAX_ENVELOPE_BYTES)
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
            self.checked[record.path] = check_record(self.log, record.path, raw, meta, verdict)
        return self.checked[record.path]

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the log's problems and the envelopes checked that have error findings."""
        return {"log": str(self.log.path), "key": self.log.key, "lines": self.log.lines, "head": self.log.head,
                "problems": [finding.to_json() for finding in self.log.problems],
                "envelopes": {path: [f.to_json() for f in findings if f not in self.log.problems]
                              for path, findings in sorted(self.checked.items())
                              if any(f not in self.log.problems for f in findings)}}


def flag_untrusted(records: Sequence[EnvelopeRecord], checks: StoreRecords) -> list[EnvelopeRecord]:
    """The records whose envelope has record errors, marked untrusted with those finding ids
    added to their reasons (for the index: `dossier store reindex`)."""
    flagged = []
    for record in records:
        errors = checks.errors(record)
        if errors:
            record.trusted = False
            record.reasons = list(dict.fromkeys([*record.reasons, *(str(f.id) for f in errors)]))
            flagged.append(record)
    return flagged
