"""Profile `xr-attest-certificate`: IOS XR `show platform security attest certificate <id>
location all nonce <hex> json` (the `get-certificate` RPC of Cisco-IOS-XR-remote-attestation-act).

One entry per node: `node-location`, base64 `nonce`, `signature_version`, base64 `signature`
and the certificates as base64 DER. Signed bytes (RSA PKCS#1 v1.5 SHA-256 by the signing
certificate, the one non-CA certificate listed):

    nonce bytes || u32 BE signature_version || DER(cert_1) || ... || DER(cert_n)   (as listed)

No public capture exists; the layout follows the published YANG, and certificates are accepted
as a list of base64 strings or of `{"value": ...}` objects, directly or under `certificate`.
The chain is checked as the XE SUDI chain: signing certificate -> pinned sub-CA -> pinned root.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
from collections.abc import Iterator
from typing import Any

from cryptography import x509

from .._strictjson import JSONProblem, loads_strict
from ..chain import fingerprint, is_ca, load_der_certificate
from ..errors import SignatureError
from ..findings import FindingId, Severity
from ..policy import Policy
from ..signature import KeyPolicyError, algorithm_name, check_key_policy, verify_signature
from ..verify import validate_or_report
from ._common import (
    MAX_U32,
    Anchors,
    ProfileVerdict,
    certificate_summary,
    check_nonce_given,
    check_sudi_chain,
    decode_text,
)

__all__ = ["verify_attest_certificate"]

PROFILE = "xr-attest-certificate"
MAX_NODES = 1024  # a large XR chassis has tens of nodes


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if "node-location" in value:
            yield value
            return
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"expected a base64 string, found {type(value).__name__}")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64 ({exc})") from None


def _certificate_values(node: dict[str, Any]) -> list[Any]:
    holder = node.get("certificates", node.get("certificate"))
    if isinstance(holder, dict):
        holder = holder.get("certificate", holder.get("certificates"))
    values = []
    for item in holder if isinstance(holder, list) else []:
        values.append(item.get("value") if isinstance(item, dict) else item)
    return values


def verify_attest_certificate(
    raw: bytes, *, anchors: Anchors, nonce: bytes | None, when: dt.datetime, policy: Policy,
) -> ProfileVerdict:
    """Verify every node's signature, chain and nonce; trusted only if all nodes verify."""
    verdict = ProfileVerdict(profile=PROFILE, verified_at=when)
    text = decode_text(raw, verdict)
    if text is None:
        return verdict
    start = text.find("{")  # an optional timestamp line may come first, as in XR show output
    try:  # strict: duplicate keys, NaN and trailing data are refused, as for the envelope
        document = loads_strict(text[start:], max_depth=policy.max_json_depth) if start >= 0 else None
    except JSONProblem as problem:
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"the output is not usable JSON: {problem.message}",
                    problem.expected or "JSON", problem.found)
        return verdict
    nodes = list(_nodes(document))
    if not nodes or len(nodes) > MAX_NODES:
        verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR, "expected node entries with 'node-location'",
                    f"1 to {MAX_NODES} nodes", str(len(nodes)))
        return verdict
    verdict.signed = True
    results = []
    for node in nodes:
        result = _verify_node(verdict, node, anchors, nonce, when, policy)
        if result is not None:
            results.append(result)
    if nonce is None:  # the signature was checked with the printed nonce; freshness is unknown
        check_nonce_given(verdict, None, policy)
    else:
        verdict.nonce = nonce
    if len(results) == len(nodes) and not verdict.errors:
        verdict.authenticated = {"nodes": results}
    return verdict


def _verify_node(verdict: ProfileVerdict, node: dict[str, Any], anchors: Anchors, nonce: bytes | None,
                 when: dt.datetime, policy: Policy) -> dict[str, Any] | None:
    where = str(node.get("node-location"))
    if "signature" not in node:
        verdict.add(FindingId.OUTPUT_UNSIGNED, Severity.ERROR, f"node {where} carries no signature, so it proves nothing",
                    "a signature", "none")
        return None
    try:
        printed_nonce = _b64(node.get("nonce"))
        signature = _b64(node.get("signature"))
        version = node.get("signature_version")
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= MAX_U32:
            raise ValueError(f"signature_version must be a 32-bit integer, found {version!r}")
        ders = [_b64(value) for value in _certificate_values(node)]
        certs = [load_der_certificate(der) for der in ders]
    except ValueError as exc:  # load_der_certificate: every malformed certificate is one
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"node {where}: {exc}",
                    "base64 nonce/signature/certificates and an integer signature_version", str(exc)[:80])
        return None
    if version != 1:
        verdict.add(FindingId.OUTPUT_UNSUPPORTED_VERSION, Severity.ERROR, f"node {where}: unknown signature version",
                    "1", str(version))
        return None
    if nonce is not None and not hmac.compare_digest(printed_nonce, nonce):
        verdict.add(FindingId.NONCE_MISMATCH, Severity.ERROR, f"node {where} answers another nonce",
                    nonce.hex(), printed_nonce.hex())
    leaves = [c for c in certs if not is_ca(c)]
    if len(leaves) != 1:
        verdict.add(FindingId.CHAIN_NO_CERTIFICATE, Severity.ERROR,
                    f"node {where}: expected one signing (non-CA) certificate", "1", str(len(leaves)))
        return None
    leaf = leaves[0]
    cas = [c for c in certs if c is not leaf]
    roots = [c for c in cas if c.issuer == c.subject]
    subs = [c for c in cas if c.issuer != c.subject]
    if len(roots) == 1 and len(subs) == 1:  # a SUDI-style listing: root, sub-CA, leaf
        chain_ok = check_sudi_chain(verdict, leaf, anchors, when, printed_root=roots[0], printed_sub_ca=subs[0])
    else:  # the system trustpoint's two-tier chain, validated as the dossier envelope's
        chain_ok = _two_tier(verdict, leaf, roots, subs, anchors, when, policy, where)
    signed = (nonce if nonce is not None else printed_nonce) + version.to_bytes(4, "big") + b"".join(ders)
    key = leaf.public_key()
    verdict.signature_algorithm = algorithm_name(key)
    try:
        check_key_policy(key, policy)
        verify_signature(key, signature, signed)
    except KeyPolicyError as exc:
        verdict.add(exc.finding_id, Severity.ERROR, f"node {where}: {exc}", exc.expected, exc.found)
        return None
    except SignatureError as exc:
        verdict.add(FindingId.SIGNATURE_INVALID, Severity.ERROR,
                    f"node {where}: {exc}: the nonce, certificates or signature were changed",
                    "a signature by the signing certificate", "a signature that does not verify")
        return None
    return {"node": where, "certificate": certificate_summary(leaf)} if chain_ok else None


def _two_tier(verdict: ProfileVerdict, leaf: x509.Certificate, roots: list[x509.Certificate],
              subs: list[x509.Certificate], anchors: Anchors, when: dt.datetime, policy: Policy,
              where: str) -> bool:
    verdict.leaf = leaf
    trusted = list(anchors.certificates)
    for root in roots:
        if anchors.by_fingerprint(root) is None:
            verdict.add(FindingId.CHAIN_ROOT_NOT_ENROLLED, Severity.ERROR,
                        f"node {where}: the listed root is not an enrolled/pinned anchor",
                        " or ".join(sorted(fingerprint(c) for c in trusted)) or "an anchor", fingerprint(root))
            return False
    chain = validate_or_report(verdict, leaf, trusted, subs, when, policy,
                               expected="a chain to an anchor", prefix=f"node {where}: ")
    if chain is None:
        return False
    verdict.root = chain[-1]
    return True
