"""`| utility sign`: envelopes proven independently of emulator code, faults, nonce errors.

Each envelope is checked twice without emulator code: (a) with `cryptography` primitives
written here (signed bytes rebuilt from the parsed JSON per ENVELOPE.md section 3), and (b)
with the `openssl` command line (`openssl verify` for the chain, `openssl dgst -verify` for
the signature over the signed bytes).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from _pki_helpers import KEY_TYPES, cached_keypair, system_chain
from emulator.pki.certificates import build_csr, check_imported_certificate, parse_pasted_certificate
from emulator.pki.keys import import_public_key
from emulator.pki.trustpoints import TrustpointConfig
from emulator.nonce import NonceError, parse_hex_nonce
from emulator.signing import (
    DEFAULT_STALE_NONCE,
    SignError,
    SignFault,
    certificate_chain,
    parse_sign_arguments,
    require_enrolled,
    sign_output,
)

ENVELOPE_SCHEMA = schemas.load("envelope")
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl command line not found")

DOSSIER_TEXT = json.dumps(
    {
        "collection-start-time": 1610168028.380901,
        "model-name": "http://cisco.com/ns/yang/Cisco-IOS-XR-ama",
        "model-revision": "2019-08-05",
        "nonce": "1580",
        "version": {"result-code": "Success", "version": "Cisco IOS XR Software, Version 7.3.1\n"},
        "packages": {
            "result-code": "Success",
            "packages": [
                {"name": "ncs5500-xr", "version": "7.3.1", "arch": "x86_64"},
                {"name": "ncs5500-k9sec", "version": "7.3.1", "arch": "x86_64"},
            ],
        },
        "collection-end-time": 1610168029.1,
    }
)


# --- independent verification (no emulator code below this line until the tests) -----------


def parse_envelope(text: str) -> dict:
    """Strict parse: no duplicate keys, validated against the envelope schema."""

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
        keys = [key for key, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate keys {keys}"
        return dict(pairs)

    document = json.loads(text, object_pairs_hook=no_duplicates)
    jsonschema.validate(document, ENVELOPE_SCHEMA)
    return document["signed-envelope"]


def rebuild_signed_bytes(envelope: dict) -> bytes:
    """ENVELOPE.md 3: nonce || uint32 BE(version) || utf8(data) || DER(cert_1) || ..."""
    certificates = envelope.get("certificates", {}).get("certificate", [])
    return (
        base64.b64decode(envelope["nonce"], validate=True)
        + envelope["signature_version"].to_bytes(4, "big")
        + envelope["data"].encode("utf-8")
        + b"".join(base64.b64decode(entry["value"], validate=True) for entry in certificates)
    )


def digest_for(public_key: object) -> hashes.HashAlgorithm:
    """ENVELOPE.md 3's table, written again here on purpose."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[
            public_key.curve.key_size
        ]
    return hashes.SHA256()


def verify_signature(public_key: object, signature: bytes, message: bytes) -> None:
    """Raises InvalidSignature unless `signature` is valid over `message`."""
    digest = digest_for(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, message, padding.PKCS1v15(), digest)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, message, ec.ECDSA(digest))
    elif isinstance(public_key, dsa.DSAPublicKey):
        public_key.verify(signature, message, digest)
    else:
        raise AssertionError(f"unexpected key type {type(public_key)}")


def verify_with_cryptography(envelope: dict, expected_nonce: bytes) -> tuple[x509.Certificate, x509.Certificate]:
    """(a): signature with the leaf key, leaf issued by root, root self-signed CA, nonce."""
    certificates = [
        x509.load_der_x509_certificate(base64.b64decode(entry["value"]))
        for entry in envelope["certificates"]["certificate"]
    ]
    assert len(certificates) == 2
    root, leaf = certificates
    verify_signature(leaf.public_key(), base64.b64decode(envelope["signature"]), rebuild_signed_bytes(envelope))
    leaf.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).critical
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    now = datetime.now(timezone.utc)
    for cert in (root, leaf):
        assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    assert base64.b64decode(envelope["nonce"]) == expected_nonce
    return root, leaf


