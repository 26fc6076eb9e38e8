"""SCEP (RFC 8894), the emulated router's side of `enrollment url http://...`: GetCACaps and
GetCACert for `crypto ca authenticate`, PKCSReq and CertPoll for `crypto ca enroll`, and the
pkiMessage codec (CMS SignedData around an EnvelopedData, RFC 5652) both ends share.

The envelopes are cryptography's PKCS#7 (its builder encrypts, `pkcs7_decrypt_der` opens); the
SignedData is built here because SCEP's signed attributes (messageType, transactionID, nonces,
pkiStatus) are not ones cryptography's signature builder can add."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from . import PkiError
from .httpread import read_capped

__all__ = [
    "DEFAULT_RETRY_COUNT",
    "DEFAULT_RETRY_MINUTES",
    "FAIL_INFO_TEXT",
    "MessageType",
    "Outcome",
    "PkiMessage",
    "PkiStatus",
    "ScepCa",
    "ScepClient",
    "build_pki_message",
    "check_scep_url",
    "parse_pki_message",
]

# The CA answers one small message per request; a bigger answer is not SCEP (DoS bound).
MAX_SCEP_RESPONSE_BYTES = 1 << 20
# A CA on the lab network answers in well under this; past it the command must not hang.
SCEP_HTTP_TIMEOUT_S = 30.0
# ...and the whole answer (a CA trickling its body a byte at a time) within this.
SCEP_HTTP_DEADLINE_S = 60.0
# RFC 8894 section 3.2.1.4: senderNonce is 16 random bytes.
NONCE_BYTES = 16
# The requester's self-signed certificate only identifies it inside this exchange.
SIGNER_CERTIFICATE_DAYS = 1
# Seed: "enrollment retry period ... Default is 1 minute".
DEFAULT_RETRY_MINUTES = 1
# The seed gives no default retry count; a finite one so `crypto ca enroll` always ends.
DEFAULT_RETRY_COUNT = 10
# How often a pending enrollment looks at the device clock (tests move that clock forward).
CLOCK_TICK_S = 0.05


class MessageType:
    """RFC 8894 section 3.2.1.2 messageType values (PrintableString decimal)."""

    CERT_REP = "3"
    PKCS_REQ = "19"
    CERT_POLL = "20"


class PkiStatus:
    """RFC 8894 section 3.2.1.3 pkiStatus values."""

    SUCCESS = "0"
    FAILURE = "2"
    PENDING = "3"


# RFC 8894 section 3.2.1.4 failInfo values and what each means to the operator.
FAIL_INFO_TEXT = {
    "0": "badAlg: unrecognized or unsupported algorithm",
    "1": "badMessageCheck: integrity check (signature) failed",
    "2": "badRequest: transaction not permitted or supported (a wrong challenge password)",
    "3": "badTime: the message time was not close enough to the CA's time",
    "4": "badCertId: no certificate could be identified matching the criteria",
}


# -- DER: the few ASN.1 shapes CMS needs -----------------------------------------------------
def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _set(*parts: bytes) -> bytes:
    return _tlv(0x31, b"".join(sorted(parts)))  # DER orders SET OF by encoding


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _explicit(number: int, body: bytes) -> bytes:
    return _tlv(0xA0 | number, body)


_NULL = b"\x05\x00"


@dataclass(frozen=True)
class _Node:
    """One DER element: its tag, its whole encoding and its contents."""

    tag: int
    raw: bytes
    body: bytes

    def children(self) -> list[_Node]:
        nodes, offset = [], 0
        while offset < len(self.body):
            node, offset = _read(self.body, offset)
            nodes.append(node)
        return nodes


def _read(data: bytes, offset: int = 0) -> tuple[_Node, int]:
    """The element at `offset` and the offset after it; PkiError when it does not fit."""
    try:
        tag, first = data[offset], data[offset + 1]
        start = offset + 2
        if first & 0x80:
            count = first & 0x7F
            if not 1 <= count <= 4:
                raise ValueError(f"length of {count} bytes")
            size = int.from_bytes(data[start : start + count], "big")
            start += count
        else:
            size = first
        end = start + size
        if end > len(data) or tag & 0x1F == 0x1F:
            raise ValueError("element runs past its container")
    except (IndexError, ValueError) as error:
        raise PkiError(f"% SCEP message is not valid DER at byte {offset}: {error}") from error
    return _Node(tag, data[offset:end], data[start:end]), end


def _octets(node: _Node) -> bytes:
    """An OCTET STRING's bytes, also in the constructed form some BER encoders send."""
    if node.tag == 0x04:
        return node.body
    if node.tag == 0x24:
        return b"".join(_octets(child) for child in node.children())
    raise PkiError(f"% SCEP message content is not an OCTET STRING (tag 0x{node.tag:02x})")


