"""`... | utility sign nonce <N> [include-certificate]`: the device's signed envelope.

Implements `../shared/spec/ENVELOPE.md` sections 1 (nonce) and 3 (envelope, signed bytes,
algorithm per key type). Written independently of the verifier on purpose: a bug shared by
the signer and the verifier would hide itself.

The shell calls, for `<command> | utility sign nonce 1580 include-certificate`::

    nonce, include_certificate = parse_sign_arguments(["nonce", "1580", "include-certificate"])
    require_enrolled(ca_cert, router_cert, leaf_key, trustpoint="system-trustpoint")
    chain = certificate_chain(ca_cert, router_cert) if include_certificate else None
    text = sign_output(command_output, nonce, leaf_key, chain)
"""

from __future__ import annotations

import base64
import enum
import json
import re
import struct
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from emulator.nonce import check_nonce_bytes, parse_hex_nonce
from emulator.pki.keys import KeyPair

__all__ = [
    "DEFAULT_STALE_NONCE",
    "SIGNATURE_VERSION",
    "SYSTEM_TRUSTPOINT",
    "SignError",
    "SignFault",
    "certificate_chain",
    "parse_sign_arguments",
    "require_enrolled",
    "sign_output",
    "signed_bytes",
]

SIGNATURE_VERSION = 1  # ENVELOPE.md section 3: version 1 of the wire format
# ENVELOPE.md section 1: 2 to 128 hex digits = 1 to 64 bytes.
# The nonce a "stale" device repeats (the seed's example nonce).
DEFAULT_STALE_NONCE = bytes.fromhex("1580")
SYSTEM_TRUSTPOINT = "system-trustpoint"
# ENVELOPE.md section 3: the ECDSA hash follows the curve.
_ECDSA_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


