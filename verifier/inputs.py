"""Read envelopes as saved on disk: raw device output, or the collector's stored envelope with
its `<file>.meta.json` (device, expected nonce, time received)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EnvelopeError
from .findings import Finding, FindingId, Severity
from .stored import (ENVELOPE_SUFFIX, StoredFileError, legacy_signer, parse_stored_name, read_sidecar,
                     read_stored_bytes)
from .stored import META_SUFFIX as _STORED_META_SUFFIX

__all__ = ["META_SUFFIX", "EnvelopeInput", "parse_time", "read_envelope_file"]

#: What follows a file's own name in its metadata file's (<name>.envelope -> <name>.envelope.meta.json).
META_SUFFIX = _STORED_META_SUFFIX[len(ENVELOPE_SUFFIX):]
MAX_META_BYTES = 1024 * 1024  # a metadata file is a few hundred bytes


@dataclass(frozen=True)
class EnvelopeInput:
    """An envelope's bytes and what its metadata (if any) says about it."""

    path: str
    raw: bytes
    device: str | None = None
    nonce: bytes | None = None
    received: dt.datetime | None = None
    meta: dict[str, Any] | None = None
    #: The verifier profile the metadata names (`verifier_profile`; None: the XR envelope).
    profile: str | None = None
    #: The output of the same poll that signs this one (the metadata's `signer`, read from the
    #: same folder and checked against its own metadata), e.g. an IOS XE integrity output's SUDI.
    signer: bytes | None = None
    #: A TPM event log's quote (the metadata's `quote`, read and checked as `signer` is).
    quote: bytes | None = None
    #: What the file (or its signer), its name or its folder contradicts in the metadata, as
    #: `stored.mismatch` error findings: it was changed, truncated, renamed or moved since it
    #: was stored. Evidence that does not match its record is a verdict, not an input error.
    mismatches: tuple[Finding, ...] = ()


def _mismatch(message: str, expected: str, found: str) -> Finding:
    return Finding(FindingId.STORED_MISMATCH, Severity.ERROR, message, expected, found)


def parse_time(text: str, where: str) -> dt.datetime:
    """An ISO-8601 time with a zone ('Z' or an offset); raises EnvelopeError otherwise."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except (ValueError, AttributeError):
        raise EnvelopeError(f"{where}: expected an ISO-8601 time like 2026-06-01T12:00:00Z, found {text!r}") from None
    if value.tzinfo is None:
        raise EnvelopeError(f"{where}: the time {text!r} has no zone; add 'Z' or an offset such as +00:00")
    return value


def _as_pathlib_writes(path: str) -> str:
    """`str(Path(path))`: `path` without empty or "." parts ("dir//x", "./x", "x/" and "x/." are
    "x" and "dir/x"); a path that has none is returned as it is, without making a Path."""
    parts = path.split("/")
    if path and "" not in parts[1:] and ("." not in parts or path == "."):
        return path
    return str(Path(path))


def _read_meta(meta_path: str | Path) -> dict[str, Any] | None:
    """The metadata in `meta_path`, None when there is no such file; raises EnvelopeError when
    it is there but cannot be read as metadata (an I/O error, EACCES, a name too long included:
    metadata that may be there is never passed over)."""
    try:
        meta = read_sidecar(meta_path, max_bytes=MAX_META_BYTES)
    except StoredFileError as exc:
        if exc.problem == "too_large":
            raise EnvelopeError(f"{meta_path}: over {MAX_META_BYTES} bytes; not a metadata file") from None
        if exc.problem == "not_object":
            raise EnvelopeError(f"{meta_path}: expected a JSON object, found {exc.found}") from None
        raise EnvelopeError(f"{meta_path}: cannot be read as JSON metadata ({exc.found})") from None
    if meta is None:
        return None
    for name in ("device", "nonce", "received"):
        if not isinstance(meta.get(name), str):
            raise EnvelopeError(f"{meta_path}: expected a string member {name!r}, found {meta.get(name)!r}")
    return meta


def _content_mismatches(meta_path: Path, meta: dict[str, Any], raw: bytes) -> list[Finding]:
    """The recorded size and SHA-256 that the file's bytes `raw` contradict."""
    found: list[Finding] = []
    if "bytes" in meta and meta["bytes"] != len(raw):
        found.append(_mismatch(
            f"{meta_path}: records {meta['bytes']} bytes but the file has {len(raw)}; it was changed or "
            "truncated after it was stored", f"{meta['bytes']} bytes (the metadata's bytes)", f"{len(raw)} bytes"))
    digest = hashlib.sha256(raw).hexdigest()
    if "sha256" in meta and meta["sha256"] != digest:
        found.append(_mismatch(
            f"{meta_path}: records SHA-256 {meta['sha256']} but the file hashes to {digest}; it was changed "
            "after it was stored", f"SHA-256 {meta['sha256']} (the metadata's sha256)", f"SHA-256 {digest}"))
    return found


