"""An envelope check written in the tests, from ENVELOPE.md, with bare `cryptography` calls.

It shares no code with the emulator (or the verifier), so a bug in either cannot hide.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import jsonschema
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

import schemas


def check_envelope(text: str, nonce: bytes) -> dict[str, Any]:
    """Prove an envelope per ENVELOPE.md with primitives; return {data, root, leaf, envelope}."""
    envelope = json.loads(text)
    jsonschema.validate(envelope, schemas.load("envelope"))
    body = envelope["signed-envelope"]
    assert base64.b64decode(body["nonce"]) == nonce
    certs = [base64.b64decode(c["value"]) for c in body["certificates"]["certificate"]]
    root = x509.load_der_x509_certificate(certs[0])
    leaf = x509.load_der_x509_certificate(certs[-1])
    signed = nonce + struct.pack(">I", body["signature_version"]) + body["data"].encode() + b"".join(certs)
    signature = base64.b64decode(body["signature"])
    public = leaf.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(public, ec.EllipticCurvePublicKey):
        digest = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[public.curve.key_size]
        public.verify(signature, signed, ec.ECDSA(digest))
    elif isinstance(public, dsa.DSAPublicKey):
        public.verify(signature, signed, hashes.SHA256())
    else:  # pragma: no cover
        raise AssertionError(f"unexpected leaf key {type(public)}")
    leaf.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    return {"data": body["data"], "root": root, "leaf": leaf, "envelope": envelope, "signed": signed,
            "signature": signature}


def check_dossier(data: str) -> dict[str, Any]:
    dossier = json.loads(data)
    jsonschema.validate(dossier, schemas.load("dossier"))
    return dossier