def _parse(der: bytes) -> _Node:
    node, end = _read(der)
    if end != len(der):
        raise PkiError(f"% SCEP message is not valid DER: {len(der) - end} bytes after its end")
    return node


# -- OIDs ------------------------------------------------------------------------------------
_ID_DATA = _oid("1.2.840.113549.1.7.1")
_ID_SIGNED_DATA = _oid("1.2.840.113549.1.7.2")
_ATTR_CONTENT_TYPE = _oid("1.2.840.113549.1.9.3")
_ATTR_MESSAGE_DIGEST = _oid("1.2.840.113549.1.9.4")
_RSA_ENCRYPTION = _oid("1.2.840.113549.1.1.1")
_SCEP = "2.16.840.1.113733.1.9."
_ATTR_MESSAGE_TYPE = _oid(_SCEP + "2")
_ATTR_PKI_STATUS = _oid(_SCEP + "3")
_ATTR_FAIL_INFO = _oid(_SCEP + "4")
_ATTR_SENDER_NONCE = _oid(_SCEP + "5")
_ATTR_RECIPIENT_NONCE = _oid(_SCEP + "6")
_ATTR_TRANSACTION_ID = _oid(_SCEP + "7")
_DIGESTS: dict[bytes, type[hashes.HashAlgorithm]] = {
    _oid("1.3.14.3.2.26"): hashes.SHA1,
    _oid("2.16.840.1.101.3.4.2.1"): hashes.SHA256,
    _oid("2.16.840.1.101.3.4.2.2"): hashes.SHA384,
    _oid("2.16.840.1.101.3.4.2.3"): hashes.SHA512,
}
_DIGEST_OIDS = {algorithm.name: oid for oid, algorithm in _DIGESTS.items()}
_ECDSA_WITH = {"sha256": _oid("1.2.840.10045.4.3.2"), "sha384": _oid("1.2.840.10045.4.3.3"),
               "sha512": _oid("1.2.840.10045.4.3.4")}


# -- pkiMessage ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PkiMessage:
    """A SCEP pkiMessage's signed attributes, its content and the certificate that signed it.

    `content` is the encapsulated data (a DER EnvelopedData ContentInfo) or b"" when absent.
    """

    message_type: str
    transaction_id: str
    sender_nonce: bytes | None
    recipient_nonce: bytes | None = None
    status: str | None = None
    fail_info: str | None = None
    content: bytes = b""
    signer: x509.Certificate | None = None
    certificates: tuple[x509.Certificate, ...] = field(default=())


def _attribute(oid: bytes, value: bytes) -> bytes:
    return _seq(oid, _set(value))


def _printable(text: str) -> bytes:
    return _tlv(0x13, text.encode("ascii"))


def _signature_for(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, data: bytes,
                   digest: hashes.HashAlgorithm) -> bytes:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), digest)
    return private_key.sign(data, ec.ECDSA(digest))


