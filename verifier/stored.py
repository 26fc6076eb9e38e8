"""The stored format: how the collector names what it stores, how its metadata is written and
read, and what kind of output a stored file is. The one owner of these rules: the collector
writes by them (`stored_name`, `new_metadata`, `sidecar_bytes`), `dossier verify` and every
other reader reads by them.

    <device>/<received UTC %Y%m%dT%H%M%S.%fZ>-<nonce[:8]>.envelope    exactly what the device printed
    <...>.envelope.meta.json        metadata (schemas/metadata.schema.json)
    <...>.envelope.verdict.json     a verdict recorded apart from the metadata
    <...>.envelope.appraisal.json   an appraisal (collector.insights)

The metadata's `kind` says what the output is (`KINDS`). Stores written before it have none:
`kind_of` derives it from what their metadata has.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import orjson

from ._strictjson import JSONProblem, loads_strict
from .errors import EnvelopeError

__all__ = [
    "APPRAISAL_SUFFIX", "ENVELOPE_SUFFIX", "KINDS", "MAX_SIDECAR_BYTES", "META_SUFFIX", "METADATA_FORMAT",
    "TPM_KINDS", "TPM_PROFILE", "VERDICT_SUFFIX", "Kind", "StoredFileError", "StoredName", "kind_of",
    "legacy_poll_role", "legacy_signer", "new_metadata", "parse_stored_name", "previous_of_kind", "read_sidecar",
    "read_stored_bytes", "sidecar_bytes", "sidecar_path", "stored_name", "stored_time",
]

METADATA_FORMAT = "trust-dossier/envelope-metadata/1"
ENVELOPE_SUFFIX = ".envelope"
META_SUFFIX = ".envelope.meta.json"
VERDICT_SUFFIX = ".envelope.verdict.json"
APPRAISAL_SUFFIX = ".envelope.appraisal.json"
#: The received time at the start of a stored envelope's name.
NAME_STAMP = "%Y%m%dT%H%M%S.%fZ"
#: Nonce hex digits in a stored envelope's name: enough to tell polls apart at a glance.
NAME_NONCE_DIGITS = 8
_STORED_NAME = re.compile(r"(\d{8}T\d{6}\.\d{6}Z)-([0-9a-fA-F]{2,8})\.envelope")

#: Metadata, verdict and appraisal files are small (the store keeps metadata with its verdict
#: under 256 KiB); anything larger is not ours (DoS bound).
MAX_SIDECAR_BYTES = 4 * 1024 * 1024
#: Nesting of a sidecar: a verdict or an appraisal quotes dossier values, themselves bounded
#: by the dossier's depth limit; deeper is not ours, and must not reach the parser's recursion.
MAX_SIDECAR_DEPTH = 64


@dataclass(frozen=True)
class StoredName:
    """What a stored envelope's file name says: when it was received, the nonce's first digits
    (as spelled in the name)."""

    received: dt.datetime
    nonce_prefix: str


def stored_name(received: dt.datetime, nonce_hex: str) -> str:
    """The file name (without suffix) of an envelope received at `received` for `nonce_hex`."""
    stamp = received.astimezone(dt.UTC).strftime(NAME_STAMP)
    return f"{stamp}-{nonce_hex[:NAME_NONCE_DIGITS].lower()}"


def parse_stored_name(file_name: str) -> StoredName | None:
    """What `file_name` ('<stamp>-<nonce>.envelope') says, or None when the collector did not
    name it."""
    named = _STORED_NAME.fullmatch(file_name)
    if named is None:
        return None
    received = dt.datetime.strptime(named.group(1), NAME_STAMP).replace(tzinfo=dt.UTC)
    return StoredName(received, named.group(2))


def stored_time(moment: dt.datetime) -> str:
    """A time as the metadata holds it: UTC to the microsecond, with a "Z"."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- writing metadata ------------------------------------------------------------------------

