"""Shared parts of the vendor profiles: the verdict, anchors, the XE signature header, PCR
folding and the narrow SUDI chain check.

Why a narrow chain check and not `chain.validate_chain`: Cisco SUDI leaves carry no
AuthorityKeyIdentifier, so pyca's `PolicyBuilder` refuses every SUDI chain, and the ACT2 path
(Root CA 2048, ACT2 SUDI CA) is signed with SHA-1 under an e=3 root key, which
`verify_directly_issued_by` refuses. The check here pins the root and the sub-CA by exact DER
(the caller supplies both), verifies the leaf's own signature (SHA-256 or stronger) under the
sub-CA, and checks names, CA flags and validity at the chosen time. SHA-1 and e=3 are accepted
only on the pinned certificates, and the verdict says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from ..chain import fingerprint, format_name, load_der_certificate
from ..errors import VerifierError
from ..findings import FindingId, Severity
from ..nonce import XE_NONCE_MAX
from ..truststore import TrustStore
from ..verify import Verdict, report_nonce_not_given

__all__ = [
    "Anchors",
    "ProfileError",
    "ProfileVerdict",
    "Measurements",
    "PemBlock",
    "certificate_summary",
    "check_ca_path",
    "check_device_identity",
    "check_nonce_given",
    "decode_base64_der",
    "pem_blocks",
    "check_sudi_chain",
    "decode_text",
    "extend",
    "fold",
    "load_anchors",
    "nonce_to_int",
    "parse_hex_signature",
    "rsa_sha256_ok",
    "sudi_identity",
    "xe_header",
]

XE_SIGNATURE_BYTES = 256  # RSA-2048 SUDI keys: the device prints 512 upper-case hex digits
MAX_U64 = XE_NONCE_MAX  # XE nonces: decimal, signed as 8 bytes big-endian (verifier.nonce)
MAX_U32 = 2**32 - 1  # the signature version is signed as 4 bytes
MAX_OUTPUT_BYTES = 16 * 1024 * 1024  # a v2 NETCONF reply with many locations is ~100 kB
MIN_RSA_BITS, MAX_RSA_BITS = 2048, 4096  # device keys; the KGV signer is RSA-4096
_STRONG_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
_HEX_SIGNATURE = re.compile(r"[0-9A-F]+")


class ProfileError(VerifierError):
    """The caller asked for something a profile cannot do (unknown profile, bad nonce, bad file)."""


@dataclass
class ProfileVerdict(Verdict):
    """A `Verdict` for vendor output: `profile` says which profile was applied.

    `profile_data` is what the output says, split by trust: `authenticated` values are bound
    by the verified signature (directly, or by recomputed PCRs), `unauthenticated` ones are
    printed labels nothing signs (`Platform`, `* Version`). `signed` is False for output that
    carries no signature (never trusted). `measurements` feeds `kgv.appraise_integrity`.
    """

    signed: bool = False
    authenticated: dict[str, Any] = field(default_factory=dict)
    unauthenticated: dict[str, Any] = field(default_factory=dict)
    measurements: list[Any] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        result = super().to_json()
        result["profile_data"] = {
            "signed": self.signed,
            "authenticated": self.authenticated,
            "unauthenticated": self.unauthenticated,
        }
        return result


@dataclass(frozen=True)
class Anchors:
    """CA certificates the caller pinned (roots and sub-CAs), by exact DER.

    With `check_identity` (IOS XE outputs, whose devices all chain to the same vendor CA), the
    chain check also compares the device certificate with `pinned_leaf`, the SUDI certificate
    pinned for `device` at enrollment (`check_device_identity`).
    """

    certificates: tuple[x509.Certificate, ...]
    check_identity: bool = False
    device: str | None = None
    pinned_leaf: x509.Certificate | None = None
    #: Whether the anchors come from a trust store (which can pin identities) or were given by hand.
    from_trust_store: bool = False
    #: IOS XR TPM: the attestation-key certificates pinned for `device`, (node location,
    #: certificate) pairs; None with anchors given by hand (nothing pinned to compare with).
    attestation_keys: tuple[tuple[str, x509.Certificate], ...] | None = None

    def by_fingerprint(self, cert: x509.Certificate) -> x509.Certificate | None:
        wanted = fingerprint(cert)
        return next((c for c in self.certificates if fingerprint(c) == wanted), None)

    def by_subject(self, name: x509.Name) -> list[x509.Certificate]:
        return [c for c in self.certificates if c.subject == name]

    def __bool__(self) -> bool:
        return bool(self.certificates)


def load_anchors(
    roots: Sequence[x509.Certificate], trust_store: TrustStore | None, device: str | None,
    when: dt.datetime,
) -> Anchors:
    """The caller's anchors: `roots` (roots and sub-CAs), or the trust store's entries for
    `device` (its roots in their windows, its intermediates and, if enrolled so, the trust
    pool), or the whole trust pool when no device is named."""
    if trust_store is not None and roots:
        raise ProfileError("pass trust_store= or roots=, not both")
    if trust_store is None:
        if not roots:
            raise ProfileError(
                "no trust anchor configured: pass roots= (e.g. Cisco Root CA 2048 and ACT2 SUDI CA) "
                "or trust_store=; an empty trust is not 'trust everything'"
            )
        return Anchors(tuple(roots))
    if device is not None:
        if device not in trust_store:  # no anchors: every chain check then reports trust.no_roots
            return Anchors(())
        certs = list(trust_store.roots_for(device, when)) + list(trust_store.intermediates_for(device))
    else:
        certs = [entry.certificate for entry in trust_store.pool_entries() if entry.in_window(when)]
    return Anchors(tuple(certs))


def decode_text(raw: bytes, verdict: Verdict) -> str | None:
    """UTF-8 text with CRLF/CR line ends made LF; None (and a finding) when it is not text."""
    if len(raw) > MAX_OUTPUT_BYTES:
        verdict.add(FindingId.INPUT_TOO_LARGE, Severity.ERROR, "the output is larger than any device prints",
                    f"at most {MAX_OUTPUT_BYTES} bytes", f"{len(raw)} bytes")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        verdict.add(FindingId.INPUT_NOT_UTF8, Severity.ERROR, f"the output is not UTF-8 text ({exc.reason})",
                    "UTF-8 text", f"byte {exc.start}")
        return None
    if not text.strip():
        verdict.add(FindingId.INPUT_EMPTY, Severity.ERROR, "the output is empty", "device output", "nothing")
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def nonce_to_int(nonce: int | bytes | None) -> int | None:
    """The caller's XE nonce as an integer: an int, or bytes read big-endian (at most 8).

    Raises ProfileError when it does not fit the 8-byte field the device signs.
    """
    if nonce is None:
        return None
    if isinstance(nonce, bool):
        raise ProfileError(f"expected an XE nonce (integer 0..{MAX_U64}), found a bool")
    if isinstance(nonce, bytes | bytearray):
        if not 1 <= len(nonce) <= 8:
            raise ProfileError(
                f"an IOS XE nonce is a 64-bit integer (1 to 8 bytes big-endian); found {len(nonce)} bytes"
            )
        return int.from_bytes(nonce, "big")
    if not isinstance(nonce, int) or not 0 <= nonce <= MAX_U64:
        raise ProfileError(f"an IOS XE nonce is a decimal 64-bit integer 0..{MAX_U64}; found {nonce!r}")
    return nonce


def xe_header(nonce: int | None, version: int) -> bytes:
    """The signed header: u64 BE nonce (only when a nonce was sent) then u32 BE version."""
    head = b"" if nonce is None else nonce.to_bytes(8, "big")
    return head + version.to_bytes(4, "big")


def parse_hex_signature(text: str) -> bytes | None:
    """The 512 upper-case hex digits of an XE signature as bytes, or None if malformed."""
    value = text.strip()
    if len(value) != 2 * XE_SIGNATURE_BYTES or not _HEX_SIGNATURE.fullmatch(value):
        return None
    return bytes.fromhex(value)


def extend(pcr: bytes, hash_hex: str) -> bytes:
    """TPM-style extend as IOS XE does it: SHA-256(pcr || SHA-256(hexdecode(m)))."""
    return hashlib.sha256(pcr + hashlib.sha256(bytes.fromhex(hash_hex)).digest()).digest()


def fold(hash_hexes: Iterable[str]) -> bytes:
    """Extend a zero PCR with each measurement in order."""
    pcr = bytes(32)
    for value in hash_hexes:
        pcr = extend(pcr, value)
    return pcr


def rsa_sha256_ok(cert: x509.Certificate, signature: bytes, data: bytes) -> tuple[bool, str | None]:
    """Whether `signature` is RSA PKCS#1 v1.5 SHA-256 over `data` by the certificate's key.

    Returns (ok, problem): problem names a key the profile does not accept.
    """
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        return False, f"the signing certificate's key cannot be loaded ({exc})"
    if not isinstance(key, rsa.RSAPublicKey):
        return False, f"the signing key is {type(key).__name__.lstrip('_')}; these outputs are RSA-signed"
    if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
        return False, f"the signing key is RSA-{key.key_size}; expected {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False, None
    return True, None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate, *, allow_legacy: bool) -> str | None:
    """None if `issuer`'s key made `cert`'s signature, else why not. SHA-1 only if allow_legacy."""
    try:
        algorithm = cert.signature_hash_algorithm
        key = issuer.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        return f"unsupported signature or key ({exc})"
    if not isinstance(algorithm, _STRONG_HASHES) and not (allow_legacy and isinstance(algorithm, hashes.SHA1)):
        return f"signed with {getattr(algorithm, 'name', 'an unknown hash')}, which is refused here"
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return f"issuer key type {type(key).__name__} is not supported here"
    except InvalidSignature:
        return "the signature does not verify under the issuer's key"
    except UnsupportedAlgorithm as exc:
        return f"unsupported signature ({exc})"
    return None


def _is_ca(cert: x509.Certificate) -> bool | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return None


def _legacy(cert: x509.Certificate) -> list[str]:
    notes = []
    if isinstance(cert.signature_hash_algorithm, hashes.SHA1):
        notes.append(f"{format_name(cert.subject)} is signed with SHA-1")
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.public_numbers().e < 65537:
        notes.append(f"{format_name(cert.subject)} has RSA exponent e={key.public_numbers().e}")
    return notes


def _check_time(verdict: Verdict, cert: x509.Certificate, role: str, when: dt.datetime,
                expired_id: str, early_id: str) -> bool:
    if when > cert.not_valid_after_utc:
        verdict.add(expired_id, Severity.ERROR,
                    f"the {role} certificate expired at {cert.not_valid_after_utc.isoformat()}; judge at a "
                    "time inside its window (--at) to check what it proved then",
                    f"valid at {when.isoformat()}", f"not after {cert.not_valid_after_utc.isoformat()}")
        return False
    if when < cert.not_valid_before_utc:
        verdict.add(early_id, Severity.ERROR,
                    f"the {role} certificate is not valid before {cert.not_valid_before_utc.isoformat()}",
                    f"valid at {when.isoformat()}", f"not before {cert.not_valid_before_utc.isoformat()}")
        return False
    return True


def check_sudi_chain(
    verdict: Verdict,
    leaf: x509.Certificate,
    anchors: Anchors,
    when: dt.datetime,
    *,
    printed_root: x509.Certificate | None = None,
    printed_sub_ca: x509.Certificate | None = None,
) -> bool:
    """Check device -> pinned sub-CA -> pinned root; add findings; True if the chain holds.

    With printed certificates (the SUDI output prints root and sub-CA), each must be
    byte-equal to a pinned anchor. Without them (a bare leaf), the sub-CA is the pinned anchor
    named by the leaf's issuer and the root the pinned anchor named by the sub-CA's issuer.
    """
    verdict.leaf = leaf
    if not anchors:
        verdict.add(FindingId.TRUST_NO_ROOTS, Severity.ERROR,
                    "no anchor: none configured, the device is not enrolled, or no root is inside its "
                    "trust window",
                    "a pinned SUDI root and sub-CA", "none")
        return False
    if printed_sub_ca is not None:
        sub_ca = anchors.by_fingerprint(printed_sub_ca)
        if sub_ca is None:
            verdict.add(FindingId.CHAIN_SUBCA_NOT_PINNED, Severity.ERROR,
                        f"the printed sub-CA ({format_name(printed_sub_ca.subject)}) is not one of the "
                        "pinned anchors; pin the device's SUDI sub-CA with its root (--root, or import "
                        "Cisco's bundle into the trust store)",
                        "a pinned sub-CA", fingerprint(printed_sub_ca))
            return False
    else:
        candidates = [c for c in anchors.by_subject(leaf.issuer) if _is_ca(c)]
        sub_ca = next((c for c in candidates if _signed_by(leaf, c, allow_legacy=False) is None), None)
        if sub_ca is None:
            verdict.add(FindingId.CHAIN_SUBCA_NOT_PINNED, Severity.ERROR,
                        f"no pinned sub-CA issued this certificate (issuer {format_name(leaf.issuer)})",
                        "a pinned sub-CA whose key signed the device certificate",
                        f"{len(candidates)} pinned CA(s) with that name")
            return False
    if printed_root is not None:
        root = anchors.by_fingerprint(printed_root)
        if root is None:
            verdict.add(FindingId.CHAIN_ROOT_NOT_ENROLLED, Severity.ERROR,
                        f"the printed root ({format_name(printed_root.subject)}) is not a pinned anchor",
                        "a pinned root", fingerprint(printed_root))
            return False
    else:
        roots = anchors.by_subject(sub_ca.issuer)
        root = next((r for r in roots if _signed_by(sub_ca, r, allow_legacy=True) is None), None)
        if root is None:
            verdict.add(FindingId.CHAIN_ROOT_NOT_ENROLLED, Severity.ERROR,
                        f"no pinned root issued the sub-CA (issuer {format_name(sub_ca.issuer)})",
                        "a pinned root", f"{len(roots)} pinned certificate(s) with that name")
            return False
    verdict.root = root
    ok = True
    if sub_ca.issuer != root.subject or _is_ca(root) is False:
        verdict.add(FindingId.CHAIN_NOT_ISSUED_BY_ROOT, Severity.ERROR,
                    "the sub-CA is not issued by the root printed with it",
                    format_name(root.subject), format_name(sub_ca.issuer))
        return False
    problem = _signed_by(sub_ca, root, allow_legacy=True)  # both pinned by DER: SHA-1 tolerated
    if problem:
        verdict.add(FindingId.CHAIN_NOT_ISSUED_BY_ROOT, Severity.ERROR, f"sub-CA under root: {problem}",
                    "a sub-CA signed by the root", problem)
        ok = False
    if _is_ca(sub_ca) is not True:
        verdict.add(FindingId.CHAIN_INVALID, Severity.ERROR, "the pinned sub-CA is not a CA",
                    "BasicConstraints CA=true", "not a CA")
        ok = False
    if leaf.issuer != sub_ca.subject:
        verdict.add(FindingId.CHAIN_LEAF_NOT_ISSUED_BY_SUBCA, Severity.ERROR,
                    "the device certificate's issuer is not the sub-CA",
                    format_name(sub_ca.subject), format_name(leaf.issuer))
        return False
    problem = _signed_by(leaf, sub_ca, allow_legacy=False)  # the leaf is not pinned: no SHA-1
    if problem:
        verdict.add(FindingId.CHAIN_LEAF_NOT_ISSUED_BY_SUBCA, Severity.ERROR,
                    f"the device certificate does not verify under the sub-CA: {problem}",
                    "a device certificate signed by the pinned sub-CA", problem)
        ok = False
    if _is_ca(leaf):
        verdict.add(FindingId.CHAIN_LEAF_IS_CA, Severity.ERROR, "the device certificate is a CA certificate",
                    "BasicConstraints CA=false", "CA=true")
        ok = False
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            verdict.add(FindingId.CHAIN_LEAF_KEY_USAGE, Severity.ERROR,
                        "the device certificate's keyUsage does not allow digitalSignature",
                        "digitalSignature", "not set")
            ok = False
    except x509.ExtensionNotFound:
        pass
    ok &= _check_time(verdict, leaf, "device (SUDI)", when, FindingId.CHAIN_LEAF_EXPIRED,
                      FindingId.CHAIN_LEAF_NOT_YET_VALID)
    ok &= _check_time(verdict, sub_ca, "sub-CA", when, FindingId.CHAIN_SUBCA_EXPIRED, FindingId.CHAIN_SUBCA_EXPIRED)
    ok &= _check_time(verdict, root, "root", when, FindingId.CHAIN_ROOT_EXPIRED, FindingId.CHAIN_ROOT_NOT_YET_VALID)
    legacy = _legacy(root) + _legacy(sub_ca)
    if ok and legacy:
        verdict.add(FindingId.CHAIN_LEGACY_PINNED_ANCHOR, Severity.WARNING,
                    "legacy algorithms accepted only because the caller pinned these anchors: "
                    + "; ".join(legacy), "SHA-256 and e=65537", "; ".join(legacy))
    if ok and anchors.check_identity:
        ok = check_device_identity(verdict, leaf, anchors)
    return ok


def sudi_identity(cert: x509.Certificate) -> str:
    """The device a SUDI certificate names: its subject's serialNumber ("PID:ISR4321/K9
    SN:FDO21520TGH"), signed by the vendor's sub-CA; the whole subject when it has none."""
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if values and isinstance(values[0].value, str):
        return values[0].value
    return cert.subject.rfc4514_string()


