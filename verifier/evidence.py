"""Verify a stored output: the one path from stored bytes and metadata to a verdict.

`verify_stored(path, ...)` reads a file as the collector stored it (its metadata through
`verifier.stored`) and verifies it; `verify_evidence(raw, metadata, ...)` verifies bytes
with the metadata they have or are about to have (the collector verifies before it writes the
metadata). Both pick how to verify from the metadata's kind (`verifier.stored.kind_of`):

  (1) the profile: the one given, else the kind's, else the metadata's `verifier_profile`,
      else the IOS XR envelope;
  (2) the signer: the one given, else the output the metadata names as `signer`;
  (3) require_dossier: the policy's, or the kind's (the collector asked for a dossier);
  (4) device and nonce: the ones given, else the metadata's; the time judged at: "received"
      (the metadata's), "now", or a time. A given nonce that differs from the metadata's is an
      input error; a given device that differs is verified as the device given (the trust
      decision is bound to the device named) and is never trusted (`stored.mismatch`);
  (5) a stored file (`verify_stored`) is checked against its metadata (size, SHA-256, the
      collector's file name and device folder: each contradiction a `stored.mismatch` error)
      and has its signed record checked in the store's record log (verifier/records.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EnvelopeError, VerifierError
from .findings import Finding, FindingId, Severity
from .inputs import EnvelopeInput, parse_time, read_envelope_file
from .policy import Policy
from .stored import TPM_PROFILE, StoredFileError, kind_of, parse_stored_name, previous_of_kind, read_stored_bytes
from .verify import Verdict, verify_envelope

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from .profiles.clisupport import ProfileOptions
    from .records import LogCheck
    from .truststore import TrustStore

__all__ = ["AT_NOW", "AT_RECEIVED", "verify_evidence", "verify_stored"]

#: `at=`: judge validity now, or at the time the metadata says the output was received.
AT_NOW, AT_RECEIVED = "now", "received"
#: The profile of the IOS XR envelope (verifier/verify.py); every other one is verifier/profiles.
_ENVELOPE_PROFILE = "xr-dossier"
_DEFAULT_POLICY = Policy()


def verify_evidence(
    raw: bytes,
    metadata: Mapping[str, Any] | None = None,
    *,
    trust_store: TrustStore | None = None,
    roots: Sequence[x509.Certificate] = (),
    device: str | None = None,
    nonce: bytes | None = None,
    at: dt.datetime | str = AT_RECEIVED,
    policy: Policy | None = None,
    signer: bytes | None = None,
    profile: str | None = None,
    options: ProfileOptions | None = None,
    where: str = "-",
    quote: bytes | None = None,
    previous_quote: bytes | None = None,
) -> Verdict:
    """Verify the output `raw` whose metadata is `metadata` (schemas/metadata.schema.json, as
    stored or about to be; None: none) and return its verdict; steps (1)-(4) above.

    `trust_store` or `roots`: the anchors. `device`, `nonce` (the bytes sent; IOS XE: its 8
    bytes big-endian): the metadata's when not given. `at`: "received" (the metadata's time),
    "now", an ISO-8601 text or an aware datetime. `signer`: the same poll's output that signs
    this one (IOS XE integrity: its SUDI output). `profile`: verify as this profile
    (verifier/profiles; "auto" guesses) whatever the metadata says; `options`: a profile's side
    inputs (signature, KGV file, signer; `verifier.profiles.clisupport.ProfileOptions`, whose
    own `profile` is ignored: `profile` or the metadata decides). `where`: how
    messages name the output. TPM outputs (verifier/tpm/): `signer` is the poll's certificate
    reply, `quote` a log's quote reply, `previous_quote` the device's quote before this one. Raises VerifierError for the caller's or the metadata's mistakes
    (the message starts with `where`); anything about the output itself is a finding.
    """
    policy = policy or _DEFAULT_POLICY
    meta = metadata or {}
    try:
        kind = kind_of(metadata)
    except EnvelopeError as exc:
        raise EnvelopeError(f"{where}: {exc}") from None
    recorded_device = meta.get("device") if metadata is not None else None
    disagreement = _device_disagreement(device, recorded_device, where)
    device = device if device is not None else recorded_device
    nonce = _nonce(nonce, metadata, where)
    when = _moment(at, metadata, where)
    # (1) the profile; (2) the signer
    if profile is None:
        declared = meta.get("verifier_profile")
        profile = kind.profile if kind is not None else declared if isinstance(declared, str) else _ENVELOPE_PROFILE
    if profile == TPM_PROFILE:
        from .tpm.evidence import verify_tpm_evidence

        verdict = verify_tpm_evidence(raw, meta, kind.name if kind is not None else None, trust_store=trust_store,
                                      roots=roots, device=device, nonce=nonce, at=when, policy=policy,
                                      signer=(options.signer if options is not None else None) or signer,
                                      quote=quote, previous_quote=previous_quote, where=where)
    elif profile != _ENVELOPE_PROFILE:
        from .profiles.clisupport import ProfileOptions, verify_file

        chosen = dataclasses.replace(options or ProfileOptions(profile), profile=profile,
                                     signer=(options.signer if options is not None else None) or signer)
        verdict = verify_file(chosen, raw, path=where, trust_store=trust_store, roots=roots, device=device,
                              nonce=nonce, at=when, policy=policy)
    else:
        # (3) the collector asked this device for a dossier: anything else is not one
        if kind is not None and kind.require_dossier and not policy.require_dossier:
            policy = dataclasses.replace(policy, require_dossier=True)
        verdict = verify_envelope(raw, trust_store=trust_store, roots=roots, device=device, expected_nonce=nonce,
                                  at=when, policy=policy)
    if disagreement is not None:
        verdict.findings.insert(0, disagreement)
    return verdict


def verify_stored(
    path: str | Path,
    *,
    trust_store: TrustStore | None = None,
    roots: Sequence[x509.Certificate] = (),
    device: str | None = None,
    nonce: bytes | None = None,
    at: dt.datetime | str = AT_RECEIVED,
    policy: Policy | None = None,
    signer: bytes | None = None,
    profile: str | None = None,
    options: ProfileOptions | None = None,
    collector_key: bytes | Ed25519PublicKey | Sequence[bytes | Ed25519PublicKey] | None = None,
    record_logs: MutableMapping[Path, LogCheck] | None = None,
    raw: bytes | None = None,
) -> Verdict:
    """Verify the file at `path` as the collector stored it (`<name>.envelope` with
    `<name>.envelope.meta.json` beside it; a file without metadata is verified as the device
    printed it) and return its verdict; steps (1)-(5) above. The arguments are
    `verify_evidence`'s, and:

    `collector_key`: the collector's public key (raw Ed25519 bytes or a key) the store's record
    log is checked with (None: the log's own key, with a warning finding); for a store of
    several writers (`records.d`), a list of their keys. `record_logs`: a
    cache of logs read, kept by a caller verifying many files (each log read once). `raw`: the
    file's bytes when the caller has read them already (standard input, `path` '-').
    `device` given: the file's folder need not be named after it (a copy in a case folder).
    Raises VerifierError for an unreadable file or metadata, or a nonce given that the metadata
    contradicts (the message names the file); a file that contradicts its metadata is an
    untrusted verdict (`stored.mismatch`).
    """
    policy = policy or _DEFAULT_POLICY
    where = str(path)
    if raw is not None:
        item = EnvelopeInput(where, raw)
    else:
        item = read_envelope_file(path, max_bytes=policy.max_envelope_bytes, device=device)
    if item.meta is None and at == AT_RECEIVED:
        raise VerifierError(f"{where}: --at received needs the collector's metadata ({where}.meta.json)")
    verdict = verify_evidence(item.raw, item.meta, trust_store=trust_store, roots=roots, device=device, nonce=nonce,
                              at=at, policy=policy, signer=signer or item.signer, profile=profile,
                              options=options, where=where, quote=item.quote,
                              previous_quote=_previous_quote(item, policy))
    verdict.findings[:0] = item.mismatches  # what the file contradicts in its record comes first
    if item.meta is not None:  # (5) stored by the collector: its signed record
        verdict.findings.extend(_record_findings(item, collector_key, record_logs, policy,
                                                 at_received=at == AT_RECEIVED))
    elif raw is None and _in_a_recorded_store(item.path):  # the path as read ("x/" names x)
        # A file the collector named, in a store that keeps a record log, whose metadata is gone:
        # its signed record still says what it was (deleting the metadata must not skip that).
        verdict.add(FindingId.STORED_MISMATCH, Severity.ERROR,
                    f"{where}: the collector's metadata beside it ({where}.meta.json) is missing; the file is "
                    "checked against its signed record", "the metadata the collector wrote", "none")
        verdict.findings.extend(_record_findings(item, collector_key, record_logs, policy, at_received=False))
    return verdict


def _previous_quote(item: EnvelopeInput, policy: Policy) -> bytes | None:
    """A stored TPM quote whose metadata does not carry the previous quote's up-time: the bytes
    of the device's quote stored before it (its up-time is compared with), if any."""
    meta = item.meta or {}
    if meta.get("kind") != "xr-tpm-quote" or meta.get("tpm_previous") is not None or item.path == "-":
        return None
    previous = previous_of_kind(Path(item.path), "xr-tpm-quote")
    if previous is None:
        return None
    try:
        return read_stored_bytes(previous, policy.max_envelope_bytes, "previous quote")
    except StoredFileError:
        return None  # unreadable: the comparison is skipped, as for a first quote


def _in_a_recorded_store(path: str) -> bool:
    """Whether `path` is named as the collector names what it stores and sits in a store with a
    record log."""
    if parse_stored_name(os.path.basename(path)) is None:
        return False
    from .records import locate_log

    return locate_log(Path(path)).exists()


def _device_disagreement(given: str | None, recorded: Any, where: str) -> Finding | None:
    """The `stored.mismatch` error when the device given is not the one the metadata records."""
    if given is None or recorded is None or given == recorded:
        return None
    return Finding(FindingId.STORED_MISMATCH, Severity.ERROR,
                   f"{where}: --device {given!r} differs from the metadata's device {recorded!r}; verified as "
                   f"{given!r}, and not trusted while the two disagree",
                   expected=f"device {given} (--device)", found=f"device {recorded} (the metadata)")


def _nonce(given: bytes | None, metadata: Mapping[str, Any] | None, where: str) -> bytes | None:
    """The nonce to expect: `given`, else the metadata's (hex)."""
    stored = (metadata or {}).get("nonce")
    if stored is None:
        return given
    try:
        stored_bytes = bytes.fromhex(stored)
    except (TypeError, ValueError):
        raise EnvelopeError(f"{where}.meta.json: nonce must be hex, found {stored!r}") from None
    if given is not None and given != stored_bytes:
        raise VerifierError(f"{where}: --nonce {given.hex()} differs from the metadata's nonce {stored_bytes.hex()}")
    return given if given is not None else stored_bytes


def _moment(at: dt.datetime | str, metadata: Mapping[str, Any] | None, where: str) -> dt.datetime | None:
    """The time validity is judged at (None: now)."""
    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            raise VerifierError(f"at: expected an aware time, found {at.isoformat()} with no zone")
        return at
    if at == AT_NOW:
        return None
    if at == AT_RECEIVED:
        received = (metadata or {}).get("received")
        if not isinstance(received, str):
            raise VerifierError(f"{where}: --at received needs the collector's metadata ({where}.meta.json)")
        return parse_time(received, f"{where}.meta.json: received")
    return parse_time(at, "--at")


def _record_findings(item: EnvelopeInput,
                     collector_key: bytes | Ed25519PublicKey | Sequence[bytes | Ed25519PublicKey] | None,
                     logs: MutableMapping[Path, LogCheck] | None, policy: Policy, *,
                     at_received: bool) -> list[Finding]:
    """The record log's findings about a stored envelope (each log read once per `logs`);
    where there is no log beside it and no collector key was given, what was not checked."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from .records import check_record, locate_log, read_log, read_logs, read_stored_envelope

    file = Path(item.path).absolute()  # its folder is the device's, also for "./x" run inside it
    log_path = locate_log(file)
    if collector_key is None and not log_path.exists():
        if not at_received:
            return []
        return [Finding(FindingId.RECORD_NOT_CHECKED, Severity.INFO,
                        f"{item.path}: no record log at {log_path} and no --collector-key: the collector's signed "
                        "record (replay, edited metadata, nonce used twice) was not checked",
                        expected="the store's records.jsonl", found="none")]
    logs = logs if logs is not None else {}
    if log_path not in logs:
        keys = [Ed25519PublicKey.from_public_bytes(one) if isinstance(one, bytes) else one
                for one in (collector_key if isinstance(collector_key, (list, tuple)) else [collector_key])
                if one is not None]
        # A store of several writers (records.d): each writer's log with its own key.
        logs[log_path] = (read_logs(log_path, keys or None) if log_path.is_dir()
                          else read_log(log_path, keys[0] if keys else None))
    verdict_file = file.with_name(file.name + ".verdict.json")
    meta = item.meta or {}
    verdict = meta.get("verdict") if isinstance(meta.get("verdict"), dict) else None
    if verdict is None and verdict_file.is_file():
        verdict = read_stored_envelope(file, policy.max_envelope_bytes)[2]
    return check_record(logs[log_path], f"{file.parent.name}/{file.name}", item.raw, meta, verdict)
