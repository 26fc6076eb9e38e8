"""The collector's record log: its format and its check (docs/design/record-log.md).

The collector signs one record per stored envelope into `<store>/records.jsonl`, an
append-only, hash-chained log (it appends through `collector.records`, which calls the format
functions here: this module is the one owner of the format). An auditor checks it with only the
collector's public key:

  (1) every line is canonical JSON (`canonical`) of a known kind, at most MAX_LINE_BYTES;
  (2) the first line is the header (seq 0) naming the key; every line names the same key
      (`record.other_key`) and its Ed25519 signature over SIGNING_CONTEXT + the canonical line
      without "sig" verifies with it (`record.bad_signature`);
  (3) sequence numbers run 0, 1, 2, ... in file order (`record.line_deleted`, `_reordered`,
      `_inserted`) and each line's "prev" is the SHA-256 of the line before it
      (`record.chain_broken`); a last line without its newline is a torn append
      (`record.log_torn`), which the collector later cuts off and records as a signed "torn" line;
  (4) a stored envelope has a record whose sha256, size, device, nonce, times and verdict match
      the file and its metadata (`record.missing`, `record.mismatch`; a missing verdict is
      compared as "unknown", never skipped), and no other record of its device has its nonce
      (`record.nonce_reused`). An envelope the store held when the log began is in its signed
      "baseline" lines instead (`record.before_log`, a warning, when its SHA-256 matches); any
      other envelope without a record is `record.missing`, whatever time its metadata claims.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._strictjson import JSONProblem, loads_strict
from .errors import VerifierError
from .findings import Finding, FindingId, Severity
from .inputs import parse_time
from .stored import META_SUFFIX, VERDICT_SUFFIX, StoredFileError, read_sidecar, read_stored_bytes, sidecar_path

__all__ = [
    "KEY_FILE_NAME", "LOG_FORMAT", "LOG_NAME", "LogCheck", "baseline_fields", "check_record", "default_key_path",
    "header_fields", "key_fingerprint", "line_signed_by", "load_public_key", "locate_log", "make_line", "parse_line",
    "public_key_path", "read_log", "read_logs", "load_public_keys", "store_log", "WRITERS_FOLDER", "read_stored_envelope", "record_fields", "line_hash", "torn_fields",
]

LOG_NAME = "records.jsonl"
#: A store written by several collectors (distributed workers) keeps one log per writer here,
#: `records.d/<writer>.jsonl`, each in the format of LOG_NAME, signed and chained by its writer.
WRITERS_FOLDER = "records.d"
LOG_FORMAT = "trust-dossier/record-log/1"
#: Prefixed to what is signed, so that no other signature of this key can pass for a record.
SIGNING_CONTEXT = b"trust-dossier/record-log/1 signature\n"
#: "prev" of the header: there is no line before it.
GENESIS_PREV = "0" * 64
#: A record is ~700 bytes; its reasons are finding ids. Longer is not a line of ours (DoS bound).
MAX_LINE_BYTES = 64 * 1024
#: A log read by `dossier verify` is read whole; a billion bytes is ~1.5 million records.
MAX_LOG_BYTES = 1024 * 1024 * 1024
#: Envelopes listed per baseline line: ~150 bytes each (a 63-character device name, the file
#: name, the SHA-256), so a line stays well under MAX_LINE_BYTES.
BASELINE_PER_LINE = 200
#: Of a torn or invalid tail the collector cuts off, the bytes kept in its "torn" line (base64,
#: 4/3 larger): enough to see what it was, and the line stays under MAX_LINE_BYTES. Its size and
#: SHA-256 always cover all of it.
MAX_REMOVED_KEPT = 32 * 1024
#: Findings listed per kind of chain problem; the rest are counted in the last one.
MAX_LISTED = 5
#: The collector's signing key, beside the trust store by default (outside the store: whoever
#: writes the store must not be able to swap the key that vouches for it).
KEY_FILE_NAME = "collector-key.pem"
_PUBLIC_SUFFIX = ".pub.pem"

_KINDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "header": {"format": str, "created": str, "public_key": str},
    "record": {"path": str, "sha256": str, "bytes": int, "device": str, "nonce": str,
               "started": (str, type(None)), "received": str, "trusted": (bool, type(None)), "reasons": list},
    "torn": {"removed_bytes": int, "removed_sha256": str, "removed": str},
    "baseline": {"envelopes": list},
}
_SHA256_HEX = frozenset("0123456789abcdef")
_COMMON: dict[str, type | tuple[type, ...]] = {"kind": str, "seq": int, "prev": str, "key": str, "sig": str}


class RecordFormatError(VerifierError):
    """A line that is not a record-log line (the message says what was expected and found)."""


# --- the format ----------------------------------------------------------------------------

def canonical(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, ASCII only (other characters as \\uXXXX), integers only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the 32 raw bytes of the public key."""
    return sha256(_raw(public_key)).hexdigest()


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def line_hash(line: bytes) -> str:
    """What the next line's "prev" holds: SHA-256 (hex) of this line without its newline."""
    return sha256(line).hexdigest()