def new_metadata(*, device: str, host: str, nonce_hex: str, output: bytes, started: dt.datetime,
                 received: dt.datetime, duration_s: float, writer_version: str,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metadata of an output about to be stored (schemas/metadata.schema.json): who was
    polled, with which nonce, when, the output's size and SHA-256, and what it is (`kind`:
    taken from `extra`, else derived as `kind_of` does). `extra`: the poll's own members (its
    id, the platform, the command, a TPM output's `pcrs`, ...). The verdict is added once
    verified (`verdict`)."""
    meta = {
        "format": METADATA_FORMAT,
        "device": device,
        "host": host,
        "nonce": nonce_hex,
        "started": stored_time(started),
        "received": stored_time(received),
        "bytes": len(output),
        "sha256": hashlib.sha256(output).hexdigest(),
        "duration_s": round(duration_s, 6),
        "collector_version": writer_version,
        **(extra or {}),
    }
    if "kind" not in meta:
        kind = kind_of(meta)
        if kind is not None:
            meta["kind"] = kind.name
    return meta


def sidecar_bytes(value: Any) -> bytes:
    """A sidecar file's bytes (metadata, verdict, appraisal): indented, keys sorted, a final
    newline; what is not JSON (a time) as its text."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str) + b"\n"


def sidecar_path(envelope_path: Path, suffix: str) -> Path:
    """The file beside `envelope_path` with `suffix` (META_SUFFIX, ...): '<base>.envelope' ->
    '<base>.envelope.meta.json'; a file named otherwise ('x.txt') -> 'x.txt.meta.json'."""
    return envelope_path.with_name(envelope_path.name + suffix.removeprefix(ENVELOPE_SUFFIX))


# --- reading sidecars ------------------------------------------------------------------------

class StoredFileError(EnvelopeError):
    """A sidecar that cannot be read as one: `problem` (unreadable, too_large, not_json,
    not_object), what was `expected` of it and what was `found`."""

    def __init__(self, path: str | Path, problem: str, expected: str, found: str) -> None:
        super().__init__(f"{path}: expected {expected}, found {found}")
        self.path, self.problem, self.expected, self.found = path, problem, expected, found


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


@overload
def read_stored_bytes(path: str | Path, max_bytes: int, what: str = ...,
                      *, missing_ok: Literal[False] = ...) -> bytes: ...
@overload
def read_stored_bytes(path: str | Path, max_bytes: int, what: str = ..., *, missing_ok: bool) -> bytes | None: ...