def verify_with_openssl(envelope: dict, workdir: Path) -> None:
    """(b): `openssl verify` for the chain, `openssl dgst -verify` for the signature."""
    root_der, leaf_der = (
        base64.b64decode(entry["value"]) for entry in envelope["certificates"]["certificate"]
    )
    root = x509.load_der_x509_certificate(root_der)
    leaf = x509.load_der_x509_certificate(leaf_der)
    (workdir / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (workdir / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (workdir / "pub.pem").write_bytes(
        leaf.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (workdir / "data.bin").write_bytes(rebuild_signed_bytes(envelope))
    (workdir / "sig.bin").write_bytes(base64.b64decode(envelope["signature"]))
    chain = subprocess.run(
        [OPENSSL, "verify", "-CAfile", "root.pem", "leaf.pem"],
        cwd=workdir, capture_output=True, text=True, check=False,
    )
    assert chain.returncode == 0 and "leaf.pem: OK" in chain.stdout, chain.stdout + chain.stderr
    digest_name = "-" + digest_for(leaf.public_key()).name
    signature = subprocess.run(
        [OPENSSL, "dgst", digest_name, "-verify", "pub.pem", "-signature", "sig.bin", "data.bin"],
        cwd=workdir, capture_output=True, text=True, check=False,
    )
    assert signature.returncode == 0 and "Verified OK" in signature.stdout, (
        signature.stdout + signature.stderr
    )


# --- every key type ------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(KEY_TYPES))
def test_envelope_verifies_independently_for_every_key_type(key_type: str, tmp_path: Path) -> None:
    chain = system_chain(key_type)
    nonce = parse_hex_nonce("1580")
    text = sign_output(
        DOSSIER_TEXT, nonce, chain.leaf_key, certificate_chain(chain.root, chain.leaf)
    )
    envelope = parse_envelope(text)
    assert envelope["data"] == DOSSIER_TEXT
    assert envelope["nonce"] == "FYA="
    root, leaf = verify_with_cryptography(envelope, expected_nonce=b"\x15\x80")
    assert root == chain.root and leaf == chain.leaf
    if OPENSSL is not None:
        verify_with_openssl(envelope, tmp_path)


@needs_openssl
def test_openssl_rejects_a_tampered_envelope(tmp_path: Path) -> None:
    # The openssl check is not vacuous: one changed byte of data fails it.
    chain = system_chain("ecdsa-p256")
    envelope = parse_envelope(
        sign_output("show version\n", b"\x01", chain.leaf_key, certificate_chain(chain.root, chain.leaf))
    )
    envelope["data"] = "show versioN\n"
    with pytest.raises(AssertionError, match="Verification failure|Verified OK"):
        verify_with_openssl(envelope, tmp_path)


def test_envelope_layout_follows_the_spec() -> None:
    chain = system_chain("ecdsa-p256")
    text = sign_output("line 1\nline 2 \u00e9\n", bytes.fromhex("abcd"), chain.leaf_key, None)
    assert text.endswith("}\n")
    order: list[list[str]] = []
    json.loads(text, object_pairs_hook=lambda pairs: order.append([k for k, _ in pairs]) or dict(pairs))
    assert order == [["signature_version", "nonce", "data", "signature"], ["signed-envelope"]]
    assert text.splitlines()[1] == '  "signed-envelope": {'  # indent=2
    envelope = parse_envelope(text)
    assert "certificates" not in envelope
    assert envelope["data"] == "line 1\nline 2 \u00e9\n"
    verify_signature(
        chain.leaf.public_key(), base64.b64decode(envelope["signature"]), rebuild_signed_bytes(envelope)
    )


def test_certificate_names_and_order() -> None:
    chain = system_chain("rsa2048")
    envelope = parse_envelope(
        sign_output("x", b"\x01", chain.leaf_key, certificate_chain(chain.root, chain.leaf))
    )
    names = [entry["name"] for entry in envelope["certificates"]["certificate"]]
    assert names == ["system-trustpoint ca-certificate", "system-trustpoint certificate"]


def test_key_pair_or_bare_private_key_both_sign() -> None:
    chain = system_chain("ecdsa-p384")
    from_keypair = parse_envelope(sign_output("x", b"\x02", chain.leaf_key, None))
    from_raw_key = parse_envelope(sign_output("x", b"\x02", chain.leaf_key.private_key, None))
    for envelope in (from_keypair, from_raw_key):
        verify_signature(
            chain.leaf.public_key(), base64.b64decode(envelope["signature"]), rebuild_signed_bytes(envelope)
        )


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=300), st.binary(min_size=1, max_size=64).filter(any), st.booleans())
def test_any_text_and_nonce_round_trip_and_verify(text: str, nonce: bytes, include: bool) -> None:
    chain = system_chain("ecdsa-p256")
    certificates = certificate_chain(chain.root, chain.leaf) if include else None
    envelope = parse_envelope(sign_output(text, nonce, chain.leaf_key, certificates))
    assert envelope["data"] == text
    assert base64.b64decode(envelope["nonce"]) == nonce
    assert ("certificates" in envelope) is include
    verify_signature(
        chain.leaf.public_key(), base64.b64decode(envelope["signature"]), rebuild_signed_bytes(envelope)
    )


# --- faults ---------------------------------------------------------------------------------


def test_wrong_nonce_fault_signs_a_stale_nonce_consistently() -> None:
    chain = system_chain("rsa2048")
    requested = bytes.fromhex("deadbeef")
    envelope = parse_envelope(
        sign_output(
            DOSSIER_TEXT, requested, chain.leaf_key, certificate_chain(chain.root, chain.leaf),
            fault=SignFault.WRONG_NONCE,
        )
    )
    assert base64.b64decode(envelope["nonce"]) == DEFAULT_STALE_NONCE
    # The signature is good (over the stale nonce); only the nonce check can catch it.
    verify_with_cryptography(envelope, expected_nonce=DEFAULT_STALE_NONCE)


def test_wrong_nonce_fault_differs_even_when_the_stale_nonce_was_asked_for() -> None:
    chain = system_chain("rsa2048")
    envelope = parse_envelope(
        sign_output("x", DEFAULT_STALE_NONCE, chain.leaf_key, None, fault=SignFault.WRONG_NONCE)
    )
    assert base64.b64decode(envelope["nonce"]) != DEFAULT_STALE_NONCE
    verify_signature(
        chain.leaf.public_key(), base64.b64decode(envelope["signature"]), rebuild_signed_bytes(envelope)
    )


def test_data_changed_fault_alters_one_package_version() -> None:
    chain = system_chain("ecdsa-p256")
    envelope = parse_envelope(
        sign_output(
            DOSSIER_TEXT, b"\x15\x80", chain.leaf_key, certificate_chain(chain.root, chain.leaf),
            fault=SignFault.DATA_CHANGED,
        )
    )
    changed = json.loads(envelope["data"])
    original = json.loads(DOSSIER_TEXT)
    assert changed["packages"]["packages"][0]["version"] != "7.3.1"
    changed["packages"]["packages"][0]["version"] = "7.3.1"
    assert changed == original  # nothing else moved
    signature = base64.b64decode(envelope["signature"])
    with pytest.raises(InvalidSignature):
        verify_signature(chain.leaf.public_key(), signature, rebuild_signed_bytes(envelope))
    # It was signed over the original text.
    verify_signature(
        chain.leaf.public_key(), signature, rebuild_signed_bytes({**envelope, "data": DOSSIER_TEXT})
    )


def test_data_changed_fault_on_plain_text_appends_a_character() -> None:
    chain = system_chain("ecdsa-p256")
    envelope = parse_envelope(sign_output("uptime 5 days\n", b"\x01", chain.leaf_key, None, fault=SignFault.DATA_CHANGED))
    assert envelope["data"].startswith("uptime 5 days\n") and envelope["data"] != "uptime 5 days\n"
    with pytest.raises(InvalidSignature):
        verify_signature(
            chain.leaf.public_key(), base64.b64decode(envelope["signature"]), rebuild_signed_bytes(envelope)
        )


def test_other_key_fault_signs_with_another_key_and_keeps_the_chain() -> None:
    chain = system_chain("ecdsa-p256")
    other = cached_keypair("ecdsa-p256", "other")
    envelope = parse_envelope(
        sign_output(
            DOSSIER_TEXT, b"\x15\x80", chain.leaf_key, certificate_chain(chain.root, chain.leaf),
            fault=SignFault.OTHER_KEY, other_key=other,
        )
    )
    leaf_der = base64.b64decode(envelope["certificates"]["certificate"][1]["value"])
    assert leaf_der == chain.leaf.public_bytes(serialization.Encoding.DER)
    signature = base64.b64decode(envelope["signature"])
    with pytest.raises(InvalidSignature):
        verify_signature(chain.leaf.public_key(), signature, rebuild_signed_bytes(envelope))
    verify_signature(other.public_key, signature, rebuild_signed_bytes(envelope))


def test_other_key_fault_without_a_key_is_a_programming_error() -> None:
    chain = system_chain("ecdsa-p256")
    with pytest.raises(ValueError, match="other_key"):
        sign_output("x", b"\x01", chain.leaf_key, None, fault=SignFault.OTHER_KEY)


# --- arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["nonce", "1580"], (b"\x15\x80", False)),
        (["nonce", "1580", "include-certificate"], (b"\x15\x80", True)),
        (["include-certificate", "nonce", "1580"], (b"\x15\x80", True)),
    ],
)
def test_sign_arguments_in_either_order(words: list[str], expected: tuple[bytes, bool]) -> None:
    assert parse_sign_arguments(words) == expected