def _signed_bytes(fields: Mapping[str, Any]) -> bytes:
    return SIGNING_CONTEXT + canonical({name: value for name, value in fields.items() if name != "sig"})


def make_line(fields: Mapping[str, Any], private_key: Ed25519PrivateKey) -> bytes:
    """The signed line (without its newline) for `fields` (kind, seq, prev, key and the kind's)."""
    signature = private_key.sign(_signed_bytes(fields))
    return canonical({**fields, "sig": base64.b64encode(signature).decode("ascii")})


def header_fields(public_key: Ed25519PublicKey, created: str) -> dict[str, Any]:
    return {"kind": "header", "seq": 0, "prev": GENESIS_PREV, "key": key_fingerprint(public_key),
            "format": LOG_FORMAT, "created": created,
            "public_key": base64.b64encode(_raw(public_key)).decode("ascii")}


def record_fields(*, path: str, sha256_hex: str, size: int, device: str, nonce: str, started: str | None,
                  received: str, trusted: bool | None, reasons: list[str]) -> dict[str, Any]:
    """A record's own fields (the caller adds kind's seq, prev and key)."""
    return {"kind": "record", "path": path, "sha256": sha256_hex, "bytes": size, "device": device,
            "nonce": nonce, "started": started, "received": received, "trusted": trusted,
            "reasons": list(reasons)}


def torn_fields(removed: bytes) -> dict[str, Any]:
    """A torn or invalid tail, cut off by the collector before it appends: recorded here, not
    dropped (its first MAX_REMOVED_KEPT bytes kept; its size and SHA-256 cover all of it)."""
    return {"kind": "torn", "removed_bytes": len(removed), "removed_sha256": sha256(removed).hexdigest(),
            "removed": base64.b64encode(removed[:MAX_REMOVED_KEPT]).decode("ascii")}


def baseline_fields(envelopes: list[tuple[str, str]]) -> dict[str, Any]:
    """A baseline line: envelopes (path, SHA-256 hex) the store held when the log began."""
    return {"kind": "baseline", "envelopes": [{"path": path, "sha256": digest} for path, digest in envelopes]}


def _check_baseline(envelopes: list[Any]) -> None:
    for position, entry in enumerate(envelopes):
        if not (isinstance(entry, dict) and set(entry) == {"path", "sha256"} and isinstance(entry["path"], str)
                and isinstance(entry["sha256"], str) and len(entry["sha256"]) == 64
                and set(entry["sha256"]) <= _SHA256_HEX):
            raise RecordFormatError(f"expected envelopes[{position}] to be {{path, sha256 (64 hex digits)}}, "
                                    f"found {entry!r:.80}")


