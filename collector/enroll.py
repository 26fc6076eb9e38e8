"""Enrollment, like the seed's `crypto ca authenticate`: fetch the device's root, show it, store
it in the trust store only after confirmation (fingerprint given, interactive yes, or explicit
trust-on-first-use, which is logged as such).

IOS XR: the root comes from a signed dossier asked for with `include-certificate` and a fresh
nonce; the envelope must verify under that root before it is offered, so the device has proved
it holds the leaf key the root vouches for.

IOS XE: every device chains to the same vendor root and SUDI sub-CA (pinned beforehand with
`dossier trust add DEVICE ROOT.pem --intermediate SUB-CA.pem`), so the chain proves only "some
Cisco device". What is enrolled is the device's own SUDI certificate (its identity, PID and
serial number), from a SUDI sign output over a fresh nonce that verifies under those anchors;
verification then compares every output's signer with it.

IOS XR with TPM evidence: every device's attestation key chains to the same TPM vendor root
(pinned beforehand with `dossier trust add`), so each node's attestation-key certificate, from
`get-certificate` over NETCONF verified under that root, is pinned the same way; TPM
verification then compares every quote's key with the pin of its node.
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
from verifier.nonce import Nonce

from .errors import EnrollError
from .inventory import Device
from .platforms import profile_for
from .ssh import run_command

__all__ = ["ENROLL_ITEMS", "AttestationKeyCandidate", "Candidate", "EnrollResult", "RootCandidate", "SudiCandidate", "enroll_candidate",
           "enroll_attestation_key", "enroll_identity", "enroll_root", "fetch_attestation_keys", "fetch_candidate", "fetch_root", "fetch_sudi", "normalise_fingerprint"]

log = logging.getLogger(__name__)

#: The smallest dossier that still carries the certificates: enrollment needs only the chain.
ENROLL_ITEMS: tuple[str, ...] = ("system-inventory",)


class _Offered:
    """A certificate a device offers for enrollment (`certificate`), as the operator checks it."""

    device: str
    certificate: x509.Certificate

    @property
    def sha256(self) -> str:
        return sha256(self.certificate.public_bytes(Encoding.DER)).hexdigest()

    @property
    def sha1(self) -> str:
        """Upper-case hex as `show crypto ca certificates` prints it."""
        return sha1(self.certificate.public_bytes(Encoding.DER)).hexdigest().upper()  # noqa: S324 - display only

    def describe(self) -> dict[str, Any]:
        """What the operator checks before trusting it (names as the router prints them)."""
        from verifier.chain import format_name

        cert = self.certificate
        return {
            "device": self.device,
            "subject": format_name(cert.subject),
            "issuer": format_name(cert.issuer),
            "serial": _serial(cert.serial_number),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": self.sha256,
            "sha1": self.sha1,
        }


@dataclass(frozen=True)
class RootCandidate(_Offered):
    """A device's root certificate as offered, not yet trusted."""

    device: str
    root: x509.Certificate
    leaf: x509.Certificate | None

    @property
    def certificate(self) -> x509.Certificate:  # type: ignore[override]
        return self.root


@dataclass(frozen=True)
class SudiCandidate(_Offered):
    """An IOS XE device's SUDI certificate (its identity) as offered, not yet pinned."""

    device: str
    certificate: x509.Certificate

    @property
    def identity(self) -> str:
        from verifier.profiles import sudi_identity

        return sudi_identity(self.certificate)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "identity": self.identity}


@dataclass(frozen=True)
class AttestationKeyCandidate(_Offered):
    """An IOS XR node's TPM attestation-key certificate as offered, not yet pinned."""

    device: str
    location: str
    certificate: x509.Certificate

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "location": self.location}


Candidate = RootCandidate | SudiCandidate | AttestationKeyCandidate


