"""Wycheproof signature vectors through `verifier.signature.verify_signature`, the function that
checks every envelope signature.

The algorithm is fixed by the key's type (ENVELOPE.md section 3): RSA -> PKCS#1 v1.5 SHA-256,
P-256/384/521 -> ECDSA SHA-256/384/512, DSA -> SHA-256. Files for that algorithm run as
Wycheproof says (valid accepted, invalid rejected). Files for another hash or for RSA-PSS run as
an algorithm-confusion check: *every* vector must be rejected, valid ones included, because a
signature made with an algorithm the key type does not fix must never verify.

`acceptable` vectors (legacy encodings) must be rejected too: we choose the strict reading, and
`ACCEPTABLE_ACCEPTED` lists any that cryptography accepts, with the reason (empty today).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from verifier.errors import SignatureError
from verifier.signature import verify_signature

FILES = [
    "dsa_2048_224_sha256_test.json", "dsa_2048_256_sha256_test.json", "dsa_3072_256_sha256_test.json",
    "ecdsa_secp256r1_sha256_test.json", "ecdsa_secp256r1_sha512_test.json",
    "ecdsa_secp384r1_sha256_test.json", "ecdsa_secp384r1_sha384_test.json",
    "ecdsa_secp521r1_sha512_test.json", "rsa_pss_2048_sha256_mgf1_32_test.json",
    "rsa_signature_2048_sha256_test.json", "rsa_signature_2048_sha384_test.json",
    "rsa_signature_2048_sha512_test.json", "rsa_signature_3072_sha256_test.json",
    "rsa_signature_3072_sha384_test.json", "rsa_signature_3072_sha512_test.json",
    "rsa_signature_4096_sha256_test.json", "rsa_signature_4096_sha384_test.json",
    "rsa_signature_4096_sha512_test.json",
]
# (file, tcId) -> why an `acceptable` vector verifies. Empty: every acceptable one is rejected.
ACCEPTABLE_ACCEPTED: dict[tuple[str, int], str] = {}
# Vectors in another algorithm's file that *are* RSASSA-PKCS1-v1_5 SHA-256 signatures (Wycheproof
# marks them invalid for their file's algorithm): under the algorithm RSA keys fix they are
# genuine, so accepting them is right. Listed one by one so any other acceptance fails.
_GENUINE = "a genuine PKCS#1 v1.5 SHA-256 signature: valid under the algorithm RSA keys fix"
CROSS_ALGORITHM_GENUINE: dict[tuple[str, int], str] = {
    ("rsa_pss_2048_sha256_mgf1_32_test.json", 108): _GENUINE,
    ("rsa_signature_2048_sha384_test.json", 221): _GENUINE,
    ("rsa_signature_2048_sha512_test.json", 221): _GENUINE,
    ("rsa_signature_3072_sha384_test.json", 222): _GENUINE,
    ("rsa_signature_3072_sha512_test.json", 222): _GENUINE,
    ("rsa_signature_4096_sha384_test.json", 222): _GENUINE,
    ("rsa_signature_4096_sha512_test.json", 222): _GENUINE,
}
_FIXED_HASH = {"secp256r1": "SHA-256", "secp384r1": "SHA-384", "secp521r1": "SHA-512"}


def _ours(algorithm: str, sha: str, key: object) -> bool:
    """Whether the vector's algorithm is the one the envelope format fixes for this key type."""
    if isinstance(key, rsa.RSAPublicKey):
        return algorithm == "RSASSA-PKCS1-v1_5" and sha == "SHA-256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return algorithm == "ECDSA" and _FIXED_HASH.get(key.curve.name) == sha
    if isinstance(key, dsa.DSAPublicKey):
        return algorithm == "DSA" and sha == "SHA-256"
    return False


@pytest.mark.parametrize("name", FILES)
def test_wycheproof(name: str, vectors_dir: Path) -> None:
    document = json.loads((vectors_dir / "wycheproof" / name).read_text())
    counts: Counter[str] = Counter()
    wrong: list[str] = []
    for group in document["testGroups"]:
        try:
            key = load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
        except ValueError:
            key = None
        ours = key is not None and _ours(document["algorithm"], group["sha"], key)
        for test in group["tests"]:
            if key is None:
                accepted = False
            else:
                try:
                    verify_signature(key, bytes.fromhex(test["sig"]), bytes.fromhex(test["msg"]))
                    accepted = True
                except SignatureError:
                    accepted = False
            result = test["result"] if ours else "other-algorithm"
            counts[f"{result}:{'accepted' if accepted else 'rejected'}"] += 1
            must_accept = (result == "valid" or (name, test["tcId"]) in ACCEPTABLE_ACCEPTED
                           or (name, test["tcId"]) in CROSS_ALGORITHM_GENUINE)
            if accepted != must_accept:
                wrong.append(f"tcId {test['tcId']} ({result}, {test['comment']}): "
                             f"{'accepted' if accepted else 'rejected'}")
    print(f"{name}: {dict(sorted(counts.items()))}")
    assert not wrong, f"{name}: {len(wrong)} vectors mishandled: {wrong[:10]}"
    assert sum(counts.values()) == sum(len(g["tests"]) for g in document["testGroups"])