def build_pki_message(message: PkiMessage, signer: x509.Certificate,
                      private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                      digest: hashes.HashAlgorithm | None = None) -> bytes:
    """The DER ContentInfo(SignedData) carrying `message`, signed by `signer` (RFC 8894 3.2)."""
    digest = digest or hashes.SHA256()
    digest_algorithm = _seq(_DIGEST_OIDS[digest.name], _NULL)
    content_digest = hashes.Hash(digest)
    content_digest.update(message.content)
    attributes = [
        _attribute(_ATTR_CONTENT_TYPE, _ID_DATA),
        _attribute(_ATTR_MESSAGE_DIGEST, _tlv(0x04, content_digest.finalize())),
        _attribute(_ATTR_MESSAGE_TYPE, _printable(message.message_type)),
        _attribute(_ATTR_TRANSACTION_ID, _printable(message.transaction_id)),
    ]
    optional = [
        (_ATTR_SENDER_NONCE, message.sender_nonce, lambda v: _tlv(0x04, v)),
        (_ATTR_RECIPIENT_NONCE, message.recipient_nonce, lambda v: _tlv(0x04, v)),
        (_ATTR_PKI_STATUS, message.status, _printable),
        (_ATTR_FAIL_INFO, message.fail_info, _printable),
    ]
    attributes += [_attribute(oid, encode(value)) for oid, value, encode in optional if value is not None]
    signed_attributes = _set(*attributes)
    signature = _signature_for(private_key, signed_attributes, digest)
    if isinstance(private_key, rsa.RSAPrivateKey):
        signature_algorithm = _seq(_RSA_ENCRYPTION, _NULL)
    else:
        signature_algorithm = _seq(_ECDSA_WITH[digest.name])
    signer_info = _seq(
        _integer(1),
        _seq(signer.issuer.public_bytes(), _integer(signer.serial_number)),
        digest_algorithm,
        b"\xa0" + signed_attributes[1:],  # [0] IMPLICIT SET OF Attribute
        signature_algorithm,
        _tlv(0x04, signature),
    )
    encapsulated = _seq(_ID_DATA, _explicit(0, _tlv(0x04, message.content))) if message.content else _seq(_ID_DATA)
    certificates = [cert.public_bytes(serialization.Encoding.DER) for cert in (signer, *message.certificates)]
    signed_data = _seq(
        _integer(1),
        _set(digest_algorithm),
        encapsulated,
        _tlv(0xA0, b"".join(certificates)),
        _set(signer_info),
    )
    return _seq(_ID_SIGNED_DATA, _explicit(0, signed_data))


def _attribute_values(signed_attributes: _Node) -> dict[bytes, _Node]:
    values: dict[bytes, _Node] = {}
    for attribute in signed_attributes.children():
        parts = attribute.children()
        if len(parts) != 2 or len(parts[1].children()) != 1:
            raise PkiError("% SCEP message has a signed attribute that is not one OID and one value")
        if parts[0].raw in values:  # two values for one name: which would count is ambiguous
            raise PkiError("% SCEP message has a signed attribute given twice")
        values[parts[0].raw] = parts[1].children()[0]
    return values


def _verify_signature(signer: x509.Certificate, signature: bytes, data: bytes,
                      digest: hashes.HashAlgorithm) -> None:
    public = signer.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), digest)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(digest))
        else:
            raise PkiError(f"% SCEP message signed with an unsupported key type {type(public).__name__}")
    except InvalidSignature as error:
        raise PkiError(
            "% SCEP message signature does not verify with the certificate of "
            f"{signer.subject.rfc4514_string()}"
        ) from error


@dataclass(frozen=True)
class _SignedData:
    content: bytes
    certificates: list[x509.Certificate]
    issuer_and_serial: tuple[bytes, bytes]
    digest_oid: bytes
    signed_attributes: _Node
    signature: bytes


def _signed_data(der: bytes) -> _SignedData:
    """The parts of a ContentInfo(SignedData) with one signer; PkiError when it is not one."""
    try:
        content_info = _parse(der).children()
        if len(content_info) != 2 or content_info[0].raw != _ID_SIGNED_DATA or content_info[1].tag != 0xA0:
            raise PkiError("% SCEP message is not a CMS SignedData")
        parts = _parse(content_info[1].body).children()
        if len(parts) < 4:
            raise PkiError(f"% SCEP message is not a CMS SignedData: {len(parts)} fields, expected 4 or more")
        encapsulated = parts[2].children()
        content = _octets(_parse(encapsulated[1].body)) if len(encapsulated) > 1 else b""
        certificates: list[x509.Certificate] = []
        for optional in parts[3:-1]:
            if optional.tag == 0xA0:  # [0] IMPLICIT CertificateSet; [1] would be CRLs
                certificates += [x509.load_der_x509_certificate(node.raw) for node in optional.children()]
        signer_infos = parts[-1].children()
        if len(signer_infos) != 1:
            raise PkiError(f"% SCEP message must have one signer; found {len(signer_infos)}")
        _version, sid, digest_algorithm, attributes, _algorithm, signature = signer_infos[0].children()[:6]
        issuer, serial = sid.children()
        digest_oid = digest_algorithm.children()[0].raw
    except (IndexError, ValueError) as error:  # a field missing or not a certificate
        raise PkiError(f"% SCEP message is not a CMS SignedData SCEP can read: {error}") from error
    if attributes.tag != 0xA0:
        raise PkiError("% SCEP message has no signed attributes")
    return _SignedData(content, certificates, (issuer.raw, serial.raw), digest_oid, attributes, signature.body)


