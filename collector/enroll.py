"""Enrollment, like the seed's `crypto ca authenticate`: fetch the device's root, show it, store
it in the trust store only after confirmation (fingerprint given, interactive yes, or explicit
trust-on-first-use, which is logged as such).

The root comes from a signed dossier asked for with `include-certificate` and a fresh nonce;
the envelope must verify under that root before it is offered, so the device has proved it
holds the leaf key the root vouches for.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha1, sha256
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from verifier.display import inert

from .collect import new_nonce
from .errors import EnrollError
from .inventory import Device
from .platforms import profile_for
from .ssh import run_command

__all__ = ["ENROLL_ITEMS", "EnrollResult", "RootCandidate", "enroll_root", "fetch_root",
           "normalise_fingerprint"]

log = logging.getLogger(__name__)

#: The smallest dossier that still carries the certificates: enrollment needs only the chain.
ENROLL_ITEMS: tuple[str, ...] = ("system-inventory",)


@dataclass(frozen=True)
class RootCandidate:
    """A device's root certificate as offered, not yet trusted."""

    device: str
    root: x509.Certificate
    leaf: x509.Certificate | None

    @property
    def sha256(self) -> str:
        return sha256(self.root.public_bytes(Encoding.DER)).hexdigest()

    @property
    def sha1(self) -> str:
        """Upper-case hex as `show crypto ca certificates` prints it."""
        return sha1(self.root.public_bytes(Encoding.DER)).hexdigest().upper()  # noqa: S324 - display only

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "subject": self.root.subject.rfc4514_string(),
            "issuer": self.root.issuer.rfc4514_string(),
            "serial": _serial(self.root.serial_number),
            "not_before": self.root.not_valid_before_utc.isoformat(),
            "not_after": self.root.not_valid_after_utc.isoformat(),
            "sha256": self.sha256,
            "sha1": self.sha1,
        }


@dataclass(frozen=True)
class EnrollResult:
    device: str
    action: str  # enrolled | already-enrolled | replaced
    source: str
    candidate: RootCandidate

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "action": self.action, "source": self.source,
                "root": self.candidate.describe()}


def _serial(number: int) -> str:
    text = f"{number:X}"
    text = ("0" + text) if len(text) % 2 else text
    return ":".join(text[i:i + 2] for i in range(0, len(text), 2))


def normalise_fingerprint(text: str) -> str:
    """Lower-case hex without separators or an `SHA256:`/`SHA1:` prefix."""
    cleaned = text.strip()
    for prefix in ("sha256:", "sha-256:", "sha1:", "sha-1:"):
        if cleaned.lower().startswith(prefix):
            cleaned = cleaned[len(prefix):]
    cleaned = cleaned.replace(":", "").replace(" ", "").lower()
    if len(cleaned) not in (40, 64) or any(c not in "0123456789abcdef" for c in cleaned):
        raise EnrollError(
            f"expected a SHA-256 (64 hex digits) or SHA-1 (40 hex digits) fingerprint, found "
            f"{text!r}"
        )
    return cleaned


def fetch_root(device: Device, *, run_deadline: float | None = None) -> RootCandidate:
    """Ask the device for a signed dossier with its chain and return the root it presents.

    Raises EnrollError when the answer has no chain or does not verify under that root, and
    the SSH errors of `run_command` when the device cannot be reached.
    """
    from verifier import Policy, verify_envelope  # collector -> verifier is the allowed direction

    profile = profile_for(device.platform)
    nonce_hex = new_nonce()
    result = run_command(device, profile.dossier_command(ENROLL_ITEMS, nonce_hex), run_deadline=run_deadline)
    profile.check_output(result.output)
    certificates = _certificates(result.output, device.name)
    root = certificates[0]
    leaf = certificates[-1] if len(certificates) > 1 else None
    verdict = verify_envelope(result.output, roots=[root], device=device.name,
                              expected_nonce=bytes.fromhex(nonce_hex),
                              at=result.received, policy=Policy(require_dossier=True))
    if not verdict.trusted:
        problems = "; ".join(f"{f.id}: {f.message}" for f in verdict.errors)
        raise EnrollError(
            f"{device.name}: the device's envelope does not verify under the root it presents "
            f"({problems}); not enrolling. Fix the device's trustpoint (or `--provision`) first."
        )
    return RootCandidate(device=device.name, root=root, leaf=leaf)


