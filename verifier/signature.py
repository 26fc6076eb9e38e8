"""Step (3): the envelope signature. The algorithm is fixed by the leaf key's type (ENVELOPE.md
section 3 table), never read from the input, so an attacker cannot pick a weaker one."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from .errors import SignatureError
from .findings import FindingId
from .policy import DEFAULT_POLICY, Policy

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.dsa import DSAPublicKey

__all__ = ["algorithm_name", "check_key_policy", "describe_key", "is_dsa_key", "verify_signature"]

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


class KeyPolicyError(SignatureError):
    """The key's type or size is not allowed; `finding_id` says which finding it maps to."""

    def __init__(self, finding_id: str, message: str, expected: str, found: str):
        super().__init__(message)
        self.finding_id, self.expected, self.found = finding_id, expected, found


#: Key types that are not DSA, told apart without naming DSA (see `is_dsa_key`).
_NOT_DSA = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey,
            x25519.X25519PublicKey, x448.X448PublicKey)


def is_dsa_key(key: object) -> TypeGuard[DSAPublicKey]:
    """Whether `key` is a DSA public key. cryptography deprecates DSA and warns on each use of
    its DSA names (51 and later), so they are looked up only for a key that is none of the
    other types: a fleet without DSA keys never touches them, and prints no warning."""
    if isinstance(key, _NOT_DSA):
        return False
    from cryptography.hazmat.primitives.asymmetric import dsa

    return isinstance(key, dsa.DSAPublicKey)


def describe_key(key: PublicKeyTypes) -> str:
    """'RSA-2048', 'ECDSA secp256r1', 'DSA-2048', or the key class name."""
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if is_dsa_key(key):
        return f"DSA-{key.key_size}"
    return type(key).__name__.lstrip("_")


def algorithm_name(key: PublicKeyTypes) -> str:
    """The signature algorithm the key's type fixes, e.g. 'RSASSA-PKCS1-v1_5 SHA-256'."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSASSA-PKCS1-v1_5 SHA-256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVE_HASH:
        return f"ECDSA {_CURVE_HASH[key.curve.name].name.upper().replace('SHA', 'SHA-')}"
    if is_dsa_key(key):
        return "DSA SHA-256"
    return "none"


def check_key_policy(key: PublicKeyTypes, policy: Policy = DEFAULT_POLICY, *, role: str = "leaf") -> None:
    """Raise KeyPolicyError unless the policy allows this key type and size."""
    found = describe_key(key)
    if isinstance(key, rsa.RSAPublicKey):
        if not policy.min_rsa_bits <= key.key_size <= policy.max_rsa_bits:
            raise KeyPolicyError(
                FindingId.SIGNATURE_WEAK_KEY,
                f"the {role} key is {found}, outside the allowed RSA sizes",
                f"RSA {policy.min_rsa_bits} to {policy.max_rsa_bits} bits",
                found,
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in policy.allowed_curves or key.curve.name not in _CURVE_HASH:
            raise KeyPolicyError(
                FindingId.SIGNATURE_WEAK_KEY,
                f"the {role} key is on curve {key.curve.name}, which the policy does not allow",
                f"one of {', '.join(sorted(policy.allowed_curves))}",
                found,
            )
        return
    if is_dsa_key(key):
        if not policy.allow_dsa:
            raise KeyPolicyError(
                FindingId.SIGNATURE_UNSUPPORTED_KEY,
                f"the {role} key is DSA, which the policy does not allow (Policy(allow_dsa=True) "
                "to accept legacy DSA devices)",
                "RSA or ECDSA",
                found,
            )
        if key.key_size < policy.min_dsa_bits:
            raise KeyPolicyError(
                FindingId.SIGNATURE_WEAK_KEY,
                f"the {role} key is {found}, below the allowed DSA size",
                f"DSA >= {policy.min_dsa_bits} bits",
                found,
            )
        return
    raise KeyPolicyError(
        FindingId.SIGNATURE_UNSUPPORTED_KEY,
        f"the {role} key type {found} is not one ENVELOPE.md defines a signature for",
        "RSA, ECDSA P-256/P-384/P-521 or DSA",
        found,
    )


def verify_signature(key: PublicKeyTypes, signature: bytes, message: bytes) -> None:
    """Verify `signature` over `message` with the algorithm `key`'s type fixes.

    Raises SignatureError if it does not verify or no algorithm is defined for the key type.
    Key-size policy is separate (`check_key_policy`), so that this function can be driven by
    test vectors of any size.
    """
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            hash_type = _CURVE_HASH.get(key.curve.name)
            if hash_type is None:
                raise SignatureError(f"no envelope signature algorithm for curve {key.curve.name}")
            key.verify(signature, message, ec.ECDSA(hash_type()))
        elif is_dsa_key(key):
            key.verify(signature, message, hashes.SHA256())
        else:
            raise SignatureError(f"no envelope signature algorithm for {describe_key(key)}")
    except InvalidSignature:
        raise SignatureError(
            f"the signature does not verify with the {describe_key(key)} key "
            f"({algorithm_name(key)})"
        ) from None
