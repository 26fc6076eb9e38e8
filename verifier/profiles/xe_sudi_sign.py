"""Profile `xe-sudi-sign`: IOS XE `show platform sudi certificate sign [nonce N]`.

The device prints root, sub-CA and device (SUDI) certificates as PEM, then
`Signature version: V`, `Signature:` and 512 upper-case hex digits: RSA PKCS#1 v1.5 SHA-256
by the SUDI key over

    [u64 BE nonce, only if one was sent] || u32 BE V || DER(root) || DER(sub-CA) || DER(device)

Also profile `xe-sudi-certificate`: a bare SUDI certificate (PEM), checked against the pinned
sub-CA and root only (nothing is signed, so it proves no freshness and is only an identity).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509

from ..findings import FindingId, Severity
from ..policy import Policy
from ._common import (
    MAX_U32,
    Anchors,
    PemBlock,
    ProfileVerdict,
    certificate_summary,
    check_nonce_given,
    check_sudi_chain,
    decode_text,
    parse_hex_signature,
    pem_blocks,
    rsa_sha256_ok,
    xe_header,
)

__all__ = ["SudiOutput", "parse_sudi_output", "verify_sudi_certificate", "verify_sudi_sign"]

PROFILE = "xe-sudi-sign"
PROFILE_CERTIFICATE = "xe-sudi-certificate"
DEVICE_ERROR = "% Error retrieving SUDI certificate"
_VERSION = re.compile(r"Signature version:\s*(\d{1,10})\s*")
_NONCE_ECHO = re.compile(r"\bsign\s+nonce\s+\d+")  # only to explain a failure, never as the expected value


@dataclass
class SudiOutput:
    """The parts of a SUDI sign output (certificates as printed, signature, version)."""

    blocks: list[PemBlock]
    version: int | None
    signature: bytes | None
    echoes_nonce: bool


def parse_sudi_output(text: str, verdict: ProfileVerdict) -> SudiOutput | None:
    """Parse the printed output; None (with findings) when it cannot be verified at all."""
    lines = text.split("\n")
    if any(line.strip() == DEVICE_ERROR for line in lines):
        verdict.add(FindingId.OUTPUT_DEVICE_ERROR, Severity.ERROR,
                    "the device could not read its SUDI certificate; there is nothing to verify",
                    "three certificates and a signature", DEVICE_ERROR)
    blocks = pem_blocks(lines, verdict)
    if blocks is None:
        return None
    if len(blocks) != 3:
        verdict.add(FindingId.CHAIN_NO_CERTIFICATE if not blocks else FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR,
                    f"expected the root, sub-CA and device certificates, found {len(blocks)} certificate(s)",
                    "3 certificates", str(len(blocks)))
        return None
    echoes_nonce = any(_NONCE_ECHO.search(line) for line in lines[: blocks[0].first_line])
    tail = [line.strip() for line in lines[blocks[-1].last_line + 1:]]
    for before, after in zip(blocks, blocks[1:]):
        stray = [line for line in lines[before.last_line + 1: after.first_line] if line.strip()]
        if stray:  # the certificates are signed back to back; nothing may sit between them
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, "unexpected text between the certificates",
                        "certificates back to back", stray[0][:80])
            return None
    while tail and not tail[0]:
        tail.pop(0)
    if not tail or not tail[0].startswith("Signature"):
        verdict.add(FindingId.OUTPUT_UNSIGNED, Severity.ERROR,
                    "the output carries no signature, so it proves nothing; ask the device with "
                    "'show platform sudi certificate sign nonce N'",
                    "Signature version: / Signature: lines", "none")
        return SudiOutput(blocks, None, None, echoes_nonce)
    verdict.signed = True
    match = _VERSION.fullmatch(tail[0])
    if match is None or int(match.group(1)) > MAX_U32:
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, "the signature version line is malformed",
                    "Signature version: <u32>", tail[0][:80])
        return None
    if len(tail) < 3 or tail[1] != "Signature:":
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR,
                    "expected 'Signature:' and one hex line after the signature version",
                    "Signature: then 512 hex digits", " | ".join(tail[1:3])[:80] or "end of output")
        return None
    signature = parse_hex_signature(tail[2])
    if signature is None:
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, "the signature is not 512 upper-case hex digits",
                    "512 hex digits [0-9A-F]", f"{len(tail[2])} characters")
        return None
    return SudiOutput(blocks, int(match.group(1)), signature, echoes_nonce)


def verify_sudi_sign(
    raw: bytes, *, anchors: Anchors, nonce: int | None, when: dt.datetime, policy: Policy,
) -> ProfileVerdict:
    """Verify a SUDI sign output: signature by the printed device certificate over the header
    and the three DERs, chain to the pinned sub-CA and root, nonce."""
    verdict = ProfileVerdict(profile=PROFILE, verified_at=when)
    text = decode_text(raw, verdict)
    if text is None:
        return verdict
    parsed = parse_sudi_output(text, verdict)
    if parsed is None:
        return verdict
    root, sub_ca, device = (block.certificate for block in parsed.blocks)
    chain_ok = check_sudi_chain(verdict, device, anchors, when, printed_root=root, printed_sub_ca=sub_ca)
    if parsed.signature is None or parsed.version is None:
        return verdict
    if parsed.version != 1:
        verdict.add(FindingId.OUTPUT_UNSUPPORTED_VERSION, Severity.ERROR,
                    "this signature version is not known; the signed layout could differ", "1",
                    str(parsed.version))
        return verdict
    signed = xe_header(nonce, parsed.version) + b"".join(block.der for block in parsed.blocks)
    verdict.signature_algorithm = "RSASSA-PKCS1-v1_5 SHA-256"
    ok, problem = rsa_sha256_ok(device, parsed.signature, signed)
    if not ok:
        verdict.add(FindingId.SIGNATURE_INVALID if problem is None else FindingId.SIGNATURE_UNSUPPORTED_KEY,
                    Severity.ERROR, problem or _signature_hint(nonce, parsed.echoes_nonce),
                    "a signature by the printed device certificate", "a signature that does not verify")
    else:
        verdict.authenticated = {"device_certificate": certificate_summary(device)}
        if nonce is not None:
            verdict.nonce = nonce.to_bytes(8, "big")
            verdict.authenticated["nonce"] = str(nonce)
    check_nonce_given(verdict, nonce, policy)
    if ok and chain_ok:
        verdict.authenticated["chain"] = [certificate_summary(root), certificate_summary(sub_ca)]
    return verdict


def _signature_hint(nonce: int | None, echoes_nonce: bool) -> str:
    """Why a signature may not verify (the echoed command is used only for this hint)."""
    base = "the signature does not verify: the signed bytes were changed, or signed by another key"
    if nonce is None and echoes_nonce:
        return base + "; the echoed command shows a nonce, but none was given: pass the nonce you sent"
    if nonce is not None and not echoes_nonce:
        return base + f", or the device was not asked with nonce {nonce}"
    return base + f" (checked with nonce {nonce})" if nonce is not None else base


def verify_sudi_certificate(raw: bytes, *, anchors: Anchors, when: dt.datetime) -> ProfileVerdict:
    """A bare SUDI certificate (PEM): issued by a pinned sub-CA under a pinned root, valid at
    `when`. Not signed output: proves an identity, not freshness (a warning says so)."""
    verdict = ProfileVerdict(profile=PROFILE_CERTIFICATE, verified_at=when)
    text = decode_text(raw, verdict)
    if text is None:
        return verdict
    blocks = pem_blocks(text.split("\n"), verdict)
    if blocks is None:
        return verdict
    if len(blocks) != 1:
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, "expected exactly one SUDI certificate",
                    "1 certificate", str(len(blocks)))
        return verdict
    leaf: x509.Certificate = blocks[0].certificate
    verdict.signed = True  # a certificate is signed by its CA; there is no device signature
    if check_sudi_chain(verdict, leaf, anchors, when):
        verdict.authenticated = {"device_certificate": certificate_summary(leaf)}
    verdict.add(FindingId.NONCE_NOT_CHECKED, Severity.INFO,
                "a certificate alone proves who the device is, not that it answered now", None, None)
    return verdict