@pytest.mark.parametrize(
    "words",
    [[], ["nonce"], ["include-certificate"], ["nonce", "1580", "nonce", "1581"], ["nonce", "15", "bogus"], ["nonce", "0"]],
)
def test_bad_sign_arguments(words: list[str]) -> None:
    with pytest.raises((SignError, NonceError)) as caught:
        parse_sign_arguments(words)
    assert caught.value.message.startswith("% ")


def test_sign_output_refuses_a_zero_nonce_and_an_empty_chain() -> None:
    chain = system_chain("ecdsa-p256")
    with pytest.raises(NonceError, match="Invalid nonce"):
        sign_output("x", b"\x00", chain.leaf_key, None)
    with pytest.raises(SignError, match="include-certificate"):
        sign_output("x", b"\x01", chain.leaf_key, [])


# --- enrollment state -----------------------------------------------------------------------


def test_require_enrolled_accepts_a_complete_trustpoint() -> None:
    chain = system_chain("rsa2048")
    require_enrolled(chain.root, chain.leaf, chain.leaf_key)


def test_require_enrolled_names_what_is_missing() -> None:
    chain = system_chain("rsa2048")
    with pytest.raises(SignError) as caught:
        require_enrolled(chain.root, None, chain.leaf_key)
    assert caught.value.message == (
        "% Signing failed: trustpoint system-trustpoint has no enrolled certificate; run "
        "'crypto ca enroll system-trustpoint'"
    )
    with pytest.raises(SignError, match="no CA certificate"):
        require_enrolled(None, None, chain.leaf_key)
    with pytest.raises(SignError, match="does not exist"):
        require_enrolled(chain.root, chain.leaf, None)


