"""Certificates of the emulated router: the self-signed root and the leaf (`enrollment url
self`), and cut-and-paste enrollment (`enrollment terminal`: requests out, certificates in)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from . import PkiError
from .keys import MAX_PASTE_CHARS, KeyPair, KeyPurpose
from .screens import format_dn, format_ios_time
from .trustpoints import (
    DEFAULT_LEAF_KEY_USAGE,
    DEFAULT_MESSAGE_DIGEST,
    DEFAULT_ROOT_KEY_USAGE,
    KEY_USAGE_WORDS,
    MESSAGE_DIGESTS,
    OID_UNSTRUCTURED_ADDRESS,
    OID_UNSTRUCTURED_NAME,
    TrustpointConfig,
    parse_dn,
    parse_key_usage_words,
)

__all__ = [
    "DEFAULT_LIFETIME_DAYS",
    "build_csr",
    "check_imported_certificate",
    "fqdn_for",
    "make_leaf_certificate",
    "make_root_certificate",
    "parse_pasted_certificate",
]

# Seed, second "show crypto ca certificates" example (no lifetime configured): both the root and
# the leaf are valid 365 days (12:30:17 Fri Feb 21 2020 .. Sat Feb 20 2021).
DEFAULT_LIFETIME_DAYS = 365


def fqdn_for(hostname: str, domain: str | None) -> str:
    """`<hostname>.<domain>`; certificates need a domain name (seed: "Configure ... Domain")."""
    if not domain:
        raise PkiError(
            "% Please define a domain name first: certificates carry the router's FQDN "
            "(configure 'domain name <name>' and commit)"
        )
    return f"{hostname}.{domain}"



def _subject(
    dn_text: str | None, fqdn: str, chassis_serial: str | None, ip_address: str | None
) -> x509.Name:
    # RDN order: configured DN, then the router's own attributes. IOS XR prints the last RDN
    # first, which gives the seed's "serialNumber=...,unstructuredName=...,OU=...,CN=...".
    attributes = list(parse_dn(dn_text)) if dn_text else []
    attributes.append(x509.NameAttribute(OID_UNSTRUCTURED_NAME, fqdn))
    if ip_address is not None:
        try:
            ipaddress.ip_address(ip_address)
        except ValueError as error:
            raise PkiError(
                f"% Invalid IP address {ip_address!r}: expected an IPv4 or IPv6 address"
            ) from error
        attributes.append(x509.NameAttribute(OID_UNSTRUCTURED_ADDRESS, ip_address))
    if chassis_serial is not None:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, chassis_serial))
    return x509.Name(attributes)


def _key_usage(words: list[str]) -> x509.KeyUsage:
    flags = {field: False for field in KEY_USAGE_WORDS.values()}
    for word in parse_key_usage_words(words):
        flags[KEY_USAGE_WORDS[word]] = True
    return x509.KeyUsage(encipher_only=False, decipher_only=False, **flags)


def _signature_hash(tp: TrustpointConfig, signer: KeyPair) -> hashes.HashAlgorithm:
    name = tp.message_digest or DEFAULT_MESSAGE_DIGEST
    if name not in MESSAGE_DIGESTS:
        raise PkiError(
            f"% Invalid message-digest {name!r}: expected " + ", ".join(MESSAGE_DIGESTS)
        )
    if signer.kind == "dsa":
        return hashes.SHA256()  # DSA certificates are always signed with SHA-256 here
    return MESSAGE_DIGESTS[name]()


def _validity(
    now: datetime, days: int | None, not_before: datetime | None, not_after: datetime | None
) -> tuple[datetime, datetime]:
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    start = not_before if not_before is not None else now.replace(microsecond=0)
    lifetime = DEFAULT_LIFETIME_DAYS if days is None else days
    end = not_after if not_after is not None else start + timedelta(days=lifetime)
    if end <= start:
        raise PkiError(
            f"% Certificate validity is empty: expected the end ({end}) after the start ({start})"
        )
    return start, end


def _sign(
    builder: x509.CertificateBuilder, signer: KeyPair, tp: TrustpointConfig
) -> x509.Certificate:
    if signer.is_imported:
        raise PkiError(f"% Key {signer.label} is an imported public key: it cannot sign")
    try:
        return builder.sign(signer.private_key, _signature_hash(tp, signer))
    except ValueError as error:
        # e.g. a 512-bit RSA key cannot hold a SHA-512 PKCS#1 digest.
        raise PkiError(
            f"% Certificate generation failed with {signer.kind.upper()} key {signer.label} "
            f"({signer.size} bits) and message-digest "
            f"{tp.message_digest or DEFAULT_MESSAGE_DIGEST}: {error}"
        ) from error


def make_root_certificate(
    tp: TrustpointConfig,
    root_key: KeyPair,
    *,
    chassis_serial: str,
    fqdn: str,
    serial_number: int,
    now: datetime,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """`crypto ca authenticate <tp>` with `enrollment url self`: the self-signed root.

    Subject = issuer = ca-certificate DN + unstructuredName=fqdn + serialNumber; CA:TRUE
    (critical); key usage as configured (default digitalSignature keyCertSign cRLSign,
    critical); SKI; lifetime `lifetime ca-certificate` (default 365 days).
    `not_before`/`not_after` override the validity (fault injection).
    """
    subject = _subject(tp.ca_subject_name, fqdn, chassis_serial, None)
    start, end = _validity(now, tp.lifetime_ca_certificate, not_before, not_after)
    public = root_key.public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(serial_number)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(tp.key_usage_ca_certificate or DEFAULT_ROOT_KEY_USAGE), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return _sign(builder, root_key, tp)


def _authority_key_identifier(root_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(root_cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def make_leaf_certificate(
    tp: TrustpointConfig,
    leaf_key: KeyPair,
    *,
    root_cert: x509.Certificate,
    root_key: KeyPair,
    chassis_serial: str | None,
    fqdn: str,
    ip_address: str | None,
    serial_number: int,
    now: datetime,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """`crypto ca enroll <tp>` with `enrollment url self`: the router (leaf) certificate.

    Subject = DN + unstructuredName (+ unstructuredAddress when `ip_address`) (+ serialNumber
    when `chassis_serial`); issuer = root's subject; CA:FALSE (critical); key usage as
    configured (default critical digitalSignature keyEncipherment keyAgreement); SKI and AKI;
    lifetime `lifetime certificate` (default 365 days). Signed with `root_key`.
    """
    if root_key.public_der() != root_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise PkiError(
            f"% Trustpoint {tp.name}: ca-keypair {root_key.kind} {root_key.label} does not match"
            " the CA certificate; run 'clear crypto ca certificates "
            f"{tp.name}' and 'crypto ca authenticate {tp.name}' again"
        )
    subject = _subject(tp.subject_name, fqdn, chassis_serial, ip_address)
    start, end = _validity(now, tp.lifetime_certificate, not_before, not_after)
    public = leaf_key.public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root_cert.subject)
        .public_key(public)
        .serial_number(serial_number)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(tp.key_usage_certificate or DEFAULT_LEAF_KEY_USAGE), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_authority_key_identifier(root_cert), critical=False)
    )
    return _sign(builder, root_key, tp)



_PEM_CERT_RE = re.compile(
    r"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----(.*?)"
    r"-----END (?:X509 |TRUSTED )?CERTIFICATE-----",
    re.S,
)


def parse_pasted_certificate(text: str) -> x509.Certificate:
    """A certificate pasted at the terminal: PEM, or the bare base64 body (a final `quit`
    line is ignored). Raises PkiError saying what was expected and found."""
    if len(text) > MAX_PASTE_CHARS:
        raise PkiError(
            f"% Invalid certificate: expected at most {MAX_PASTE_CHARS} characters; "
            f"found {len(text)}"
        )
    lines = [line.strip() for line in text.strip().splitlines()]
    if lines and lines[-1].lower() == "quit":
        lines.pop()
    joined = "\n".join(lines)
    match = _PEM_CERT_RE.search(joined)
    body = match.group(1) if match else joined
    compact = "".join(body.split())
    expected = "expected a PEM certificate or its base64 body"
    if not compact:
        raise PkiError(f"% Invalid certificate: {expected}; found nothing")
    try:
        der = base64.b64decode(compact, validate=True)
    except binascii.Error as error:
        raise PkiError(
            f"% Invalid certificate: {expected}; found text that is not base64 "
            f"({compact[:20]!r}...)"
        ) from error
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise PkiError(
            f"% Invalid certificate: {expected}; the base64 decodes to {len(der)} bytes "
            f"that are not a DER X.509 certificate ({error})"
        ) from error



def build_csr(
    tp: TrustpointConfig,
    key: KeyPair,
    *,
    chassis_serial: str | None,
    fqdn: str,
    ip_address: str | None,
    include_serial: bool,
    challenge_password: str | None = None,
) -> str:
    """`crypto ca enroll <tp>` with `enrollment terminal`: the PKCS#10 request, PEM text.

    Subject as the leaf's (`make_leaf_certificate`); signed with `key` and the trustpoint's
    message digest. Show it with `format_csr_output`.
    """
    if include_serial and not chassis_serial:
        raise ValueError("include_serial needs chassis_serial")
    if key.is_imported:
        raise PkiError(f"% Key {key.label} is an imported public key: it cannot sign a request")
    serial = chassis_serial if include_serial else None
    subject = _subject(tp.subject_name, fqdn, serial, ip_address)
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if challenge_password:
        builder = builder.add_attribute(
            x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge_password.encode()
        )
    try:
        csr = builder.sign(key.private_key, _signature_hash(tp, key))
    except ValueError as error:
        raise PkiError(f"% Certificate request failed with key {key.label}: {error}") from error
    return csr.public_bytes(serialization.Encoding.PEM).decode()



def check_imported_certificate(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    key: KeyPair,
    *,
    trustpoint: str = "",
    now: datetime | None = None,
) -> KeyPurpose:
    """`crypto ca import <tp> certificate`: the pasted certificate must be issued by the
    trustpoint's CA and certify our key (for usage keys: either of the two, in any order, as the
    seed says). Returns the purpose of the key it certifies; raises PkiError otherwise."""
    where = f" of trustpoint {trustpoint}" if trustpoint else ""
    if cert.issuer != ca_cert.subject:
        raise PkiError(
            f"% Certificate import failed: expected a certificate issued by the CA{where} "
            f"({format_dn(ca_cert.subject)}); found one issued by {format_dn(cert.issuer)}"
        )
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError) as error:
        raise PkiError(
            f"% Certificate import failed: the certificate's signature does not verify with "
            f"the CA certificate{where} ({error or 'bad signature'})"
        ) from error
    found = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    purpose = next((purpose for purpose, half in key.halves() if half.public_der() == found), None)
    if purpose is None:
        which = "either key pair" if key.encryption_key is not None else "key pair"
        raise PkiError(
            f"% Certificate import failed: the certificate's public key does not match {which} "
            f"{key.kind} {key.label}{where}; paste the certificate issued for this "
            "router's request"
        )
    if now is not None:
        moment = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise PkiError(
                f"% Certificate import failed: the certificate is valid from "
                f"{format_ios_time(cert.not_valid_before_utc)} to "
                f"{format_ios_time(cert.not_valid_after_utc)}; it is now {format_ios_time(moment)}"
            )
    return purpose