def parse_pki_message(der: bytes, signers: Sequence[x509.Certificate] | None = None) -> PkiMessage:
    """Read and check a pkiMessage: the signature over the signed attributes and the content
    digest. `signers` are the certificates it may be signed by (the CA's, for a CertRep);
    None takes the signer from the message itself (a CA reading a request)."""
    # (1) ContentInfo of type signedData, one signer
    parsed = _signed_data(der)
    content, certificates = parsed.content, parsed.certificates
    # (2) the signer is a certificate we were told to trust (or, for a CA, the one enclosed)
    issuer, serial = parsed.issuer_and_serial
    candidates = list(signers) if signers is not None else certificates
    signer = next(
        (cert for cert in candidates
         if cert.issuer.public_bytes() == issuer and _integer(cert.serial_number) == serial),
        None,
    )
    if signer is None:
        raise PkiError("% SCEP message is signed by a certificate that is not the CA's (issuer and serial unknown)")
    digest_class = _DIGESTS.get(parsed.digest_oid)
    if digest_class is None:
        raise PkiError("% SCEP message uses an unsupported digest algorithm")
    # (3) the signature covers the signed attributes, re-tagged as a SET (RFC 5652 5.4)
    _verify_signature(signer, parsed.signature, b"\x31" + parsed.signed_attributes.raw[1:], digest_class())
    values = _attribute_values(parsed.signed_attributes)
    # (4) the messageDigest attribute is the digest of the content
    content_digest = hashes.Hash(digest_class())
    content_digest.update(content)
    if _ATTR_MESSAGE_DIGEST not in values or values[_ATTR_MESSAGE_DIGEST].body != content_digest.finalize():
        raise PkiError("% SCEP message content does not match its signed messageDigest")

    def text(oid: bytes) -> str | None:
        node = values.get(oid)
        return node.body.decode("ascii", errors="replace") if node is not None else None

    def octets(oid: bytes) -> bytes | None:
        node = values.get(oid)
        return node.body if node is not None else None

    message_type, transaction_id = text(_ATTR_MESSAGE_TYPE), text(_ATTR_TRANSACTION_ID)
    if message_type is None or transaction_id is None:
        raise PkiError("% SCEP message lacks its messageType or transactionID attribute")
    return PkiMessage(
        message_type=message_type, transaction_id=transaction_id,
        sender_nonce=octets(_ATTR_SENDER_NONCE), recipient_nonce=octets(_ATTR_RECIPIENT_NONCE),
        status=text(_ATTR_PKI_STATUS), fail_info=text(_ATTR_FAIL_INFO), content=content,
        signer=signer, certificates=tuple(certificates),
    )


def issuer_and_subject(issuer: x509.Name, subject: x509.Name) -> bytes:
    """CertPoll's content before enveloping (RFC 8894 3.3.3)."""
    return _seq(issuer.public_bytes(), subject.public_bytes())