def check_device_identity(verdict: Verdict, leaf: x509.Certificate, anchors: Anchors) -> bool:
    """Whether the (chain-verified) device certificate is the device's pinned SUDI identity.

    Every IOS XE device chains to the same vendor root and sub-CA, so without this check an
    output relayed from device B verifies as device A's. The same certificate, or a reissued
    one naming the same PID and serial number (info: rotated), is the device; anything else is
    an error, and so is a device with nothing pinned. Against a trust store a device must be
    named (an error otherwise: a trust store speaks for its devices, not for "some device").
    Only with anchors given by hand and no device named is there nothing to compare: a warning
    says the output proves only "some device under these anchors".
    """
    identity = sudi_identity(leaf)
    if anchors.device is None:
        hand = not anchors.from_trust_store
        verdict.add(FindingId.IDENTITY_NOT_CHECKED, Severity.WARNING if hand else Severity.ERROR,
                    ("no enrolled device to compare with, so this proves only that a device certified by "
                     f"the pinned anchors ({identity}) signed it, not that it is the device you meant; verify "
                     "against a trust store with the device named (--trust-store and --device, or the "
                     "collector's metadata) to compare it with its pinned identity") if hand else
                    (f"no device named, so the output ({identity}) cannot be compared with a pinned identity: "
                     "every IOS XE device chains to the same vendor CA; name the device (--device, or the "
                     "collector's metadata)"),
                    "a device enrolled in a trust store", "none")
        return hand
    pinned = anchors.pinned_leaf
    if pinned is None and not anchors.from_trust_store:
        verdict.add(FindingId.IDENTITY_NOT_PINNED, Severity.ERROR,
                    f"device {anchors.device!r} was named, but anchors given by hand pin no identity to compare "
                    f"the output ({identity}) with; verify against the trust store it is enrolled in "
                    "(--trust-store) instead of --root", f"a SUDI certificate pinned for {anchors.device}",
                    f"none (the output names {identity})")
        return False
    if pinned is None:
        verdict.add(FindingId.IDENTITY_NOT_PINNED, Severity.ERROR,
                    f"device {anchors.device!r} has no pinned SUDI identity, so its outputs would verify "
                    "coming from any device under the same vendor CA; pin it with `dossier enroll -i "
                    f"INVENTORY --device {anchors.device}` (shows the device's SUDI certificate to confirm)",
                    f"a SUDI certificate pinned for {anchors.device}", f"none (the output names {identity})")
        return False
    if fingerprint(pinned) == fingerprint(leaf):
        verdict.device = anchors.device
        return True
    expected = sudi_identity(pinned)
    if identity == expected:
        verdict.add(FindingId.CHAIN_LEAF_ROTATED, Severity.INFO,
                    f"the device presents a reissued SUDI certificate for the pinned identity {expected}",
                    f"pinned certificate SHA-256 {fingerprint(pinned)}", f"SHA-256 {fingerprint(leaf)}")
        verdict.device = anchors.device
        return True
    verdict.add(FindingId.IDENTITY_MISMATCH, Severity.ERROR,
                f"the output is signed by another device than {anchors.device!r}: its SUDI certificate names "
                f"{identity}, but {anchors.device!r} is pinned to {expected} (a relay by a compromised device, "
                "or an inventory entry that points at the wrong device)", expected, identity)
    return False