@dataclass(frozen=True)
class EnrollResult:
    device: str
    action: str  # enrolled | already-enrolled | replaced
    source: str
    candidate: Candidate

    def to_json(self) -> dict[str, Any]:
        what = ("sudi" if isinstance(self.candidate, SudiCandidate) else
                "attestation_key" if isinstance(self.candidate, AttestationKeyCandidate) else "root")
        return {"device": self.device, "action": self.action, "source": self.source,
                what: self.candidate.describe()}


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
    nonce = Nonce.fresh()
    result = run_command(device, profile.dossier_command(ENROLL_ITEMS, nonce.hex()), run_deadline=run_deadline)
    profile.check_output(result.output)
    certificates = _certificates(result.output, device.name)
    root = certificates[0]
    leaf = certificates[-1] if len(certificates) > 1 else None
    verdict = verify_envelope(result.output, roots=[root], device=device.name,
                              expected_nonce=nonce,
                              at=result.received, policy=Policy(require_dossier=True))
    if not verdict.trusted:
        problems = "; ".join(f"{f.id}: {f.message}" for f in verdict.errors)
        raise EnrollError(
            f"{device.name}: the device's envelope does not verify under the root it presents "
            f"({problems}); not enrolling. Fix the device's trustpoint (or `--provision`) first."
        )
    return RootCandidate(device=device.name, root=root, leaf=leaf)


def fetch_candidate(device: Device, *, trust_store_path: Path,
                    run_deadline: float | None = None) -> Candidate:
    """What enrolling `device` would pin: its root (IOS XR) or its SUDI certificate (IOS XE)."""
    if profile_for(device.platform).evidence == "signed-commands":
        return fetch_sudi(device, trust_store_path=trust_store_path, run_deadline=run_deadline)
    return fetch_root(device, run_deadline=run_deadline)


def fetch_sudi(device: Device, *, trust_store_path: Path, run_deadline: float | None = None) -> SudiCandidate:
    """Ask an IOS XE device for its SUDI sign output over a fresh nonce and return its SUDI
    certificate once the output verifies under the vendor anchors enrolled for the device.

    Raises EnrollError when no anchors are enrolled or the output does not verify.
    """
    from verifier.profiles import verify_output

    anchors = _enrolled_anchors(device, trust_store_path)
    if not anchors:
        raise EnrollError(
            f"{device.name}: expected the vendor's SUDI root and sub-CA enrolled for this IOS XE device, found "
            f"none; pin them first (Cisco Root CA 2099 and the High Assurance SUDI CA on a real device): "
            f"`dossier trust add {device.name} ROOT.pem --intermediate SUB-CA.pem --trust-store {trust_store_path}`"
        )
    step = profile_for(device.platform).signed_commands[0]
    nonce = Nonce.fresh_xe()
    result = run_command(device, step.template.format(nonce=nonce.decimal), run_deadline=run_deadline)
    profile_for(device.platform).check_output(result.output)
    verdict = verify_output(result.output, profile=step.verifier_profile, roots=anchors, expected_nonce=nonce,
                            at=result.received)
    if not verdict.trusted or verdict.leaf is None:
        problems = "; ".join(f"{f.id}: {f.message}" for f in verdict.errors) or "no device certificate"
        raise EnrollError(
            f"{device.name}: the device's SUDI output does not verify under the anchors enrolled for it "
            f"({problems}); not pinning its identity"
        )
    return SudiCandidate(device=device.name, certificate=verdict.leaf)