def read_envelope_file(path: str | Path, *, max_bytes: int, stdin: Any = None,
                       device: str | None = None) -> EnvelopeInput:
    """Read `path` ('-' for `stdin`) and its `.meta.json` sidecar if there is one.

    `device`: the device the caller names (`--device`); the folder name is then not compared
    with the metadata's device (copies in a case folder), the metadata's device is (by the
    caller). What the file, its name or its folder contradicts in the metadata is returned as
    `mismatches`. Raises EnvelopeError if the file is missing or too large, or its metadata is
    unreadable.
    """
    if str(path) == "-":
        raw = stdin.read(max_bytes + 1) if stdin is not None else b""
        return EnvelopeInput("-", raw)
    where = _as_pathlib_writes(str(path))  # as before: "dir//x", "./x" and "x/" name x
    try:
        raw = read_stored_bytes(where, max_bytes, "envelope")  # a named pipe is refused, never waited on
    except StoredFileError as exc:
        raise EnvelopeError(f"{where}: cannot read (expected {exc.expected}, found {exc.found})") from None
    meta = _read_meta(where + META_SUFFIX)
    if meta is None:
        return EnvelopeInput(where, raw)
    # Absolute: the device folder and the record's name are read from it ("./x" run inside the
    # device's folder has the same folder as its absolute path).
    file = Path(where).absolute()
    meta_path = file.with_name(file.name + META_SUFFIX)
    try:
        nonce = bytes.fromhex(meta["nonce"])
    except ValueError:
        raise EnvelopeError(f"{meta_path}: nonce must be hex, found {meta['nonce']!r}") from None
    received = parse_time(meta["received"], f"{meta_path}: received")
    mismatches = _content_mismatches(meta_path, meta, raw)
    mismatches += _name_mismatches(file, meta, nonce, received, folder_is_device=device is None)
    profile = meta.get("verifier_profile")
    if profile is not None and not isinstance(profile, str):
        raise EnvelopeError(f"{meta_path}: expected verifier_profile to be a string, found {profile!r}")
    signer_name = meta.get("signer")
    if signer_name is None:
        signer_name = legacy_signer(file, meta)  # stored before `signer`: its poll's SUDI output
    signer = None
    if signer_name is not None:
        signer, signer_mismatches = _read_signer(file, signer_name, meta, max_bytes)
        mismatches += signer_mismatches
    quote = None
    if meta.get("quote") is not None:
        quote, quote_mismatches = _read_signer(file, meta["quote"], meta, max_bytes, member="quote")
        mismatches += quote_mismatches
    return EnvelopeInput(str(file), raw, meta["device"], nonce, received, meta, profile, signer, quote,
                         tuple(mismatches))


def _read_signer(file: Path, name: Any, meta: dict[str, Any], max_bytes: int,
                 member: str = "signer") -> tuple[bytes, list[Finding]]:
    """The bytes of the output `name` that signs `file` (the metadata's `signer`, or the
    `member` naming another output of the poll: same folder, same device, same poll), and what
    they contradict in that output's own metadata. Raises EnvelopeError when it cannot be
    read, or belongs to another device or poll."""
    where = f"{file}{META_SUFFIX}: {member}"
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise EnvelopeError(f"{where}: expected the file name of an output beside it, found {name!r}")
    signer_file = file.with_name(name)
    try:
        raw = read_stored_bytes(signer_file, max_bytes, "signer output")
    except StoredFileError as exc:
        raise EnvelopeError(
            f"{where}: the output {'that signs this one' if member == 'signer' else 'of the same poll it names'}, "
            f"{signer_file}, cannot be read (expected {exc.expected}, "
            f"found {exc.found}); "
            "it was stored by the same poll and must be kept beside it (copy both, or pass --signer)"
        ) from None
    signer_meta_path = signer_file.with_name(signer_file.name + META_SUFFIX)
    mismatches: list[Finding] = []
    signer_meta = _read_meta(signer_meta_path)
    if signer_meta is not None:
        mismatches = _content_mismatches(signer_meta_path, signer_meta, raw)
        for member in ("device", "poll_id"):
            if signer_meta.get(member) != meta.get(member):
                raise EnvelopeError(
                    f"{where}: {signer_file} belongs to {member} {signer_meta.get(member)!r}, expected "
                    f"{meta.get(member)!r} (the same poll's output); the metadata or the files were changed"
                )
    return raw, mismatches


def _name_mismatches(file: Path, meta: dict[str, Any], nonce: bytes, received: dt.datetime, *,
                     folder_is_device: bool) -> list[Finding]:
    """What the collector's file name (the nonce's first hex digits, the time received) and
    device folder contradict in the metadata: metadata edited to fit a replayed envelope would
    contradict them. `folder_is_device` False: the caller named the device (a copy in a case
    folder), so the folder's name says nothing."""
    named = parse_stored_name(file.name)
    if named is None:
        return []  # not named by the collector: the metadata is all there is
    found: list[Finding] = []
    if not nonce.hex().startswith(named.nonce_prefix.lower()):
        found.append(_mismatch(
            f"{file}: the file name says nonce {named.nonce_prefix}... was sent, but the metadata says "
            f"{nonce.hex()}; the metadata or the file was changed",
            f"nonce {named.nonce_prefix}... (the file name)", f"nonce {nonce.hex()} (the metadata)"))
    if received != named.received:
        found.append(_mismatch(
            f"{file}: the file name says it was received at {named.received.isoformat()}, but the metadata "
            f"says {received.isoformat()}; the metadata or the file was changed",
            f"received {named.received.isoformat()} (the file name)", f"received {received.isoformat()} (the metadata)"))
    if folder_is_device and file.parent.name != meta["device"]:
        found.append(_mismatch(
            f"{file}: stored under device folder {file.parent.name!r}, but the metadata says device "
            f"{meta['device']!r}; the metadata or the file was moved or changed (a copy outside the store: "
            "name the device with --device)",
            f"device {file.parent.name} (the folder)", f"device {meta['device']} (the metadata)"))
    return found