def check_ca_path(
    verdict: Verdict,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Anchors,
    when: dt.datetime,
    *,
    max_depth: int = 4,  # KGV signer -> Innerspace -> Root CA M2 is 2 steps; more is not Cisco's PKI
) -> bool:
    """A path leaf -> intermediates -> a pinned anchor, all SHA-256+ signatures, CA flags and
    validity at `when` (used for the KGV signer). Adds findings; True if a path holds."""
    current = leaf
    pool = list(intermediates)
    for _ in range(max_depth + 1):
        if anchors.by_fingerprint(current) is not None and current is not leaf:
            verdict.root = current
            return _check_time(verdict, current, "root", when, FindingId.CHAIN_ROOT_EXPIRED,
                               FindingId.CHAIN_ROOT_NOT_YET_VALID)
        if not _check_time(verdict, current, "leaf" if current is leaf else "intermediate", when,
                           FindingId.CHAIN_LEAF_EXPIRED if current is leaf else FindingId.CHAIN_SUBCA_EXPIRED,
                           FindingId.CHAIN_LEAF_NOT_YET_VALID if current is leaf else FindingId.CHAIN_SUBCA_EXPIRED):
            return False
        issuers = [c for c in list(anchors.certificates) + pool if c.subject == current.issuer and _is_ca(c)]
        nxt = next((c for c in issuers if _signed_by(current, c, allow_legacy=False) is None), None)
        if nxt is None:
            verdict.add(FindingId.CHAIN_INVALID, Severity.ERROR,
                        f"no pinned anchor or given intermediate issued {format_name(current.subject)}",
                        "a chain to a pinned anchor", f"issuer {format_name(current.issuer)}")
            return False
        pool = [c for c in pool if c is not nxt]
        current = nxt
    verdict.add(FindingId.CHAIN_INVALID, Severity.ERROR, "the chain is longer than any Cisco chain",
                f"at most {max_depth} intermediates", "more")
    return False