def _certificates(output: bytes, name: str) -> list[x509.Certificate]:
    import base64

    text = output.decode("utf-8", "replace")
    start = text.find("{")
    try:
        envelope, _ = json.JSONDecoder().raw_decode(text, start) if start >= 0 else (None, 0)
        listed = envelope["signed-envelope"]["certificates"]["certificate"]
        certificates = [x509.load_der_x509_certificate(base64.b64decode(item["value"], validate=True))
                        for item in listed]
    except (ValueError, KeyError, TypeError, x509.InvalidVersion) as exc:
        raise EnrollError(
            f"{name}: expected a signed envelope with `certificates` (include-certificate), "
            f"found output that has none ({type(exc).__name__}: {exc})"
        ) from exc
    if not certificates:
        raise EnrollError(f"{name}: expected the root and leaf certificates, found an empty list")
    return certificates


def enroll_root(trust_store_path: Path, candidate: RootCandidate, *, source: str,
                expect_fingerprint: str | None = None, replace: bool = False,
                now: datetime | None = None) -> EnrollResult:
    """Store `candidate.root` for its device once confirmed.

    `source` says how it was confirmed: "fingerprint" (then `expect_fingerprint` must match),
    "interactive" or "tofu". A device that already has a different root is refused unless
    `replace`, which closes the old root's validity window (old envelopes stay verifiable).
    """
    from verifier import TrustStore

    now = now or datetime.now(UTC)
    if source == "fingerprint":
        if expect_fingerprint is None:
            raise EnrollError("source 'fingerprint' needs --expect-fingerprint")
        wanted = normalise_fingerprint(expect_fingerprint)
        if wanted not in (candidate.sha256, candidate.sha1.lower()):
            raise EnrollError(
                f"{candidate.device}: expected root fingerprint {expect_fingerprint}, found "
                f"SHA-256 {candidate.sha256} / SHA-1 {candidate.sha1}. Not enrolled: check on the "
                "device with `show crypto ca certificates system-trustpoint`."
            )
    elif source not in ("tofu", "interactive"):
        raise EnrollError(f"expected source fingerprint, interactive or tofu, found {source!r}")
    store = TrustStore.open(trust_store_path, create=True)
    enrolled = store.root_entries(candidate.device) if candidate.device in store else []
    action = "enrolled"
    if any(entry.sha256 == candidate.sha256 for entry in enrolled):
        return EnrollResult(candidate.device, "already-enrolled", source, candidate)
    if source == "tofu":
        log.warning("TRUST ON FIRST USE: enrolling %s root %s without checking its fingerprint",
                    inert(candidate.device), candidate.sha256)
    current = [entry for entry in enrolled if entry.valid_until is None or entry.valid_until > now]
    if current:
        if not replace:
            raise EnrollError(
                f"{candidate.device}: the device presents root {candidate.sha256}, but "
                f"{current[0].sha256} is enrolled. A new root means the device was re-keyed at "
                "the root (or is not the device you enrolled). Find out why; then re-run with "
                "--replace to enroll the new root (envelopes under the old root stay verifiable "
                "up to now)."
            )
        for entry in current:
            store.set_root_window(candidate.device, entry.sha256, valid_from=entry.valid_from, valid_until=now)
        action = "replaced"
    store.add_root(candidate.device, candidate.root, enrolled_at=now, source=source,
                   valid_from=now if action == "replaced" else None)
    if candidate.leaf is not None:
        # Pinning the leaf lets the verifier report a later re-key as a rotation.
        store.pin_leaf(candidate.device, candidate.leaf)
    return EnrollResult(candidate.device, action, source, candidate)