def fetch_attestation_keys(device: Device, *, trust_store_path: Path,
                           run_deadline: float | None = None) -> list[AttestationKeyCandidate]:
    """Ask an IOS XR device for its TPM attestation-key certificates (`get-certificate` over
    NETCONF, a fresh nonce) and return each node's once its chain verifies to the TPM vendor
    root enrolled for the device.

    Raises EnrollError when no root is enrolled or no node's certificate verifies, and the
    NETCONF session's errors when the device cannot be reached.
    """
    from verifier import Policy
    from verifier.tpm.attestation import attestation_certificates

    from .netconf import NetconfSession
    from .polling import tpm_certificate_request

    anchors = _enrolled_anchors(device, trust_store_path)
    if not anchors:
        raise EnrollError(
            f"{device.name}: expected the TPM vendor root enrolled for this device (its evidence includes tpm), "
            f"found none; pin it first: `dossier trust add {device.name} TPM-ROOT.pem --trust-store "
            f"{trust_store_path}`")
    with NetconfSession(device, run_deadline=run_deadline) as session:
        result = session.rpc(tpm_certificate_request(Nonce.fresh()))
    verdict, certificates = attestation_certificates(result.output, roots=anchors,
                                                     when=result.received, policy=Policy())
    if verdict.errors or not certificates:
        problems = "; ".join(f"{f.id}: {f.message}" for f in verdict.errors) or "no attestation certificate"
        raise EnrollError(
            f"{device.name}: the device's attestation-key certificates do not verify under the roots enrolled "
            f"for it ({problems}); not pinning them")
    return [AttestationKeyCandidate(device=device.name, location=location, certificate=certificate)
            for location, certificate in sorted(certificates.items())]


def enroll_attestation_key(trust_store_path: Path, candidate: AttestationKeyCandidate, *, source: str,
                           expect_fingerprint: str | None = None, replace: bool = False,
                           now: datetime | None = None) -> EnrollResult:
    """Pin `candidate`'s attestation-key certificate for its device's node once confirmed
    (`source` as for `enroll_root`). A node pinned to another key is refused unless `replace`
    (a replaced route processor or TPM)."""
    from verifier import TrustStore, VerifierError

    _confirm(candidate, source, expect_fingerprint)
    try:
        store = TrustStore.open(trust_store_path)
        pinned = store.pinned_attestation_keys(candidate.device).get(candidate.location)
        action = "enrolled"
        if pinned is not None:
            if sha256(pinned.public_bytes(Encoding.DER)).hexdigest() == candidate.sha256:
                return EnrollResult(candidate.device, "already-enrolled", source, candidate)
            if not replace:
                raise EnrollError(
                    f"{candidate.device}: node {candidate.location} presents attestation key {candidate.sha256}, but "
                    f"{sha256(pinned.public_bytes(Encoding.DER)).hexdigest()} is pinned. Another device answers at "
                    "this address (a wrong inventory entry, a relay) or the node's TPM was replaced. Find out why; "
                    "then re-run with --replace to pin the new key.")
            action = "replaced"
        if source == "tofu":
            log.warning("TRUST ON FIRST USE: pinning %s %s attestation key %s without checking its fingerprint",
                        inert(candidate.device), inert(candidate.location), candidate.sha256)
        store.pin_attestation_key(candidate.device, candidate.location, candidate.certificate, source=source,
                                  pinned_at=now)
    except VerifierError as exc:
        raise EnrollError(f"{candidate.device}: {exc}") from None
    return EnrollResult(candidate.device, action, source, candidate)


def _enrolled_anchors(device: Device, trust_store_path: Path) -> list[x509.Certificate]:
    """The roots and sub-CAs enrolled for `device` ([] when none is, or there is no trust store
    yet); raises EnrollError when the trust store cannot be read."""
    from verifier import TrustStore, VerifierError

    if not (Path(trust_store_path) / "truststore.json").exists():  # none yet: nothing is pinned
        return []
    try:
        store = TrustStore.open(trust_store_path)
        if device.name not in store:
            return []
        return store.roots_for(device.name) + store.intermediates_for(device.name)
    except VerifierError as exc:
        raise EnrollError(f"{device.name}: {exc}") from None


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


