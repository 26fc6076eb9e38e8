"""A SCEP CA (RFC 8894) on loopback for the tests: http.server in a thread, port 0.

It answers GetCACaps, GetCACert and PKIOperation (PKCSReq, CertPoll) and issues with
`cryptography`. Its pkiMessages use the emulator's codec; strongSwan's `pki --scep` enrolling
against it (test_ssh_scep.py) shows that codec speaks SCEP to a client written by others.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AttributeOID, NameOID

from emulator.pki.scep import MessageType, PkiMessage, PkiStatus, build_pki_message, parse_pki_message

# strongSwan 5.9.8's `pki --scep` reads SHA-256 support off the SHA-384 line, so that is listed
# too (all of these are supported here).
CAPABILITIES = "POSTPKIOperation\nSHA-1\nSHA-256\nSHA-384\nSHA-512\nAES\nSCEPStandard\n"
BAD_REQUEST = "2"
_MESSAGE_NAMES = {MessageType.PKCS_REQ: "PKCSReq", MessageType.CERT_POLL: "CertPoll"}


@dataclass
class ScepCa:
    """The CA's key and certificate, its policy, and what it has seen (for assertions)."""

    challenge_password: str
    pending_polls: int = 0  # how many times a request is answered PENDING before it is issued
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    cert: x509.Certificate | None = None
    operations: list[str] = field(default_factory=list)
    pending: dict[str, tuple[x509.CertificateSigningRequest, int]] = field(default_factory=dict)
    issued: list[x509.Certificate] = field(default_factory=list)

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Loopback SCEP Root CA"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trust-dossier tests")])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, csr: x509.CertificateSigningRequest) -> x509.Certificate:
        now = dt.datetime.now(dt.timezone.utc)
        assert self.cert is not None
        cert = (
            x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.issued.append(cert)
        return cert

    def answer(self, request_der: bytes) -> bytes:
        """A CertRep for one PKCSReq or CertPoll."""
        assert self.cert is not None
        request = parse_pki_message(request_der)  # signed by the requester's enclosed certificate
        assert request.signer is not None
        self.operations.append(_MESSAGE_NAMES.get(request.message_type, request.message_type))
        inner = pkcs7.pkcs7_decrypt_der(request.content, self.cert, self.key, [])
        status, fail_info, issued = PkiStatus.FAILURE, BAD_REQUEST, None
        if request.message_type == MessageType.PKCS_REQ:
            csr = x509.load_der_x509_csr(inner)
            try:
                password = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
            except x509.AttributeNotFound:
                password = b""
            if csr.is_signature_valid and password == self.challenge_password.encode():
                status, fail_info = self._issue_or_wait(request.transaction_id, csr, self.pending_polls)
        elif request.message_type == MessageType.CERT_POLL and request.transaction_id in self.pending:
            csr, left = self.pending[request.transaction_id]
            status, fail_info = self._issue_or_wait(request.transaction_id, csr, left)
        content = b""
        if status == PkiStatus.SUCCESS:
            issued = self.issued[-1]
            degenerate = pkcs7.serialize_certificates([issued, self.cert], serialization.Encoding.DER)
            content = (
                pkcs7.PKCS7EnvelopeBuilder().set_data(degenerate).add_recipient(request.signer)
                .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
            )
        reply = PkiMessage(
            message_type=MessageType.CERT_REP, transaction_id=request.transaction_id,
            sender_nonce=secrets.token_bytes(16), recipient_nonce=request.sender_nonce,
            status=status, fail_info=fail_info, content=content,
        )
        return build_pki_message(reply, self.cert, self.key)

    def _issue_or_wait(self, transaction_id: str, csr: x509.CertificateSigningRequest, left: int) -> tuple[str, str | None]:
        if left > 0:
            self.pending[transaction_id] = (csr, left - 1)
            return PkiStatus.PENDING, None
        self.pending.pop(transaction_id, None)
        self.issue(csr)
        return PkiStatus.SUCCESS, None


def _handler(ca: ScepCa) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            return  # keep pytest's output clean; assertions look at ca.operations

        def _send(self, content_type: str, body: bytes, code: int = 200) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _operation(self, body: bytes | None) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            operation = query.get("operation", [""])[0]
            assert ca.cert is not None
            ca.operations.append(operation)
            if operation == "GetCACaps":
                self._send("text/plain", CAPABILITIES.encode())
            elif operation == "GetCACert":
                self._send("application/x-x509-ca-cert", ca.cert.public_bytes(serialization.Encoding.DER))
            elif operation == "PKIOperation":
                message = body if body is not None else base64.b64decode(query["message"][0])
                self._send("application/x-pki-message", ca.answer(message))
            else:
                self._send("text/plain", f"unknown operation {operation!r}".encode(), code=400)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._operation(None)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self._operation(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    return Handler


class ScepServer:
    """`with ScepServer(ca) as url:` serves `ca` at http://127.0.0.1:<port>/scep."""

    def __init__(self, ca: ScepCa) -> None:
        self.ca = ca
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ca))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/scep"

    def __enter__(self) -> str:
        self.thread.start()  # the socket is bound and listening already: no wait needed
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