def parse_line(line: bytes) -> dict[str, Any]:
    """The fields of one line; raises RecordFormatError unless it is canonical and well-typed."""
    if len(line) > MAX_LINE_BYTES:
        raise RecordFormatError(f"expected a line of at most {MAX_LINE_BYTES} bytes, found {len(line)}")
    try:
        fields = loads_strict(line.decode("ascii"), max_depth=4)
    except (UnicodeDecodeError, JSONProblem) as exc:
        raise RecordFormatError(f"expected an ASCII JSON object, found {exc}") from None
    if not isinstance(fields, dict):
        raise RecordFormatError(f"expected a JSON object, found {type(fields).__name__}")
    kind = fields.get("kind")
    if kind not in _KINDS:
        raise RecordFormatError(f"expected kind one of {sorted(_KINDS)}, found {kind!r}")
    wanted = {**_COMMON, **_KINDS[kind]}
    if set(fields) != set(wanted):
        raise RecordFormatError(f"expected members {sorted(wanted)}, found {sorted(fields)}")
    for name, kinds in wanted.items():
        value = fields[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is int):
            raise RecordFormatError(f"expected {name!r} of type {kinds}, found {type(value).__name__}")
    if kind == "baseline":
        _check_baseline(fields["envelopes"])
    if canonical(fields) != line:
        raise RecordFormatError("expected the canonical serialisation (sorted keys, no spaces, ASCII), "
                                "found another spelling of it")
    return fields


def line_signed_by(line: bytes, public_key: Ed25519PublicKey) -> dict[str, Any] | None:
    """The fields of `line` when it is a well-formed line naming `public_key` and signed by it;
    None otherwise (what the collector checks before it chains a new line onto it)."""
    try:
        fields = parse_line(line)
    except RecordFormatError:
        return None
    if fields["key"] != key_fingerprint(public_key) or not _signature_ok(fields, public_key):
        return None
    return fields


def _signature_ok(fields: Mapping[str, Any], public_key: Ed25519PublicKey) -> bool:
    try:
        public_key.verify(base64.b64decode(fields["sig"], validate=True), _signed_bytes(fields))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# --- keys ----------------------------------------------------------------------------------

def default_key_path(trust_store: Path) -> Path:
    """The collector's key beside the trust store (e.g. state/collector-key.pem)."""
    return Path(trust_store).parent / KEY_FILE_NAME


