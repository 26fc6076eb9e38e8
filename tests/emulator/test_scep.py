"""The SCEP pkiMessage codec (emulator/pki/scep.py): what it builds it reads back, and what was
tampered with, signed by another or is not DER is refused with a PkiError."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.pki import PkiError
from emulator.pki.scep import MessageType, PkiMessage, PkiStatus, build_pki_message, check_scep_url, parse_pki_message

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def _signer(name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(4242).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


RSA_KEY = rsa.generate_private_key(65537, 2048)
RSA_CERT = _signer("requester", RSA_KEY)
REPLY = PkiMessage(
    message_type=MessageType.CERT_REP, transaction_id="ABC123", sender_nonce=b"\x01" * 16,
    recipient_nonce=b"\x02" * 16, status=PkiStatus.FAILURE, fail_info="2", content=b"enveloped bytes",
)


@pytest.mark.parametrize("digest", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
def test_a_message_reads_back_as_built(digest: hashes.HashAlgorithm) -> None:
    der = build_pki_message(REPLY, RSA_CERT, RSA_KEY, digest)
    read = parse_pki_message(der, signers=[RSA_CERT])
    assert (read.message_type, read.transaction_id, read.sender_nonce, read.recipient_nonce, read.status,
            read.fail_info, read.content) == (REPLY.message_type, REPLY.transaction_id, REPLY.sender_nonce,
                                              REPLY.recipient_nonce, REPLY.status, REPLY.fail_info, REPLY.content)
    assert read.signer == RSA_CERT and read.certificates == (RSA_CERT,)


def test_an_ecdsa_signed_message_reads_back() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _signer("ra", key)
    assert parse_pki_message(build_pki_message(REPLY, cert, key), signers=[cert]).status == PkiStatus.FAILURE


def test_a_message_without_content_or_optional_attributes() -> None:
    bare = PkiMessage(message_type=MessageType.CERT_REP, transaction_id="T", sender_nonce=None)
    read = parse_pki_message(build_pki_message(bare, RSA_CERT, RSA_KEY))
    assert (read.content, read.status, read.sender_nonce) == (b"", None, None)


def test_a_signer_not_among_the_trusted_is_refused() -> None:
    other = _signer("someone else", rsa.generate_private_key(65537, 2048))
    with pytest.raises(PkiError, match="not the CA's"):
        parse_pki_message(build_pki_message(REPLY, RSA_CERT, RSA_KEY), signers=[other])


def test_tampered_content_or_signature_is_refused() -> None:
    der = bytearray(build_pki_message(REPLY, RSA_CERT, RSA_KEY))
    where = der.index(REPLY.content)
    der[where] ^= 1
    with pytest.raises(PkiError, match="does not match its signed messageDigest"):
        parse_pki_message(bytes(der), signers=[RSA_CERT])
    der[where] ^= 1
    der[-1] ^= 1  # the signature is the message's last field
    with pytest.raises(PkiError, match="signature does not verify"):
        parse_pki_message(bytes(der), signers=[RSA_CERT])


WHOLE = build_pki_message(REPLY, RSA_CERT, RSA_KEY)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.integers(min_value=0, max_value=len(WHOLE) - 1).map(lambda cut: WHOLE[:cut]))
def test_garbage_and_truncations_raise_only_pki_error(data: bytes) -> None:
    with pytest.raises(PkiError):
        parse_pki_message(data, signers=[RSA_CERT])


@pytest.mark.parametrize("url", ["ftp://ca.example/scep", "https://ca.example/scep", "http:///scep", "ca.example"])
def test_only_http_urls_with_a_host_name_a_scep_ca(url: str) -> None:
    with pytest.raises(PkiError, match="Invalid enrollment URL"):
        check_scep_url(url)
    assert check_scep_url("http://10.0.0.1:8080/certsrv/mscep/mscep.dll") == "http://10.0.0.1:8080/certsrv/mscep/mscep.dll"