def test_require_enrolled_refuses_a_key_the_certificate_does_not_certify() -> None:
    # Re-keyed but not enrolled again: signing would produce envelopes that cannot verify.
    chain = system_chain("rsa2048")
    with pytest.raises(SignError, match="does not match the certificate"):
        require_enrolled(chain.root, chain.leaf, cached_keypair("rsa2048", "other"))


def test_an_imported_public_key_cannot_sign() -> None:
    chain = system_chain("rsa2048")
    pem = chain.leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    imported = import_public_key(pem, "peer", now=datetime.now(timezone.utc))
    with pytest.raises(SignError, match="imported public key"):
        sign_output("x", b"\x01", imported, None)
    with pytest.raises(SignError, match="imported public key"):
        require_enrolled(chain.root, chain.leaf, imported)


def test_terminal_enrolled_trustpoint_signs_verifiable_envelopes(tmp_path: Path) -> None:
    # Cut-and-paste: an outside CA (built here with plain cryptography) signs our request.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Outside Lab CA")])
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_cert = parse_pasted_certificate(ca_cert.public_bytes(serialization.Encoding.PEM).decode() + "quit\n")
    tp = TrustpointConfig(name="myca", keypair=("ecdsa", "system-enroll-key"), enrollment="terminal",
                          subject_name="CN=xr-0001,O=Lab")
    key = cached_keypair("ecdsa-p256")
    csr = x509.load_pem_x509_csr(
        build_csr(tp, key, chassis_serial="c44a11fc", fqdn="xr-0001.example.com", ip_address=None,
                  include_serial=True).encode()
    )
    issued = (
        x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_name)
        .public_key(csr.public_key()).serial_number(77)
        .not_valid_before(now).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    router_cert = parse_pasted_certificate(issued.public_bytes(serialization.Encoding.PEM).decode())
    check_imported_certificate(router_cert, ca_cert, key, trustpoint="myca")
    require_enrolled(ca_cert, router_cert, key, trustpoint="myca")
    envelope = parse_envelope(
        sign_output("show version\n", b"\x15\x80", key, certificate_chain(ca_cert, router_cert, "myca"))
    )
    assert envelope["certificates"]["certificate"][0]["name"] == "myca ca-certificate"
    verify_with_cryptography(envelope, expected_nonce=b"\x15\x80")
    if OPENSSL is not None:
        verify_with_openssl(envelope, tmp_path)