_PEM_BEGIN, _PEM_END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"


@dataclass
class PemBlock:
    """One printed PEM certificate: its DER exactly as printed, and where it was."""

    der: bytes
    certificate: x509.Certificate
    first_line: int
    last_line: int


def decode_base64_der(body: str) -> bytes:
    """Strict base64 (canonical alphabet and padding; whitespace between lines allowed).

    Raises ValueError when the text is not base64.
    """
    import base64
    import binascii

    compact = "".join(body.split())
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64 ({exc})") from None


def pem_blocks(lines: Sequence[str], verdict: Verdict) -> list[PemBlock] | None:
    """Every PEM certificate in `lines` (CR already removed). None (with a finding) if one is
    unterminated, not base64 or not a certificate: a damaged certificate is never skipped."""
    blocks: list[PemBlock] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != _PEM_BEGIN:
            index += 1
            continue
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != _PEM_END:
            body.append(lines[index])
            index += 1
        if index >= len(lines):
            verdict.add(FindingId.OUTPUT_BAD_CERTIFICATE, Severity.ERROR,
                        f"the certificate starting on line {start + 1} has no END line (truncated output?)",
                        _PEM_END, "end of output")
            return None
        try:
            der = decode_base64_der("\n".join(body))
            cert = load_der_certificate(der)
        except ValueError as exc:  # load_der_certificate: every malformed certificate is one
            verdict.add(FindingId.OUTPUT_BAD_CERTIFICATE, Severity.ERROR,
                        f"the certificate on lines {start + 1}-{index + 1} cannot be read ({exc})",
                        "a base64 DER X.509 certificate", str(exc)[:120])
            return None
        blocks.append(PemBlock(der, cert, start, index))
        index += 1
    return blocks


def check_nonce_given(verdict: Verdict, nonce: int | None, policy: Any) -> None:
    """No expected nonce: freshness is unknown (an error unless the policy's insecure switch)."""
    if nonce is None:
        report_nonce_not_given(verdict, policy, what="output", sent="the nonce that was sent", how="--nonce")


def certificate_summary(cert: x509.Certificate) -> dict[str, str]:
    """What a verified certificate says about the device (its subject is signed by the CA)."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "serial": format(cert.serial_number, "X"),
        "sha256": fingerprint(cert),
    }


@dataclass(frozen=True)
class Measurements:
    """Boot and OS measurements one signed output reports (input to `kgv.appraise_integrity`).

    `boot_stages` are (stage, version, hash hex) with stage 0 = boot 0 and later stages the
    boot loader; `os_hashes` are (file name or None for a single `OS Hash`, hash hex) in
    printed order. `bound` is True only when the signature verified and the PCRs recompute,
    i.e. the hashes are what the device measured; versions and platform are never bound.
    """

    location: str | None
    platform: str | None
    boot_stages: tuple[tuple[int, str | None, str], ...]
    os_version: str | None
    os_hashes: tuple[tuple[str | None, str], ...]
    bound: bool
