"""Read envelopes as saved on disk: raw device output, or the collector's stored envelope with
its `<file>.meta.json` (device, expected nonce, time received)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EnvelopeError
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


def parse_time(text: str, where: str) -> dt.datetime:
    """An ISO-8601 time with a zone ('Z' or an offset); raises EnvelopeError otherwise."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except (ValueError, AttributeError):
        raise EnvelopeError(f"{where}: expected an ISO-8601 time like 2026-06-01T12:00:00Z, found {text!r}") from None
    if value.tzinfo is None:
        raise EnvelopeError(f"{where}: the time {text!r} has no zone; add 'Z' or an offset such as +00:00")
    return value


def _read_meta(meta_path: Path, raw: bytes) -> dict[str, Any]:
    try:
        meta = read_sidecar(meta_path, max_bytes=MAX_META_BYTES)
    except StoredFileError as exc:
        if exc.problem == "too_large":
            raise EnvelopeError(f"{meta_path}: over {MAX_META_BYTES} bytes; not a metadata file") from None
        if exc.problem == "not_object":
            raise EnvelopeError(f"{meta_path}: expected a JSON object, found {exc.found}") from None
        raise EnvelopeError(f"{meta_path}: cannot be read as JSON metadata ({exc.found})") from None
    if meta is None:
        raise EnvelopeError(f"{meta_path}: cannot be read as JSON metadata (no such file)")
    for name in ("device", "nonce", "received"):
        if not isinstance(meta.get(name), str):
            raise EnvelopeError(f"{meta_path}: expected a string member {name!r}, found {meta.get(name)!r}")
    if "bytes" in meta and meta["bytes"] != len(raw):
        raise EnvelopeError(
            f"{meta_path}: records {meta['bytes']} bytes but the envelope file has {len(raw)}; "
            "the stored envelope was changed or truncated"
        )
    if "sha256" in meta and meta["sha256"] != hashlib.sha256(raw).hexdigest():
        raise EnvelopeError(
            f"{meta_path}: records SHA-256 {meta['sha256']} but the envelope file hashes to "
            f"{hashlib.sha256(raw).hexdigest()}; the stored envelope was changed"
        )
    return meta


def read_envelope_file(path: str | Path, *, max_bytes: int, stdin: Any = None) -> EnvelopeInput:
    """Read `path` ('-' for `stdin`) and its `.meta.json` sidecar if there is one.

    Raises EnvelopeError if the file is missing, too large, or its metadata is unreadable or
    disagrees with the file.
    """
    if str(path) == "-":
        raw = stdin.read(max_bytes + 1) if stdin is not None else b""
        return EnvelopeInput("-", raw)
    file = Path(path)
    try:
        raw = read_stored_bytes(file, max_bytes, "envelope")  # a named pipe is refused, never waited on
    except StoredFileError as exc:
        raise EnvelopeError(f"{file}: cannot read (expected {exc.expected}, found {exc.found})") from None
    meta_path = file.with_name(file.name + META_SUFFIX)
    if not meta_path.exists():
        return EnvelopeInput(str(file), raw)
    meta = _read_meta(meta_path, raw)
    try:
        nonce = bytes.fromhex(meta["nonce"])
    except ValueError:
        raise EnvelopeError(f"{meta_path}: nonce must be hex, found {meta['nonce']!r}") from None
    received = parse_time(meta["received"], f"{meta_path}: received")
    _check_collector_name(file, meta, nonce)
    profile = meta.get("verifier_profile")
    if profile is not None and not isinstance(profile, str):
        raise EnvelopeError(f"{meta_path}: expected verifier_profile to be a string, found {profile!r}")
    signer_name = meta.get("signer")
    if signer_name is None:
        signer_name = legacy_signer(file, meta)  # stored before `signer`: its poll's SUDI output
    signer = _read_signer(file, signer_name, meta, max_bytes) if signer_name is not None else None
    return EnvelopeInput(str(file), raw, meta["device"], nonce, received, meta, profile, signer)


def _read_signer(file: Path, name: Any, meta: dict[str, Any], max_bytes: int) -> bytes:
    """The bytes of the output `name` that signs `file` (the metadata's `signer`: same folder,
    same device, same poll), checked against the signer's own metadata. Raises EnvelopeError
    otherwise."""
    where = f"{file}{META_SUFFIX}: signer"
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise EnvelopeError(f"{where}: expected the file name of an output beside it, found {name!r}")
    signer_file = file.with_name(name)
    try:
        raw = read_stored_bytes(signer_file, max_bytes, "signer output")
    except StoredFileError as exc:
        raise EnvelopeError(
            f"{where}: the output that signs this one, {signer_file}, cannot be read (expected {exc.expected}, "
            f"found {exc.found}); "
            "it was stored by the same poll and must be kept beside it (copy both, or pass --signer)"
        ) from None
    signer_meta_path = signer_file.with_name(signer_file.name + META_SUFFIX)
    if signer_meta_path.exists():
        signer_meta = _read_meta(signer_meta_path, raw)
        for member in ("device", "poll_id"):
            if signer_meta.get(member) != meta.get(member):
                raise EnvelopeError(
                    f"{where}: {signer_file} belongs to {member} {signer_meta.get(member)!r}, expected "
                    f"{meta.get(member)!r} (the same poll's output); the metadata or the files were changed"
                )
    return raw


def _check_collector_name(file: Path, meta: dict[str, Any], nonce: bytes) -> None:
    """The collector also records the nonce (its first 8 hex digits) in the file name and the
    device in the folder name: metadata edited to fit a replayed envelope would contradict them."""
    named = parse_stored_name(file.name)
    if named is None:
        return  # not named by the collector: the metadata is all there is
    if not nonce.hex().startswith(named.nonce_prefix.lower()):
        raise EnvelopeError(
            f"{file}: the file name says nonce {named.nonce_prefix}... was sent, but the metadata says "
            f"{nonce.hex()}; the metadata or the file was changed"
        )
    stamp = named.received
    received = parse_time(meta["received"], f"{file}{META_SUFFIX}: received")
    if received != stamp:
        raise EnvelopeError(
            f"{file}: the file name says it was received at {stamp.isoformat()}, but the metadata says "
            f"{received.isoformat()}; the metadata or the file was changed"
        )
    if file.parent.name != meta["device"]:
        raise EnvelopeError(
            f"{file}: stored under device folder {file.parent.name!r}, but the metadata says device "
            f"{meta['device']!r}; the metadata or the file was moved or changed"
        )