# -- the client ------------------------------------------------------------------------------
def check_scep_url(url: str) -> str:
    """`enrollment url` for SCEP: an http:// URL with a host (the seed's form)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise PkiError(
            f"% Invalid enrollment URL {url!r}: expected 'self', 'terminal' or a SCEP CA's "
            "http://host[:port]/path"
        )
    return url


@dataclass(frozen=True)
class ScepCa:
    """What GetCACaps and GetCACert told: the CA certificate, the certificate requests are
    encrypted to and CertReps signed by (the CA's or its RA's), and the capabilities."""

    ca_cert: x509.Certificate
    recipient: x509.Certificate
    capabilities: frozenset[str]


@dataclass(frozen=True)
class Outcome:
    """A CertRep's verdict: the issued certificate, pending, or the CA's failInfo."""

    status: str
    certificate: x509.Certificate | None = None
    fail_info: str | None = None


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    # The router talks to the URL it was given, never to a proxy from the host's environment.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ScepClient:
    """One trustpoint's conversation with its SCEP CA at `url`."""

    def __init__(self, url: str, *, identifier: str) -> None:
        self.url = check_scep_url(url)
        self.identifier = identifier
        self._opener = _no_proxy_opener()

    def _http(self, operation: str, *, message: str | None = None, body: bytes | None = None) -> tuple[str, bytes]:
        query = {"operation": operation} | ({"message": message} if message is not None else {})
        separator = "&" if "?" in self.url else "?"
        request = urllib.request.Request(
            self.url + separator + urllib.parse.urlencode(query), data=body,
            headers={"Content-Type": "application/x-pki-message"} if body is not None else {},
        )
        deadline = time.monotonic() + SCEP_HTTP_DEADLINE_S
        try:
            with self._opener.open(request, timeout=SCEP_HTTP_TIMEOUT_S) as response:
                data = read_capped(response, MAX_SCEP_RESPONSE_BYTES, deadline)
                content_type = response.headers.get_content_type()
        except urllib.error.HTTPError as error:
            raise PkiError(f"% SCEP {operation} to {self.url} failed: the CA answered HTTP {error.code} {error.reason}") from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise PkiError(f"% SCEP {operation} to {self.url} failed: {reason}") from error
        if len(data) > MAX_SCEP_RESPONSE_BYTES:
            raise PkiError(f"% SCEP {operation} answer is larger than {MAX_SCEP_RESPONSE_BYTES} bytes: not SCEP")
        return content_type, data

    def get_ca(self) -> ScepCa:
        """GetCACaps then GetCACert (RFC 8894 3.5.1, 4.2)."""
        _, caps_text = self._http("GetCACaps", message=self.identifier)
        capabilities = frozenset(line.strip() for line in caps_text.decode("ascii", "replace").splitlines() if line.strip())
        content_type, data = self._http("GetCACert", message=self.identifier)
        try:
            if content_type == "application/x-x509-ca-cert":
                certs = [x509.load_der_x509_certificate(data)]
            elif content_type == "application/x-x509-ca-ra-cert":
                certs = pkcs7.load_der_pkcs7_certificates(data)
            else:
                raise PkiError(
                    f"% SCEP GetCACert answer has type {content_type!r}: expected "
                    "application/x-x509-ca-cert or application/x-x509-ca-ra-cert"
                )
        except ValueError as error:
            raise PkiError(f"% SCEP GetCACert answer is not a certificate ({content_type}): {error}") from error
        if not certs:
            raise PkiError("% SCEP GetCACert answer holds no certificate")
        ca_cert = next((cert for cert in certs if cert.issuer == cert.subject), certs[0])
        recipient = ca_cert
        for cert in certs:  # RFC 8894 3.5.1: an RA, when there is one, is issued by the CA
            if cert is not ca_cert and cert.issuer == ca_cert.subject:
                try:
                    cert.verify_directly_issued_by(ca_cert)
                except (InvalidSignature, ValueError, TypeError) as error:
                    raise PkiError(f"% SCEP RA certificate {cert.subject.rfc4514_string()} is not issued by the CA") from error
                recipient = cert
                break
        return ScepCa(ca_cert=ca_cert, recipient=recipient, capabilities=capabilities)

    def _exchange(self, ca: ScepCa, message_type: str, inner: bytes, transaction_id: str,
                  signer: x509.Certificate, private_key: rsa.RSAPrivateKey) -> Outcome:
        envelope = (
            pkcs7.PKCS7EnvelopeBuilder().set_data(inner).add_recipient(ca.recipient)
            .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
        )
        sender_nonce = secrets.token_bytes(NONCE_BYTES)
        request = build_pki_message(
            PkiMessage(message_type=message_type, transaction_id=transaction_id,
                       sender_nonce=sender_nonce, content=envelope),
            signer, private_key,
        )
        if "POSTPKIOperation" in ca.capabilities:
            content_type, data = self._http("PKIOperation", body=request)
        else:
            content_type, data = self._http("PKIOperation", message=base64.b64encode(request).decode())
        if content_type != "application/x-pki-message":
            raise PkiError(f"% SCEP PKIOperation answer has type {content_type!r}: expected application/x-pki-message")
        reply = parse_pki_message(data, signers=[ca.recipient, ca.ca_cert])
        # RFC 8894 3.2.1: the reply is a CertRep for our transaction, answering our nonce.
        if reply.message_type != MessageType.CERT_REP or reply.transaction_id != transaction_id:
            raise PkiError(
                f"% SCEP answer is not the CertRep of transaction {transaction_id}: found messageType "
                f"{reply.message_type} for transaction {reply.transaction_id}"
            )
        if reply.recipient_nonce != sender_nonce:
            raise PkiError("% SCEP CertRep does not answer this request: its recipientNonce is not our senderNonce")
        if reply.status == PkiStatus.SUCCESS:
            try:
                inner_reply = pkcs7.pkcs7_decrypt_der(reply.content, signer, private_key, [])
                issued = pkcs7.load_der_pkcs7_certificates(inner_reply)
            except ValueError as error:
                raise PkiError(f"% SCEP CertRep could not be opened with the router's key: {error}") from error
            mine = _public_der(private_key.public_key())
            certificate = next((cert for cert in issued if _public_der(cert.public_key()) == mine), None)
            if certificate is None:
                raise PkiError("% SCEP CertRep holds no certificate for the router's key")
            return Outcome(PkiStatus.SUCCESS, certificate=certificate)
        if reply.status in (PkiStatus.PENDING, PkiStatus.FAILURE):
            return Outcome(reply.status, fail_info=reply.fail_info)
        raise PkiError(f"% SCEP CertRep has pkiStatus {reply.status!r}: expected 0, 2 or 3")

    def enroll(self, ca: ScepCa, csr: x509.CertificateSigningRequest, private_key: rsa.RSAPrivateKey, *,
               clock: Callable[[], float], retry_minutes: int, retry_count: int,
               notify: Callable[[str], None]) -> x509.Certificate:
        """PKCSReq, then CertPoll every `retry_minutes` of `clock` (the device's, in seconds)
        while the CA answers PENDING, at most `retry_count` times. Returns the issued
        certificate; PkiError on FAILURE or time-out."""
        transaction_id = hashlib.sha256(_public_der(private_key.public_key())).hexdigest().upper()
        signer = _self_signed(csr.subject, private_key, datetime.fromtimestamp(clock(), tz=timezone.utc))
        inner = csr.public_bytes(serialization.Encoding.DER)
        outcome = self._exchange(ca, MessageType.PKCS_REQ, inner, transaction_id, signer, private_key)
        attempts = 0
        while outcome.status == PkiStatus.PENDING:
            if attempts >= retry_count:
                raise PkiError(
                    f"% Certificate request timed out: still pending after {retry_count} retries; "
                    "have the CA administrator approve it, then enter this command again"
                )
            attempts += 1
            due = clock() + retry_minutes * 60  # taken before telling, so a quick clock move counts
            notify(f"% Certificate request pending: retry {attempts} of {retry_count} in "
                   f"{retry_minutes} minute(s)\n")
            while clock() < due:
                time.sleep(CLOCK_TICK_S)
            poll = issuer_and_subject(ca.ca_cert.subject, csr.subject)
            outcome = self._exchange(ca, MessageType.CERT_POLL, poll, transaction_id, signer, private_key)
        if outcome.status == PkiStatus.FAILURE:
            reason = FAIL_INFO_TEXT.get(outcome.fail_info or "", f"failInfo {outcome.fail_info!r}")
            raise PkiError(f"% Certificate enrollment failed: the CA refused the request ({reason})")
        assert outcome.certificate is not None
        return outcome.certificate


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _self_signed(subject: x509.Name, private_key: rsa.RSAPrivateKey, now: datetime) -> x509.Certificate:
    """The requester's transient certificate that signs its messages (RFC 8894 2.3)."""
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(private_key.public_key()).serial_number(int.from_bytes(os.urandom(8), "big") | 1)
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=SIGNER_CERTIFICATE_DAYS))
        .sign(private_key, hashes.SHA256())
    )