def public_key_path(key_path: Path) -> Path:
    """Where the collector writes the public half of `key_path` (collector-key.pub.pem)."""
    name = key_path.name[: -len(".pem")] if key_path.name.endswith(".pem") else key_path.name
    return key_path.with_name(name + _PUBLIC_SUFFIX)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (a private key's public half if it holds one);
    raises VerifierError naming the file otherwise."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise VerifierError(f"collector key {path}: cannot read ({exc.strerror or exc})") from None
    try:
        if b"PRIVATE KEY" in data:
            key: Any = serialization.load_pem_private_key(data, password=None).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise VerifierError(f"collector key {path}: expected an Ed25519 key in PEM, found {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise VerifierError(f"collector key {path}: expected an Ed25519 key, found {type(key).__name__}")
    return key


# --- the check -----------------------------------------------------------------------------

@dataclass
class LogCheck:
    """What one read of a record log found: problems of the log as a whole (they apply to every
    envelope of the store) and the records whose lines are sound, by envelope path."""

    path: Path
    key: str | None = None  # fingerprint the lines were checked against
    created: dt.datetime | None = None  # the header's time
    problems: list[Finding] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Envelopes the store held when the log began (signed baseline lines): path -> SHA-256.
    baseline: dict[str, str] = field(default_factory=dict)
    nonces: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    lines: int = 0
    head: str | None = None  # SHA-256 of the last line: an auditor may note it to detect truncation

    def add(self, finding_id: str, severity: Severity, message: str, expected: str | None = None,
            found: str | None = None) -> None:
        self.problems.append(Finding(finding_id, severity, message, expected, found))


def locate_log(envelope_path: Path) -> Path:
    """Where the record log of the store holding `envelope_path` is (<store>/<device>/<file>):
    its records.jsonl, or for a store of several writers without one, their folder of logs."""
    return store_log(Path(envelope_path).resolve().parent.parent)


def store_log(store_root: Path) -> Path:
    """The record log of the store at `store_root`: its records.jsonl, or for a store of several
    writers without one, their folder of logs (WRITERS_FOLDER)."""
    single = Path(store_root) / LOG_NAME
    if not single.exists() and (Path(store_root) / WRITERS_FOLDER).is_dir():
        return Path(store_root) / WRITERS_FOLDER
    return single


def load_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """The collector keys at `path`: one PEM file, or a folder of them (each `*.pub.pem`, else
    each `*.pem`: one per writer of a distributed store). Raises VerifierError."""
    path = Path(path)
    if not path.is_dir():
        return [load_public_key(path)]
    files = sorted(path.glob("*" + _PUBLIC_SUFFIX)) or sorted(path.glob("*.pem"))
    if not files:
        raise VerifierError(f"collector keys {path}: expected a folder of Ed25519 PEM keys (*.pub.pem), found none")
    return [load_public_key(file) for file in files]


def _header_fingerprint(path: Path) -> str | None:
    """The key fingerprint line 1 of the log at `path` names (None if it names none)."""
    try:
        head = read_stored_bytes(path, MAX_LINE_BYTES + 1, "record log")
    except StoredFileError:
        return None
    try:
        return parse_line(head.split(b"\n", 1)[0]).get("key")
    except RecordFormatError:
        return None


def read_logs(folder: Path, public_keys: Sequence[Ed25519PublicKey] | None) -> LogCheck:
    """Check every writer's log in `folder` (`records.d`), each with the key of `public_keys`
    its header names (a writer whose key is not among them: `record.other_key`; no keys given:
    each log's own, `record.key_not_pinned`), as one: the problems of every log, and the records
    of all. An envelope recorded by two writers is `record.mismatch`."""
    merged = LogCheck(Path(folder))
    keys = {key_fingerprint(key): key for key in public_keys or ()}
    logs = sorted(Path(folder).glob("*.jsonl"))
    if not logs:
        merged.add(FindingId.RECORD_LOG_MISSING, Severity.ERROR if keys else Severity.WARNING,
                   f"no record log in {folder}: expected one per collector that wrote this store",
                   expected="records.d/<writer>.jsonl", found="none")
        return merged
    fingerprints = []
    for path in logs:
        key = None
        if keys:
            named = _header_fingerprint(path)
            key = keys[named] if named in keys else next(iter(keys.values()))  # else: record.other_key
        one = read_log(path, key)
        merged.problems += one.problems
        merged.lines += one.lines
        if one.key is not None:
            fingerprints.append(one.key)
        for recorded, fields in one.records.items():
            if recorded in merged.records:
                merged.add(FindingId.RECORD_MISMATCH, Severity.ERROR,
                           f"{recorded}: recorded by two writers ({path.name} and another log of {folder}): a "
                           "collector stores an envelope once", expected="one record", found="two")
                continue
            merged.records[recorded] = fields
        for listed, digest in one.baseline.items():
            merged.baseline.setdefault(listed, digest)
        for pair, paths in one.nonces.items():
            merged.nonces.setdefault(pair, []).extend(paths)
    # A pinned writer without a log: its log was deleted, and with it (and its envelopes) what
    # it stored would leave no trace. A worker starts its log before it polls anything.
    for fingerprint in sorted(set(keys) - {_header_fingerprint(path) for path in logs}):
        merged.add(FindingId.RECORD_LOG_MISSING, Severity.ERROR,
                   f"no record log in {folder} for the writer key {fingerprint}: expected one per collector "
                   "key given (a deleted log hides what its writer stored); remove the key of a writer that "
                   "never ran", expected=f"records.d/<writer>.jsonl signed by {fingerprint}", found="none")
    merged.key = ",".join(fingerprints) if fingerprints else None
    return merged


def read_log(path: Path, public_key: Ed25519PublicKey | None) -> LogCheck:
    """Check the log at `path`: steps (1)-(3). Lines are checked against `public_key`, or when
    None, against the key the header names (`record.key_not_pinned`: anyone who can rewrite the
    whole log can then pass). A missing log is a finding, not an exception."""
    log = LogCheck(Path(path))
    try:
        data = read_stored_bytes(Path(path), MAX_LOG_BYTES, "record log")
    except StoredFileError as exc:
        if exc.problem != "missing":
            log.add(FindingId.RECORD_LOG_MISSING, Severity.ERROR,
                    f"record log {path}: expected {exc.expected}, found {exc.found}")
            return log
        # With the collector's key in hand the log must exist; without it, this may be a store
        # written before the record log, so the missing log is reported, not held against it.
        log.add(FindingId.RECORD_LOG_MISSING, Severity.ERROR if public_key is not None else Severity.WARNING,
                f"no record log at {path}: expected the collector's signed records of this store"
                + ("" if public_key is not None else
                   " (no collector key given: a store written before the record log has none; with the "
                   "collector's public key this is an error)"),
                expected=LOG_NAME, found="none")
        return log
    if len(data) > MAX_LOG_BYTES:
        log.add(FindingId.RECORD_LINE_INVALID, Severity.ERROR,
                f"record log {path}: expected at most {MAX_LOG_BYTES} bytes, found more; not checked")
        return log
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the log ends with its newline
    if torn:
        log.add(FindingId.RECORD_LOG_TORN, Severity.WARNING,
                f"record log {path}: its last {len(torn)} bytes are a torn append (no newline): the "
                "record being written when a collector stopped; the collector cuts it off and records "
                "it at its next append", expected="a newline at the end", found=f"{len(torn)} bytes without one")
    parsed: list[tuple[int, bytes, dict[str, Any]] | None] = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append((number, line, parse_line(line)))
        except RecordFormatError as exc:
            parsed.append(None)
            log.add(FindingId.RECORD_LINE_INVALID, Severity.ERROR, f"record log line {number}: {exc}")
    log.lines = len(lines)
    log.head = line_hash(lines[-1]) if lines else None
    first = parsed[0] if parsed else None
    if first is None or first[2]["kind"] != "header" or first[2]["seq"] != 0:
        log.add(FindingId.RECORD_LINE_DELETED, Severity.ERROR,
                f"record log {path}: expected its header (seq 0) as line 1, found "
                f"{'nothing' if not lines else 'another line'}", expected="header", found="none")
        return log
    header = first[2]
    created_text = header["created"]
    try:
        log.created = parse_time(created_text, f"{path}: created")
    except VerifierError as exc:
        log.add(FindingId.RECORD_LINE_INVALID, Severity.ERROR, str(exc))
    # (2) the key: the one given, else the header's own
    try:
        header_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(header["public_key"], validate=True))
    except (ValueError, binascii.Error):
        header_key = None
    if public_key is None:
        if header_key is None:
            log.add(FindingId.RECORD_LINE_INVALID, Severity.ERROR, f"record log {path}: the header's "
                    "public_key is not a 32-byte Ed25519 key in base64")
            return log
        public_key = header_key
        log.add(FindingId.RECORD_KEY_NOT_PINNED, Severity.WARNING,
                f"record log {path} was checked with the key its own header names ({key_fingerprint(header_key)}); "
                "whoever can rewrite the whole log can pass that: give --collector-key with the collector's "
                "public key (`dossier store key`)", expected="a collector key", found="none given")
    log.key = key_fingerprint(public_key)
    signed_by_others, bad = [], []
    sound: list[tuple[int, bytes, dict[str, Any]]] = []
    for entry in parsed:
        if entry is None:
            continue
        number, _, fields = entry
        if fields["key"] != log.key:
            signed_by_others.append((number, fields["key"]))
        elif not _signature_ok(fields, public_key):
            bad.append(number)
        else:
            sound.append(entry)
    if signed_by_others:
        numbers, keys = [n for n, _ in signed_by_others], sorted({k for _, k in signed_by_others})
        log.add(FindingId.RECORD_OTHER_KEY, Severity.ERROR,
                f"record log {path}: {len(numbers)} line(s) ({_listed(numbers)}) name another key than the "
                f"collector's", expected=log.key, found=", ".join(keys))
    if bad:
        log.add(FindingId.RECORD_BAD_SIGNATURE, Severity.ERROR,
                f"record log {path}: the signature of {len(bad)} line(s) ({_listed(bad)}) does not verify "
                "with the collector's key: those lines were edited or forged", expected="valid Ed25519 signatures",
                found=f"{len(bad)} invalid")
    _check_sequence(log, [entry for entry in parsed if entry is not None])
    for number, _, fields in sound:
        if fields["kind"] == "torn":
            log.add(FindingId.RECORD_LOG_REPAIRED, Severity.WARNING,
                    f"record log {path} line {number}: the collector cut off a torn or invalid tail of "
                    f"{fields['removed_bytes']} bytes (SHA-256 {fields['removed_sha256']}): a crash mid-append, or "
                    "lines it could not verify; an envelope recorded there has no record")
        elif fields["kind"] == "baseline":
            for entry in fields["envelopes"]:
                log.baseline.setdefault(entry["path"], entry["sha256"])
        elif fields["kind"] == "record":
            log.records.setdefault(fields["path"], fields)
            log.nonces.setdefault((fields["device"], fields["nonce"].lower()), []).append(fields["path"])
    return log


def _check_sequence(log: LogCheck, entries: list[tuple[int, bytes, dict[str, Any]]]) -> None:
    """(3) seq 0, 1, 2, ... in file order, each "prev" the hash of the line before."""
    seen: dict[int, int] = {}
    inserted, reordered, broken = [], [], []
    highest = -1
    previous: tuple[int, bytes, dict[str, Any]] | None = None
    for entry in entries:
        number, line, fields = entry
        seq = fields["seq"]
        if seq in seen:
            inserted.append(f"line {number} repeats seq {seq} of line {seen[seq]}")
        elif seq < highest:
            reordered.append(f"line {number} has seq {seq} after seq {highest}")
            seen[seq] = number
        else:
            seen[seq] = number
        if previous is not None and seq == previous[2]["seq"] + 1 and fields["prev"] != line_hash(previous[1]):
            broken.append(f"line {number}")
        highest = max(highest, seq)
        previous = entry
    missing = [seq for seq in range(highest + 1) if seq not in seen]
    where = log.path
    if missing:
        log.add(FindingId.RECORD_LINE_DELETED, Severity.ERROR,
                f"record log {where}: {len(missing)} line(s) are missing (seq {_listed(missing)})",
                expected=f"seq 0..{highest}", found=f"{len(missing)} missing")
    if reordered:
        log.add(FindingId.RECORD_LINE_REORDERED, Severity.ERROR,
                f"record log {where}: lines out of order ({_listed(reordered)})",
                expected="increasing seq", found=f"{len(reordered)} out of order")
    if inserted:
        log.add(FindingId.RECORD_LINE_INSERTED, Severity.ERROR,
                f"record log {where}: lines inserted ({_listed(inserted)})",
                expected="each seq once", found=f"{len(inserted)} repeated")
    if broken:
        log.add(FindingId.RECORD_CHAIN_BROKEN, Severity.ERROR,
                f"record log {where}: the hash chain breaks at {_listed(broken)} (its prev is not the SHA-256 "
                "of the line before: a line was replaced)", expected="prev = SHA-256 of the line before",
                found=f"{len(broken)} break(s)")


def _listed(items: list[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def read_stored_envelope(envelope_path: Path, max_bytes: int) -> tuple[bytes, dict[str, Any] | None, dict[str, Any] | None]:
    """A stored envelope's bytes, its metadata and its verdict at collection (None when absent
    or unreadable: the record check then reports what differs)."""
    envelope_path = Path(envelope_path)
    raw = read_stored_bytes(envelope_path, max_bytes, "envelope")
    meta = _sidecar(sidecar_path(envelope_path, META_SUFFIX), "metadata")
    verdict = meta.get("verdict") if meta is not None and isinstance(meta.get("verdict"), dict) else None
    if verdict is None:
        verdict = _sidecar(sidecar_path(envelope_path, VERDICT_SUFFIX), "verdict")
    return raw, meta, verdict


def _sidecar(path: Path, what: str) -> dict[str, Any] | None:
    """`read_sidecar`, with a damaged file taken as absent: the record check reports what differs."""
    try:
        return read_sidecar(path, what)
    except StoredFileError:
        return None


def check_record(log: LogCheck, relative_path: str, raw: bytes, meta: Mapping[str, Any] | None,
                 verdict: Mapping[str, Any] | None) -> list[Finding]:
    """(4) The findings about one stored envelope (`relative_path`: '<device>/<file>'): the
    log's own problems, then its record's."""
    findings = list(log.problems)
    if log.key is None:
        return findings  # the log could not be read: its problem says why
    meta = meta or {}
    record = log.records.get(relative_path)
    device, nonce = meta.get("device"), meta.get("nonce")
    if record is None:
        # Only the signed baseline tells an envelope from before the log: a received time in
        # the (unsigned) metadata earlier than the header says nothing.
        listed = log.baseline.get(relative_path)
        digest = sha256(raw).hexdigest()
        if listed is not None and listed == digest:
            findings.append(Finding(FindingId.RECORD_BEFORE_LOG, Severity.WARNING,
                                    f"{relative_path}: stored before the record log began; its bytes are those the "
                                    "log's baseline lists, but its metadata and verdict were never signed",
                                    expected="a record", found="a baseline entry"))
        elif listed is not None:
            findings.append(Finding(FindingId.RECORD_MISMATCH, Severity.ERROR,
                                    f"{relative_path}: its SHA-256 differs from the record log's baseline (expected "
                                    f"{listed}, found {digest}): the envelope was changed after the log began",
                                    expected=listed, found=digest))
        else:
            findings.append(Finding(FindingId.RECORD_MISSING, Severity.ERROR,
                                    f"{relative_path}: the record log {log.path} has no record of this envelope: "
                                    "it was not stored by the collector (copied or replayed into the store), or its "
                                    "record was deleted", expected="a signed record", found="none"))
    else:
        found = {"sha256": sha256(raw).hexdigest(), "bytes": len(raw), "device": device, "nonce": nonce,
                 "started": meta.get("started"), "received": meta.get("received"),
                 "trusted": verdict.get("trusted") if verdict is not None else None}
        for name, value in found.items():
            # A verdict missing beside the envelope is "unknown" (None) and compared as such:
            # removing it must not hide that the signed record says untrusted.
            if name == "nonce" and isinstance(value, str):
                value = value.lower()
            expected = record[name].lower() if name == "nonce" else record[name]
            if value != expected:
                findings.append(Finding(FindingId.RECORD_MISMATCH, Severity.ERROR,
                                        f"{relative_path}: its {name} differs from the collector's signed record "
                                        f"(expected {expected!r}, found {value!r}): the envelope or its metadata was "
                                        "changed after it was stored", expected=str(expected), found=str(value)))
        device, nonce = record["device"], record["nonce"]
    if isinstance(device, str) and isinstance(nonce, str):
        others = [path for path in log.nonces.get((device, nonce.lower()), []) if path != relative_path]
        if others:
            findings.append(Finding(FindingId.RECORD_NONCE_REUSED, Severity.ERROR,
                                    f"{relative_path}: nonce {nonce} of {device} was also recorded for "
                                    f"{', '.join(others[:MAX_LISTED])}: a nonce is sent once, so one of them is "
                                    "a replay", expected="one record per nonce", found=f"{len(others) + 1} records"))
    return findings

