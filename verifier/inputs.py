"""Read envelopes as saved on disk: raw device output, or the collector's stored envelope with
its `<file>.meta.json` (device, expected nonce, time received)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EnvelopeError

__all__ = ["META_SUFFIX", "EnvelopeInput", "parse_time", "read_envelope_file"]

META_SUFFIX = ".meta.json"  # the collector writes <name>.envelope.meta.json beside <name>.envelope
MAX_META_BYTES = 1024 * 1024  # a metadata file is a few hundred bytes
# How the collector names what it stores: <device>/<received UTC>-<nonce[:8]>.envelope
_COLLECTOR_NAME = re.compile(r"(\d{8}T\d{6}\.\d{6}Z)-([0-9a-fA-F]{2,8})\.envelope")


@dataclass(frozen=True)
class EnvelopeInput:
    """An envelope's bytes and what its metadata (if any) says about it."""

    path: str
    raw: bytes
    device: str | None = None
    nonce: bytes | None = None
    received: dt.datetime | None = None
    meta: dict[str, Any] | None = None


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
        if meta_path.stat().st_size > MAX_META_BYTES:
            raise EnvelopeError(f"{meta_path}: over {MAX_META_BYTES} bytes; not a metadata file")
        meta = json.loads(meta_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"{meta_path}: cannot be read as JSON metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise EnvelopeError(f"{meta_path}: expected a JSON object, found {type(meta).__name__}")
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
        with file.open("rb") as handle:
            raw = handle.read(max_bytes + 1)  # one byte over the limit is enough to report it
    except OSError as exc:
        raise EnvelopeError(f"{file}: cannot read ({exc.strerror or exc})") from None
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
    return EnvelopeInput(str(file), raw, meta["device"], nonce, received, meta)


def _check_collector_name(file: Path, meta: dict[str, Any], nonce: bytes) -> None:
    """The collector also records the nonce (its first 8 hex digits) in the file name and the
    device in the folder name: metadata edited to fit a replayed envelope would contradict them."""
    named = _COLLECTOR_NAME.fullmatch(file.name)
    if named is None:
        return  # not named by the collector: the metadata is all there is
    if not nonce.hex().startswith(named.group(2).lower()):
        raise EnvelopeError(
            f"{file}: the file name says nonce {named.group(2)}... was sent, but the metadata says "
            f"{nonce.hex()}; the metadata or the file was changed"
        )
    stamp = dt.datetime.strptime(named.group(1), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC)
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
