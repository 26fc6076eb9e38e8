"""Verifier profiles: signed formats real Cisco devices print, beside the XR dossier envelope.

    from verifier.profiles import verify_output
    verdict = verify_output(raw, profile="auto", roots=[cisco_root, act2_sudi_ca],
                            expected_nonce=12345, signer=sudi_output_bytes)
    verdict.profile, verdict.trusted, verdict.findings, verdict.to_json()["profile_data"]

Profiles (`PROFILES`): `xr-dossier` (the envelope, `verifier.verify_envelope`),
`xe-sudi-sign`, `xe-sudi-certificate`, `xe-integrity-sign`, `xe-system-integrity` (CLI,
NETCONF XML, RESTCONF JSON), `kgv` (a Known Good Values file and its detached signature) and
`xr-attest-certificate`. A profile is named by the caller or detected from the output's own
shape (`detect_profiles`); a verifier never tries signed-bytes variants until one verifies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from cryptography import x509

from ..chain import utc_moment
from ..findings import FindingId, Severity
from ..policy import DEFAULT_POLICY, Policy
from ..truststore import TrustStore
from ..verify import Verdict, verify_envelope
from ._common import (
    Measurements,
    ProfileError,
    ProfileVerdict,
    decode_text,
    load_anchors,
    nonce_to_int,
    sudi_identity,
)
from .kgv import KGVError, KnownGoodValues, appraise_integrity, load_kgv
from .signer import Signer, load_signers

__all__ = [
    "PROFILES",
    "KGVError",
    "KnownGoodValues",
    "Measurements",
    "ProfileError",
    "ProfileVerdict",
    "Signer",
    "appraise_integrity",
    "detect_profiles",
    "load_kgv",
    "load_signers",
    "sudi_identity",
    "verify_output",
]

PROFILES = (
    "xr-dossier",
    "xe-sudi-sign",
    "xe-sudi-certificate",
    "xe-integrity-sign",
    "xe-system-integrity",
    "kgv",
    "xr-attest-certificate",
)
_ONE_DAY = dt.timedelta(days=1)
_SHAPE_WINDOW = 256 * 1024  # shape markers sit near the start; a KGV file is ~100 kB


def detect_profiles(raw: bytes) -> list[str]:
    """The profiles whose unambiguous shape markers the output shows (none, one, or several).

    Markers are labels and element names, never a signature trial: one match is the profile,
    several is ambiguous, none is unknown.
    """
    try:
        text = raw[:_SHAPE_WINDOW].decode("utf-8", errors="replace").replace("\r", "")
    except (AttributeError, TypeError):
        return []
    stripped = text.lstrip()
    found: list[str] = []
    if '"signed-envelope"' in text:
        found.append("xr-dossier")
    if "system-integrity-oper-data" in text or "LOCATION FRU=" in text:
        found.append("xe-system-integrity")
    if '"node-location"' in text and '"signature_version"' in text:
        found.append("xr-attest-certificate")
    if stripped.startswith("{") and '"biv_hash"' in text and '"header"' in text:
        found.append("kgv")
    if found:
        return found
    begins = text.count("-----BEGIN CERTIFICATE-----")
    if "% Error retrieving SUDI certificate" in text or begins >= 2:
        found.append("xe-sudi-sign")
    if any(marker in text for marker in ("Boot 0 Hash:", "Boot Loader Hash:", "PCR0:",
                                         "% Error retrieving integrity data")):
        found.append("xe-integrity-sign")
    if not found and begins == 1:
        found.append("xe-sudi-certificate")
    return found


def verify_output(
    raw: bytes,
    *,
    profile: str = "auto",
    roots: Sequence[x509.Certificate] = (),
    trust_store: TrustStore | None = None,
    device: str | None = None,
    expected_nonce: int | bytes | None = None,
    signer: bytes | x509.Certificate | Signer | Sequence[Signer] | None = None,
    signature: bytes | None = None,
    kgv: KnownGoodValues | None = None,
    at: dt.datetime | None = None,
    policy: Policy | None = None,
) -> Verdict:
    """Verify one output under `profile` (a name from PROFILES, or "auto") and return its verdict.

    Anchors: `roots` (for XE: the Cisco root *and* the SUDI sub-CA, both pinned by DER) or
    `trust_store` (the device's roots and intermediates, or the trust pool without a device).
    `expected_nonce`: the nonce that was sent (XE: an int, or up to 8 bytes big-endian; XR:
    bytes). `signer`: for outputs without certificates, the same device's SUDI output or
    certificate. `signature`/`signer` for `kgv`: the detached signature and the signer's
    certificate chain (PEM). `kgv`: appraise integrity measurements against these values.
    Raises ProfileError / VerifierError only for the caller's own mistakes.
    """
    policy = policy or DEFAULT_POLICY
    when = utc_moment(at, ProfileError)
    verdict = _dispatch(raw, profile, roots, trust_store, device, expected_nonce, signer, signature, kgv, when,
                        policy)
    if isinstance(verdict, ProfileVerdict):
        for role, cert in (("leaf", verdict.leaf), ("root", verdict.root)):
            if cert is not None:  # the envelope path reports these too; the collector shows them
                verdict.days_to_expiry[role] = (cert.not_valid_after_utc - when) // _ONE_DAY
    return verdict


def _dispatch(
    raw: bytes, profile: str, roots: Sequence[x509.Certificate], trust_store: TrustStore | None,
    device: str | None, expected_nonce: int | bytes | None,
    signer: bytes | x509.Certificate | Signer | Sequence[Signer] | None, signature: bytes | None,
    kgv: KnownGoodValues | None, when: dt.datetime, policy: Policy,
) -> Verdict:
    if profile != "auto" and profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; expected one of: auto, {', '.join(PROFILES)}")
    detected = detect_profiles(raw)
    if profile == "auto":
        if len(detected) != 1:
            verdict = ProfileVerdict(profile="auto", verified_at=when)
            if decode_text(raw, verdict) is None:
                return verdict
            if not detected:
                verdict.add(FindingId.PROFILE_UNKNOWN, Severity.ERROR,
                            "the output matches no known profile; name one with --profile",
                            " | ".join(PROFILES), "no known shape")
            else:
                verdict.add(FindingId.PROFILE_AMBIGUOUS, Severity.ERROR,
                            "the output shows the shape of several profiles; name one with --profile",
                            "one profile", ", ".join(detected))
            return verdict
        profile = detected[0]
    elif detected and profile not in detected:
        verdict = ProfileVerdict(profile=profile, verified_at=when)
        verdict.add(FindingId.PROFILE_SHAPE_MISMATCH, Severity.ERROR,
                    f"profile {profile!r} was asked for, but the output has the shape of {', '.join(detected)}",
                    profile, ", ".join(detected))
        return verdict
    if profile == "xr-dossier":
        nonce_bytes = expected_nonce
        if isinstance(expected_nonce, int):
            raise ProfileError("the XR dossier nonce is bytes (the hex the collector sent), not an integer")
        return verify_envelope(raw, trust_store=trust_store, roots=roots, device=device,
                               expected_nonce=nonce_bytes, at=when, policy=policy)
    if profile == "kgv":
        from .kgv import verify_kgv_file

        return verify_kgv_file(raw, signature=signature, signer=signer, roots=roots, trust_store=trust_store,
                               at=when)
    anchors = load_anchors(roots, trust_store, device, when)
    if profile == "xr-attest-certificate":
        from .xr_attest_certificate import verify_attest_certificate

        if isinstance(expected_nonce, int):
            raise ProfileError("the XR attest nonce is bytes (the hex sent on the command line), not an integer")
        return verify_attest_certificate(raw, anchors=anchors, nonce=expected_nonce, when=when, policy=policy)
    nonce = nonce_to_int(expected_nonce)
    signers = load_signers(signer)
    pinned = trust_store.pinned_leaf(device) if trust_store is not None and device is not None else None
    if not signers and pinned is not None:
        signers = [Signer(pinned)]
    # Every XE device chains to the same vendor CA: the device certificate must also be the one
    # pinned for the device named (`_common.check_device_identity`).
    anchors = dataclasses.replace(anchors, check_identity=True, device=device, pinned_leaf=pinned,
                                  from_trust_store=trust_store is not None)
    if profile == "xe-sudi-sign":
        from .xe_sudi_sign import verify_sudi_sign

        return verify_sudi_sign(raw, anchors=anchors, nonce=nonce, when=when, policy=policy)
    if profile == "xe-sudi-certificate":
        from .xe_sudi_sign import verify_sudi_certificate

        return verify_sudi_certificate(raw, anchors=anchors, when=when)
    if profile == "xe-integrity-sign":
        from .xe_integrity_sign import verify_integrity_sign

        verdict = verify_integrity_sign(raw, anchors=anchors, signers=signers, nonce=nonce, when=when,
                                        policy=policy)
    else:
        from .xe_system_integrity import verify_system_integrity

        verdict = verify_system_integrity(raw, anchors=anchors, signers=signers, nonce=nonce, when=when,
                                          policy=policy)
    if kgv is not None:
        for measurement in verdict.measurements:
            verdict.findings.extend(appraise_integrity(measurement, kgv))
    return verdict