def read_stored_bytes(path: str | Path, max_bytes: int, what: str = "stored",
                      *, missing_ok: bool = False) -> bytes | None:
    """Up to `max_bytes` + 1 bytes of the regular file `path` (one byte over is enough for the
    caller to report it). The one way a file of the store is read: anyone who can write the
    store can put a named pipe, a device or a socket where a file was, and a plain `open` of a
    pipe waits for a writer forever (no signal ends it). So the file is opened without blocking
    and refused unless it is a regular file. Raises StoredFileError: problem "missing" (no such
    file; with `missing_ok`, None is returned instead), "not_regular" or "unreadable"."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        if missing_ok:
            return None
        raise StoredFileError(path, "missing", f"a {what} file", "no such file") from None
    except OSError as exc:
        raise StoredFileError(path, "unreadable", f"a readable {what} file", str(exc.strerror or exc)) from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise StoredFileError(path, "not_regular", f"a readable {what} file (a regular file)",
                                  _file_type(status.st_mode))
        chunks, left = [], max_bytes + 1
        # The first read asks for the file's size and one byte more (os.read allocates what it
        # is asked for: a fixed large chunk costs more than reading a small envelope itself).
        want = status.st_size + 1
        while left > 0:
            chunk = os.read(fd, min(left, want))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
            want = _READ_CHUNK  # a file that grew while read: the rest in chunks
        return b"".join(chunks)
    except OSError as exc:
        raise StoredFileError(path, "unreadable", f"a readable {what} file", str(exc.strerror or exc)) from None
    finally:
        os.close(fd)


#: Bytes per read of a stored file (a large envelope is read in a few of these).
_READ_CHUNK = 1024 * 1024
_FILE_TYPES = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISDIR, "a directory"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _file_type(mode: int) -> str:
    return next((name for test, name in _FILE_TYPES if test(mode)), f"a file of mode {mode:o}")


def read_sidecar(path: Path, what: str = "metadata", *, max_bytes: int = MAX_SIDECAR_BYTES) -> dict[str, Any] | None:
    """The JSON object in the `what` ("metadata", "verdict", "appraisal") file `path`, None when
    there is no such file. Raises StoredFileError when it cannot be read (or is not a regular
    file), is over `max_bytes`, is not strict JSON (a duplicate key, NaN, an integer too long to
    convert, nesting past MAX_SIDECAR_DEPTH), or is not an object. Anyone who can write the store
    can write these files: nothing here trusts them."""
    data = read_stored_bytes(path, max_bytes, what, missing_ok=True)
    if data is None:
        return None
    if len(data) > max_bytes:
        raise StoredFileError(path, "too_large", f"a {what} file of at most {max_bytes} bytes", "a larger one")
    try:
        value = loads_strict(data.decode("utf-8"), max_depth=MAX_SIDECAR_DEPTH)
    except UnicodeDecodeError as exc:
        raise StoredFileError(path, "not_json", f"a {what} file holding JSON", f"no JSON (not UTF-8 text: {exc})") from None
    except JSONProblem as exc:
        raise StoredFileError(path, "not_json", f"a {what} file holding JSON", f"no JSON ({exc})") from None
    except RecursionError:
        raise StoredFileError(path, "not_json", f"a {what} file holding JSON",
                              f"JSON nested past {MAX_SIDECAR_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise StoredFileError(path, "not_object", f"a {what} file holding a JSON object",
                              f"a JSON {_JSON_KINDS.get(type(value), 'value')}")
    return value


# --- what a stored output is -------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """One kind of stored output: the verifier profile that checks it, and whether its signed
    text must be a dossier (the collector asked for one: anything else is not one)."""

    name: str
    profile: str
    require_dossier: bool
    description: str


#: The verifier profile of every TPM attestation kind (`verifier.tpm.verify_tpm_output`).
TPM_PROFILE = "xr-tpm"
#: Every kind the metadata's `kind` may name (schemas/metadata.schema.json lists the same).
KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("xr-dossier", "xr-dossier", True, "an IOS XR dossier envelope (the integrity dossier command)"),
    Kind("xr-signed-output", "xr-dossier", False, "an IOS XR signed envelope whose text need not be a dossier"),
    Kind("xe-sudi", "xe-sudi-sign", False, "an IOS XE SUDI certificate output signed with the nonce"),
    Kind("xe-integrity", "xe-integrity-sign", False,
         "an IOS XE integrity output signed with the nonce (its SUDI output is its `signer`)"),
    Kind("xr-tpm-certificate", TPM_PROFILE, False,
         "an IOS XR get-certificate NETCONF reply: the TPM attestation key's certificate chain"),
    Kind("xr-tpm-quote", TPM_PROFILE, False,
         "an IOS XR attest-platform-config-registers NETCONF reply: a TPM quote of the PCRs over the nonce "
         "(its get-certificate reply is its `signer`)"),
    Kind("xr-tpm-boot-log", TPM_PROFILE, False,
         "an IOS XR get-platform-boot-integrity-event-logs NETCONF reply, replayed to its poll's `quote`"),
    Kind("xr-tpm-ima-log", TPM_PROFILE, False,
         "an IOS XR get-platform-ima-event-logs NETCONF reply (from `ima_start`), replayed to its poll's `quote`"),
)}
#: The kinds a TPM attestation poll stores (verifier/tpm/, docs/tpm-attestation.md).
TPM_KINDS = frozenset(name for name in KINDS if name.startswith("xr-tpm-"))
#: The XR command that asks for a dossier (how stores from before `kind` tell one).
_DOSSIER_COMMAND = "integrity dossier"
#: Stores from before `kind`: an IOS XE output's `output` name -> its kind.
_XE_OUTPUTS = {"sudi": "xe-sudi", "integrity": "xe-integrity"}
_PROFILE_KINDS = {"xe-sudi-sign": "xe-sudi", "xe-integrity-sign": "xe-integrity"}


def kind_of(meta: Mapping[str, Any] | None) -> Kind | None:
    """What the output with metadata `meta` is: its `kind`; for metadata written before `kind`,
    derived from what it has (`verifier_profile`, `output`, `platform`, `command`). None when
    there is no metadata, or it names a profile no kind has (then the profile alone applies).
    Raises EnvelopeError for a `kind` that is not one of KINDS."""
    if meta is None:
        return None
    named = meta.get("kind")
    if named is not None:
        if not isinstance(named, str) or named not in KINDS:
            raise EnvelopeError(f"metadata kind: expected one of {', '.join(KINDS)}, found {named!r}")
        declared = meta.get("verifier_profile")
        if declared is not None and declared != KINDS[named].profile:
            raise EnvelopeError(f"metadata verifier_profile: expected {KINDS[named].profile!r} (kind {named}), "
                                f"found {declared!r}; the metadata contradicts itself")
        return KINDS[named]
    profile, command = meta.get("verifier_profile"), meta.get("command")
    if profile in _PROFILE_KINDS:
        return KINDS[_PROFILE_KINDS[profile]]
    if meta.get("platform") is not None and meta.get("output") in _XE_OUTPUTS:
        return KINDS[_XE_OUTPUTS[meta["output"]]]
    if profile is not None and profile != "xr-dossier":
        return None
    if isinstance(command, str) and _DOSSIER_COMMAND in command:
        return KINDS["xr-dossier"]
    return KINDS["xr-signed-output"]


def legacy_poll_role(meta: Mapping[str, Any]) -> str | None:
    """The one rule for IOS XE outputs stored before `poll_id`, `signer` and `kind` (stores of
    earlier collectors, which stored a poll as its `sudi` output then the outputs it signs):
    `"start"` for such a `sudi` output, `"member"` for another such output (it belongs to the
    nearest `sudi` output stored before it), None for an output that names its poll itself or
    is not one of those."""
    if meta.get("signer") is not None or meta.get("poll_id") is not None or meta.get("kind") is not None:
        return None  # a collector that records its polls names the signer itself
    if meta.get("platform") is None:
        return None
    return "start" if meta.get("output") == "sudi" else "member"


def legacy_signer(envelope_path: Path, meta: Mapping[str, Any]) -> str | None:
    """For an IOS XE integrity output stored before poll ids (`legacy_poll_role`): the file name
    of the nearest `sudi` output stored before it in its folder; None otherwise, or when there is
    none. The caller checks the named output as it checks a `signer`."""
    if legacy_poll_role(meta) != "member":
        return None
    kind = kind_of(meta)
    if kind is None or kind.name != "xe-integrity":
        return None
    earlier = sorted((p for p in envelope_path.parent.glob("*" + ENVELOPE_SUFFIX) if p.name < envelope_path.name),
                     reverse=True)
    for candidate in earlier:
        try:
            other = read_sidecar(sidecar_path(candidate, META_SUFFIX))
        except StoredFileError:
            return None  # a damaged neighbour: no guessing past it
        if other is not None and legacy_poll_role(other) == "start" and other.get("platform") == meta.get("platform"):
            return candidate.name
    return None


def previous_of_kind(envelope_path: Path, kind: str, *, limit: int = 64) -> Path | None:
    """The newest output of `kind` stored before `envelope_path` in its folder (names sort by
    the time received), looking at no more than `limit` earlier files of any kind; None when
    there is none. A damaged neighbour is skipped: what it would have said is then unknown."""
    earlier = sorted((p for p in envelope_path.parent.glob("*" + ENVELOPE_SUFFIX) if p.name < envelope_path.name),
                     reverse=True)
    for candidate in earlier[:limit]:
        try:
            meta = read_sidecar(sidecar_path(candidate, META_SUFFIX))
        except StoredFileError:
            continue
        if meta is not None and meta.get("kind") == kind:
            return candidate
    return None