class SignError(Exception):
    """`utility sign` refused; `message` is the IOS XR-style text to print (starts with `% `)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SignFault(enum.Enum):
    """Faults a test or the fleet can inject into one envelope."""

    WRONG_NONCE = "wrong-nonce"  # a stale nonce, consistently signed: the nonce check fails
    DATA_CHANGED = "data-changed"  # `data` altered after signing: the signature check fails
    OTHER_KEY = "other-key"  # signed by a key that is not the leaf's: the signature check fails


def parse_sign_arguments(words: list[str]) -> tuple[bytes, bool]:
    """The words after `utility sign`: `nonce <N>` and optional `include-certificate`, in
    either order. Returns (nonce bytes, include_certificate); SignError otherwise (NonceError
    for a malformed nonce)."""
    nonce: bytes | None = None
    include_certificate = False
    index = 0
    while index < len(words):
        word = words[index].lower()
        if word == "nonce":
            if nonce is not None:
                raise SignError("% Invalid input: 'nonce' given twice; expected it once")
            if index + 1 >= len(words):
                raise SignError("% Incomplete command: expected a hex value after 'nonce'")
            nonce = parse_hex_nonce(words[index + 1])
            index += 2
        elif word == "include-certificate":
            if include_certificate:
                raise SignError("% Invalid input: 'include-certificate' given twice")
            include_certificate = True
            index += 1
        else:
            raise SignError(
                f"% Invalid input {words[index]!r}: expected 'nonce <hex>' and optionally "
                "'include-certificate'"
            )
    if nonce is None:
        raise SignError("% Incomplete command: expected 'nonce <hex>' after 'utility sign'")
    return nonce, include_certificate


def signed_bytes(nonce: bytes, data: str, certificates_der: list[bytes]) -> bytes:
    """nonce || uint32 BE(signature_version) || utf8(data) || DER(cert_1) || ... (ENVELOPE.md 3)."""
    return (
        nonce
        + struct.pack(">I", SIGNATURE_VERSION)
        + data.encode("utf-8")
        + b"".join(certificates_der)
    )


def _private_key_of(key: KeyPair | Any) -> Any:
    if isinstance(key, KeyPair):
        if key.private_key is None:
            raise SignError(
                f"% Signing failed: key {key.label} is an imported public key; it cannot sign"
            )
        return key.private_key
    return key


def _sign(private_key: Any, message: bytes) -> bytes:
    # ENVELOPE.md section 3: the algorithm is fixed by the key type.
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        hash_type = _ECDSA_HASHES.get(private_key.curve.name)
        if hash_type is None:
            raise SignError(
                f"% Signing failed: curve {private_key.curve.name} is not supported; expected "
                "nistp256, nistp384 or nistp521"
            )
        return private_key.sign(message, ec.ECDSA(hash_type()))
    if isinstance(private_key, dsa.DSAPrivateKey):
        return private_key.sign(message, hashes.SHA256())
    raise SignError(
        f"% Signing failed: {type(private_key).__name__} keys cannot sign; expected RSA, ECDSA "
        "or DSA"
    )


def _bump_version(version: str) -> str:
    if version and version[-1].isdigit():
        return version[:-1] + str((int(version[-1]) + 1) % 10)
    return version + ".1"


def _tamper(text: str) -> str:
    """`text` with one package version changed (a dossier), else with a character appended."""
    try:
        document = json.loads(text)
    except ValueError:
        return text + "."
    packages_item = document.get("packages") if isinstance(document, dict) else None
    packages = packages_item.get("packages") if isinstance(packages_item, dict) else None
    if isinstance(packages, list) and packages and isinstance(packages[0], dict):
        version = packages[0].get("version")
        if isinstance(version, str):
            pattern = re.compile(r'("version"\s*:\s*)' + re.escape(json.dumps(version)))
            changed, count = pattern.subn(
                lambda match: match.group(1) + json.dumps(_bump_version(version)), text, count=1
            )
            if count:
                return changed
    return text + "\n"  # still valid JSON, but not the bytes that were signed


def sign_output(
    text: str,
    nonce: bytes,
    signing_key: KeyPair | Any,
    certificates: list[tuple[str, x509.Certificate]] | None = None,
    *,
    fault: SignFault | None = None,
    other_key: KeyPair | Any = None,
    stale_nonce: bytes = DEFAULT_STALE_NONCE,
) -> str:
    """The envelope JSON `utility sign` prints for `text` (ENVELOPE.md section 3).

    `certificates` is the chain as (name, certificate), root first and leaf last, or None
    without `include-certificate`. Output: `indent=2`, the spec's key order, final newline.
    `fault` injects one fault (see SignFault); OTHER_KEY needs `other_key`. A WRONG_NONCE
    whose stale nonce equals `nonce` flips the stale nonce's last bit, so it always differs.
    """
    check_nonce_bytes(nonce)
    if certificates is not None and not certificates:
        raise SignError("% Signing failed: include-certificate needs a certificate chain")
    signer = _private_key_of(signing_key)
    envelope_nonce = nonce
    if fault is SignFault.WRONG_NONCE:
        envelope_nonce = stale_nonce
        if envelope_nonce == nonce:
            envelope_nonce = nonce[:-1] + bytes([nonce[-1] ^ 0x01])
    elif fault is SignFault.OTHER_KEY:
        if other_key is None:
            raise ValueError("SignFault.OTHER_KEY needs other_key")
        signer = _private_key_of(other_key)
    chain = list(certificates or [])
    chain_der = [cert.public_bytes(serialization.Encoding.DER) for _, cert in chain]
    try:
        message = signed_bytes(envelope_nonce, text, chain_der)
    except UnicodeEncodeError as error:
        raise SignError(
            f"% Signing failed: the output is not valid Unicode text ({error.reason})"
        ) from error
    signature = _sign(signer, message)
    data = _tamper(text) if fault is SignFault.DATA_CHANGED else text
    body: dict[str, Any] = {
        "signature_version": SIGNATURE_VERSION,
        "nonce": base64.b64encode(envelope_nonce).decode("ascii"),
        "data": data,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    if certificates is not None:
        body["certificates"] = {
            "certificate": [
                {"name": name, "value": base64.b64encode(der).decode("ascii")}
                for (name, _), der in zip(chain, chain_der, strict=True)
            ]
        }
    return json.dumps({"signed-envelope": body}, indent=2, ensure_ascii=False) + "\n"


def require_enrolled(
    ca_cert: x509.Certificate | None,
    router_cert: x509.Certificate | None,
    key: KeyPair | None,
    *,
    trustpoint: str = SYSTEM_TRUSTPOINT,
) -> None:
    """Raise SignError unless `trustpoint` has a CA certificate, a router certificate and a
    private key matching the router certificate (so the device never signs what cannot verify)."""
    if ca_cert is None:
        raise SignError(
            f"% Signing failed: trustpoint {trustpoint} has no CA certificate; run "
            f"'crypto ca authenticate {trustpoint}'"
        )
    if router_cert is None:
        raise SignError(
            f"% Signing failed: trustpoint {trustpoint} has no enrolled certificate; run "
            f"'crypto ca enroll {trustpoint}'"
        )
    if key is None:
        raise SignError(
            f"% Signing failed: the key pair of trustpoint {trustpoint} does not exist; "
            "generate it and enroll again"
        )
    _private_key_of(key)
    certified = router_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if certified != key.public_der():
        raise SignError(
            f"% Signing failed: key {key.kind} {key.label} does not match the certificate of "
            f"trustpoint {trustpoint}; run 'crypto ca enroll {trustpoint}' again"
        )


def certificate_chain(
    ca_cert: x509.Certificate, router_cert: x509.Certificate, trustpoint: str = SYSTEM_TRUSTPOINT
) -> list[tuple[str, x509.Certificate]]:
    """The `include-certificate` chain: root first, leaf last, named as ENVELOPE.md shows."""
    return [(f"{trustpoint} ca-certificate", ca_cert), (f"{trustpoint} certificate", router_cert)]
