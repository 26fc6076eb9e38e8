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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from verifier.errors import VerifierError
from verifier.findings import Finding, FindingId, Severity
from verifier.policy import MAX_ENVELOPE_BYTES
from verifier.records import (BASELINE_PER_LINE, LOG_NAME, MAX_LINE_BYTES, LogCheck, RecordFormatError,
                              baseline_fields, check_record, default_key_path, header_fields, key_fingerprint,
                              line_hash, line_signed_by, load_public_key, load_public_keys, make_line,
                              parse_line, public_key_path, read_log, read_logs, read_stored_envelope, record_fields,
                              store_log, torn_fields)
from verifier.stored import StoredFileError, read_stored_bytes

from .errors import StoreError

if TYPE_CHECKING:
    from .store import EnvelopeRecord, Store

__all__ = ["RecordLog", "StoreRecords", "check_key_outside", "default_key_path", "flag_untrusted",
           "load_or_create_key", "public_key_of"]

log = logging.getLogger(__name__)

_KEY_MODE = 0o600
#: How far back from its end the collector looks for the last line it signed, cutting off what
#: follows (a torn append, lines it cannot verify). Further than this is damage for a person to
#: look at, not something to cut off unseen.
MAX_REPAIR_BYTES = 1024 * 1024


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The collector's signing key at `path`, made on first use (mode 0600, its public half
    beside it as *.pub.pem); raises StoreError if it is readable by others or not Ed25519."""
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    if not create_private_key_file(path, key, "collector key"):
        return _read_key(path)
    public = public_key_path(path)
    public.write_bytes(_public_pem(key.public_key()))
    log.info("created the collector key %s (SHA-256 %s)", path, key_fingerprint(key.public_key()))
    return key


def create_private_key_file(path: Path, key: Any, what: str) -> bool:
    """Write `key` (PKCS#8 PEM) to a new file `path`, mode 0600; False when a file is already
    there (it is never replaced). Raises StoreError naming `what` when it cannot be created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _KEY_MODE)
    except FileExistsError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot create the {what} {path}: {exc.strerror or exc}") from exc
    try:
        os.write(fd, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def read_private_key(path: Path, what: str, kind: str) -> Any:
    """The private key in the PEM file `path` (mode 0600 only); raises StoreError naming `what`
    and the `kind` of key expected when it is readable by others or not a private key."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise StoreError(f"the {what} {path} is readable or writable by others: expected mode 0600, "
                         f"found {mode:04o}; run `chmod 600 {path}`")
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"the {what} {path}: expected {kind} private key in PEM, found {exc}") from exc


def _read_key(path: Path) -> Ed25519PrivateKey:
    key = read_private_key(path, "collector key", "an Ed25519")
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

    def __init__(self, store_root: Path, key: Ed25519PrivateKey, *, log_path: Path | None = None,
                 baseline: bool = True) -> None:
        """`log_path` (default `<store>/records.jsonl`): one writer's own log in a shared store
        (`records.d/<writer>.jsonl`), started without a baseline (`baseline=False`): the other
        writers' logs vouch for what they stored."""
        self.path = Path(log_path) if log_path is not None else Path(store_root) / LOG_NAME
        self._with_baseline = baseline
        self._key = key
        self._fingerprint = key_fingerprint(key.public_key())
        self._lock = threading.Lock()
        self._known: tuple[int, int] | None = None  # (inode, size) of the log as last appended
        self._seq = -1
        self._prev = ""

    def check_key(self) -> None:
        """Raise StoreError if the log was started by another key (before any device is polled)."""
        try:
            head = read_stored_bytes(self.path, MAX_LINE_BYTES + 1, "record log")
        except StoredFileError as exc:
            if exc.problem == "missing":
                return
            raise StoreError(f"record log {self.path}: expected {exc.expected}, found {exc.found}") from None
        first = head[: head.find(b"\n") + 1] if b"\n" in head else head
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
        self._write(fields)

    def start(self, store: Store) -> None:
        """Before a run stores anything: make sure the log exists. A new log gets its header
        and, when the store already holds envelopes, signed baseline lines listing each of them
        (path, SHA-256): an envelope in neither a record nor the baseline is then always
        `record.missing`, whatever time its metadata claims. An existing log is caught up
        (its tail checked and repaired)."""
        self._write([], store=store)

    def flag_unrecorded(self, store: Store) -> int:
        """After the index was rebuilt from the files (a run that did not finish, e.g. a second
        Ctrl-C between storing an output and recording it): mark untrusted in the index every
        envelope whose signed record fails, as `dossier store reindex` does, so that the index
        never calls trusted what the log does not vouch for. Returns how many were marked."""
        checks = StoreRecords(store, read_log(store.root / LOG_NAME, self._key.public_key()))
        every = [record for device in store.latest() for record in store.history(device)]
        flagged = flag_untrusted(every, checks)
        for record in flagged:
            store.index(record)
        return len(flagged)

    def _write(self, fields: list[dict[str, Any]], store: Store | None = None) -> None:
        """Under the lock and flock: catch up with the log, then write `fields` as signed lines."""
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot open the record log {self.path}: {exc.strerror or exc}") from exc
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise StoreError(f"record log {self.path}: expected a regular file, found mode "
                                     f"{stat.S_IFMT(info.st_mode):o} (a named pipe or device put in its place)")
                fcntl.flock(fd, fcntl.LOCK_EX)  # another collector process may append too
                info = os.fstat(fd)
                out: list[bytes] = []
                if self._known != (info.st_ino, info.st_size):
                    out = self._catch_up(fd, info.st_size)  # another writer, or first append
                if info.st_size == 0 and store is not None and self._with_baseline:
                    fields = [*self._baseline(store), *fields]
                if not out and not fields:
                    self._known = (info.st_ino, info.st_size)
                    return
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
        """Find the log's last line signed by this key (its seq and hash: what the next line
        chains onto). What follows it (a torn append, a line that does not parse or whose
        signature does not verify) is cut off and the line that records it returned first; an
        empty log gets its header. Call with the flock held."""
        if size == 0:
            return [self._start()]
        window = min(size, MAX_REPAIR_BYTES)
        start = size - window
        tail = os.pread(fd, window, start)
        public_key = self._key.public_key()
        keep, last, fields = None, b"", None
        end = tail.rfind(b"\n")  # the newline of the last complete line
        while end >= 0:
            begin = tail.rfind(b"\n", 0, end) + 1
            if begin == 0 and start > 0:
                break  # this line starts before the window: not checked, so not chained onto
            last = tail[begin:end]
            fields = line_signed_by(last, public_key)
            if fields is not None:
                keep = start + end + 1
                break
            end = begin - 1
        if keep is None:
            if start > 0:
                raise StoreError(
                    f"record log {self.path}: no line signed by this collector's key in its last {window} bytes: "
                    "expected its lines to end with one; move the log aside and look at it (the next run starts "
                    "a new log)")
            keep = 0
        cut = tail[keep - start:]
        if cut:
            os.ftruncate(fd, keep)
            log.warning("record log %s: cut off %d bytes after its last signed line (a torn append or lines "
                        "that do not verify; recorded in the log)", self.path, len(cut))
        if keep == 0:
            return [self._start(), *([self._torn(cut)] if cut else [])]
        assert fields is not None
        self._seq, self._prev = fields["seq"], line_hash(last)
        return [self._torn(cut)] if cut else []

    def _baseline(self, store: Store) -> list[dict[str, Any]]:
        """Baseline lines' fields: every envelope `store` holds (path, SHA-256), for a new log."""
        listed: list[tuple[str, str]] = []
        for path in store.envelope_files():
            try:
                data = read_stored_bytes(path, MAX_ENVELOPE_BYTES, "envelope")
            except StoredFileError as exc:
                log.warning("record log %s: %s left out of the baseline: expected %s, found %s", self.path, path,
                            exc.expected, exc.found)
                continue
            listed.append((str(path.relative_to(store.root)), sha256(data).hexdigest()))
        if listed:
            log.info("record log %s: new, for a store holding %d envelopes: listed in its baseline", self.path,
                     len(listed))
        return [baseline_fields(listed[at:at + BASELINE_PER_LINE]) for at in range(0, len(listed), BASELINE_PER_LINE)]

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
    def read(cls, store: Store, public_key_path: Path | None, *, how_to_give_key: str | None = None) -> StoreRecords:
        """Read `store`'s log, checked against the public key at `public_key_path` (a folder of
        keys for a store of several writers, `records.d`). None: the
        key the log names, with a warning, or with `how_to_give_key` (what to do), an error:
        whoever rewrites the whole log under their own key passes that. Raises StoreError if
        the key cannot be read."""
        keys = None
        if public_key_path is not None:
            try:
                keys = load_public_keys(public_key_path)
            except VerifierError as exc:
                raise StoreError(str(exc)) from exc
        log_path = store_log(store.root)  # the store's log, or its writers' folder of logs
        checked = (read_logs(log_path, keys) if log_path.is_dir()
                   else read_log(log_path, keys[0] if keys else None))
        if how_to_give_key is not None:
            checked.problems = [
                replace(finding, severity=Severity.ERROR,
                        message=f"no collector key was found to check the record log {checked.path} with "
                        f"({how_to_give_key}); its own header's key proves nothing: whoever can rewrite the whole "
                        "log passes that") if finding.id == FindingId.RECORD_KEY_NOT_PINNED else finding
                for finding in checked.problems]
        return cls(store, checked)

    def errors(self, record: EnvelopeRecord) -> list[Finding]:
        """The error findings about one stored envelope (its file read and hashed once)."""
        return self.errors_at(record.path)

    def errors_at(self, path: str) -> list[Finding]:
        """The error findings about the stored envelope at `path` ('<device>/<file>')."""
        return [finding for finding in self.findings_at(path) if finding.severity is Severity.ERROR]

    def findings(self, record: EnvelopeRecord) -> list[Finding]:
        return self.findings_at(record.path)

    def findings_at(self, relative: str) -> list[Finding]:
        if relative not in self.checked:
            path = self.store.root / relative
            try:
                raw, meta, verdict = read_stored_envelope(path, MAX_ENVELOPE_BYTES)
            except StoredFileError as exc:  # gone, or no regular file (a named pipe is never waited on)
                self.checked[relative] = [*self.log.problems, Finding(
                    FindingId.RECORD_MISMATCH, Severity.ERROR,
                    f"{relative}: cannot be checked against its signed record: expected {exc.expected}, "
                    f"found {exc.found}", expected=exc.expected, found=exc.found)]
            else:
                self.checked[relative] = check_record(self.log, relative, raw, meta, verdict)
        return self.checked[relative]

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