def _confirm(candidate: Candidate, source: str, expect_fingerprint: str | None) -> None:
    """Raise EnrollError unless `source` confirms `candidate` (a matching fingerprint, an
    interactive yes, or knowingly trust-on-first-use)."""
    if source == "fingerprint":
        if expect_fingerprint is None:
            raise EnrollError("source 'fingerprint' needs --expect-fingerprint")
        wanted = normalise_fingerprint(expect_fingerprint)
        if wanted not in (candidate.sha256, candidate.sha1.lower()):
            what, where = (("SUDI certificate", "`show platform sudi certificate`")
                           if isinstance(candidate, SudiCandidate)
                           else (f"attestation key ({candidate.location})",
                                 "`show platform security attest certificate aik location NODE`")
                           if isinstance(candidate, AttestationKeyCandidate)
                           else ("root", "`show crypto ca certificates system-trustpoint`"))
            raise EnrollError(
                f"{candidate.device}: expected {what} fingerprint {expect_fingerprint}, found "
                f"SHA-256 {candidate.sha256} / SHA-1 {candidate.sha1}. Not enrolled: check on the "
                f"device with {where}."
            )
    elif source not in ("tofu", "interactive"):
        raise EnrollError(f"expected source fingerprint, interactive or tofu, found {source!r}")


def enroll_candidate(trust_store_path: Path, candidate: Candidate, *, source: str,
                     expect_fingerprint: str | None = None, replace: bool = False,
                     now: datetime | None = None) -> EnrollResult:
    """`enroll_root` or `enroll_identity`, whichever `candidate` is."""
    enroll = (enroll_identity if isinstance(candidate, SudiCandidate) else
              enroll_attestation_key if isinstance(candidate, AttestationKeyCandidate) else enroll_root)
    return enroll(trust_store_path, candidate, source=source, expect_fingerprint=expect_fingerprint,  # type: ignore[arg-type]
                  replace=replace, now=now)


def enroll_identity(trust_store_path: Path, candidate: SudiCandidate, *, source: str,
                    expect_fingerprint: str | None = None, replace: bool = False,
                    now: datetime | None = None) -> EnrollResult:
    """Pin `candidate`'s SUDI certificate as its device's identity once confirmed (`source` as for
    `enroll_root`). A device pinned to another identity (PID and serial number) is refused
    unless `replace` (a replaced chassis); a reissued certificate for the same identity is
    pinned in place of the old one."""
    from verifier import TrustStore, VerifierError
    from verifier.profiles import sudi_identity

    _confirm(candidate, source, expect_fingerprint)
    try:
        store = TrustStore.open(trust_store_path)
        pinned = store.pinned_leaf(candidate.device) if candidate.device in store else None
        if pinned is not None and sha256(pinned.public_bytes(Encoding.DER)).hexdigest() == candidate.sha256:
            return EnrollResult(candidate.device, "already-enrolled", source, candidate)
        action = "enrolled"
        if pinned is not None and sudi_identity(pinned) != candidate.identity:
            if not replace:
                raise EnrollError(
                    f"{candidate.device}: the device presents SUDI identity {candidate.identity}, but "
                    f"{sudi_identity(pinned)} is pinned. Another device answers at this address (a wrong "
                    "inventory entry, a relay) or the chassis was replaced. Find out why; then re-run with "
                    "--replace to pin the new identity."
                )
            action = "replaced"
        if source == "tofu":
            log.warning("TRUST ON FIRST USE: pinning %s SUDI identity %s (%s) without checking its fingerprint",
                        inert(candidate.device), inert(candidate.identity), candidate.sha256)
        store.pin_leaf(candidate.device, candidate.certificate, source=source, pinned_at=now)
    except VerifierError as exc:
        raise EnrollError(f"{candidate.device}: {exc}") from None
    return EnrollResult(candidate.device, action, source, candidate)


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
    _confirm(candidate, source, expect_fingerprint)
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
        store.pin_leaf(candidate.device, candidate.leaf, source=source, pinned_at=now)
    return EnrollResult(candidate.device, action, source, candidate)

