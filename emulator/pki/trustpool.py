"""The CA trust pool: the built-in bundle of vendor roots, the bundle downloaded with `crypto ca
trustpool import url`, the `crypto ca trustpool policy` settings, and the order in which a
peer's certificate finds its CA (trustpoints first, then the pool: seed, "Handling of CA
Certificates appearing both in Trust Pool and Trust Point")."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import verification

from . import PkiError
from .httpread import read_capped
from .screens import crl_distribution_points, format_dn, format_ios_time, format_serial, sha1_fingerprint_hex

__all__ = [
    "BUILT_IN",
    "DOWNLOADED",
    "Anchor",
    "PoolEntry",
    "TrustpoolPolicy",
    "active_entries",
    "auto_update_due",
    "fetch_url",
    "format_policy",
    "format_trustpool",
    "load_downloaded",
    "parse_bundle",
    "save_downloaded",
    "validate_peer_certificate",
]

BUILT_IN = "Built-In"
DOWNLOADED = "Downloaded"
# DoS bounds on what a download may hand us: Cisco's full bundle (ios.p7b) is about 60 kB.
MAX_BUNDLE_BYTES = 1024 * 1024
MAX_CRL_BYTES = 4 * 1024 * 1024
# A download that hangs must not hold the CLI session for ever: each socket operation waits at
# most FETCH_TIMEOUT_SECONDS, and the whole fetch (connect, headers, body) at most
# FETCH_DEADLINE_SECONDS, so a server that trickles a byte at a time cannot stretch it.
FETCH_TIMEOUT_SECONDS = 10.0
FETCH_DEADLINE_SECONDS = 30.0
_DOWNLOADED_FILE = "downloaded.pem"


@dataclass(frozen=True)
class PoolEntry:
    """One CA certificate of the pool and where it came from (BUILT_IN or DOWNLOADED)."""

    certificate: x509.Certificate
    origin: str


@dataclass(frozen=True)
class TrustpoolPolicy:
    """`crypto ca trustpool policy`: `cabundle url`, `crl optional`, `description`."""

    cabundle_url: str | None = None
    crl_optional: bool = False
    description: str | None = None


@dataclass(frozen=True)
class Anchor:
    """A CA a peer certificate may chain to, the store it is in and that store's CRL policy."""

    certificate: x509.Certificate
    source: str  # "trustpoint <name>" or "trustpool"
    crl_optional: bool


def parse_bundle(data: bytes) -> list[x509.Certificate]:
    """A CA bundle: concatenated PEM certificates, or PKCS#7 (DER or PEM). PkiError otherwise."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise PkiError(f"% Invalid CA bundle: expected at most {MAX_BUNDLE_BYTES} bytes; found {len(data)}")
    loaders: list[Callable[[bytes], list[x509.Certificate]]]
    if b"-----BEGIN PKCS7-----" in data:
        loaders = [pkcs7.load_pem_pkcs7_certificates]
    elif b"-----BEGIN" in data:
        loaders = [x509.load_pem_x509_certificates]
    else:
        loaders = [pkcs7.load_der_pkcs7_certificates, lambda der: [x509.load_der_x509_certificate(der)]]
    errors = []
    for load in loaders:
        try:
            certificates = load(data)
        except ValueError as error:
            errors.append(str(error))
            continue
        if certificates:
            return certificates
    raise PkiError(
        "% Invalid CA bundle: expected PEM certificates or a PKCS#7 bundle (.p7b); found "
        f"{len(data)} bytes that are neither" + (f" ({errors[-1]})" if errors else "")
    )


def load_downloaded(folder: Path) -> list[x509.Certificate]:
    """The downloaded bundle kept in the device's `trustpool/` folder ([] when none)."""
    path = Path(folder) / _DOWNLOADED_FILE
    if not path.exists():
        return []
    return x509.load_pem_x509_certificates(path.read_bytes())


def save_downloaded(folder: Path, certificates: Sequence[x509.Certificate]) -> None:
    """Replace the downloaded bundle (seed: "any update ... will replace the entire trustpool")."""
    path = Path(folder) / _DOWNLOADED_FILE
    if not certificates:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates))
    temporary.replace(path)


def active_entries(built_in: Iterable[x509.Certificate], downloaded: Iterable[x509.Certificate]) -> list[PoolEntry]:
    """The pool as used: built-in certificates first, except one whose subject a downloaded
    certificate also has (seed: it "is rendered inactive after an update")."""
    downloaded = list(downloaded)
    replaced = {cert.subject for cert in downloaded}
    entries = [PoolEntry(cert, BUILT_IN) for cert in built_in if cert.subject not in replaced]
    return entries + [PoolEntry(cert, DOWNLOADED) for cert in downloaded]


def auto_update_due(entries: Sequence[PoolEntry], policy: TrustpoolPolicy, now: datetime) -> bool:
    """True when the pool's earliest-expiring CA has expired and `cabundle url` says where to
    get the next bundle (seed: "When the CA trustpool expires, the policy is read, the bundle is
    loaded, and the PKI trustpool is replaced")."""
    if policy.cabundle_url is None or not entries:
        return False
    return min(entry.certificate.not_valid_after_utc for entry in entries) <= now


def format_trustpool(entries: Sequence[PoolEntry]) -> str:
    """`show crypto ca trustpool` in the seed's layout, one field a line."""
    lines: list[str] = []
    for entry in entries:
        cert = entry.certificate
        lines += [
            f"Trustpool: {entry.origin} CA certificate",
            f"Serial Number : {format_serial(cert.serial_number)}",
            f"Subject: {format_dn(cert.subject)}",
            f"Issued By : {format_dn(cert.issuer)}",
            f"Validity Start : {format_ios_time(cert.not_valid_before_utc)}",
            f"Validity End : {format_ios_time(cert.not_valid_after_utc)}",
            f"SHA1 Fingerprint: {sha1_fingerprint_hex(cert)}",
        ]
    return "\n".join(lines) + "\n" if lines else "% The CA trustpool is empty\n"


def format_policy(policy: TrustpoolPolicy, entries: Sequence[PoolEntry]) -> str:
    """`show crypto ca trustpool policy`. The seed shows no layout for it; this one names each
    setting of `crypto ca trustpool policy` and what the pool holds."""
    built_in = sum(entry.origin == BUILT_IN for entry in entries)
    revocation = "disabled (crl optional)" if policy.crl_optional else "enabled (CRL required)"
    return "\n".join([
        "Trustpool Policy",
        f"  Description         : {policy.description or 'not configured'}",
        f"  CA bundle URL       : {policy.cabundle_url or 'not configured'}",
        f"  Revocation checking : {revocation}",
        f"  CA certificates     : {built_in} built-in, {len(entries) - built_in} downloaded",
    ]) + "\n"


# --- downloads and peer validation ------------------------------------------------------------


def _verify_chain(leaf: x509.Certificate, anchor: x509.Certificate, host: str, now: datetime) -> None:
    """Raise verification.VerificationError unless `leaf` is valid for `host` under `anchor`."""
    try:
        subject: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        subject = x509.DNSName(host)
    verifier = (
        verification.PolicyBuilder().store(verification.Store([anchor])).time(now)
        .build_server_verifier(subject)
    )
    verifier.verify(leaf, [])


def validate_peer_certificate(
    leaf: x509.Certificate,
    anchors: Sequence[Anchor],
    *,
    host: str,
    now: datetime,
    fetch_crl: Callable[[str], bytes],
) -> Anchor:
    """The anchor that vouches for a peer's (server's) certificate; PkiError when none does.

    (1) anchors are tried in the order given: every trustpoint's CA, then the pool's;
    (2) the first one the certificate chains to decides, with its store's policy: a trustpoint's
        CA and policy come before the same CA in the pool (seed);
    (3) unless that policy says `crl optional`, the CRL named by the certificate's CRL
        distribution point is fetched with `fetch_crl`, checked against the anchor, and the
        certificate must not be on it; no CRL means the revocation status is unknown: refused.
    """
    for anchor in anchors:  # (1)
        try:
            _verify_chain(leaf, anchor.certificate, host, now)
        except verification.VerificationError:
            continue
        if not anchor.crl_optional:  # (2) this anchor's policy decides
            _check_revocation(leaf, anchor, now, fetch_crl)  # (3)
        return anchor
    raise PkiError(
        f"% Certificate validation failed for {host}: expected a certificate issued by a "
        f"trustpoint CA or a trustpool CA and valid for {host} at {format_ios_time(now)}; "
        f"found one issued by {format_dn(leaf.issuer)} for {format_dn(leaf.subject)}"
    )


def _check_revocation(
    leaf: x509.Certificate, anchor: Anchor, now: datetime, fetch_crl: Callable[[str], bytes]
) -> None:
    unknown = (
        f"% Revocation status of {format_dn(leaf.subject)} unknown: the {anchor.source} policy "
        "requires a CRL"
    )
    urls = [url for url in crl_distribution_points(leaf) if url.startswith("http://")]
    if not urls:
        raise PkiError(f"{unknown} and the certificate names no http CRL distribution point; "
                       "configure 'crl optional' to skip the check")
    data = fetch_crl(urls[0])
    try:
        crl = x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)
    except ValueError as error:
        raise PkiError(f"{unknown}; {urls[0]} did not return a CRL ({error})") from error
    if crl.issuer != anchor.certificate.subject or not crl.is_signature_valid(anchor.certificate.public_key()):
        raise PkiError(f"{unknown}; the CRL from {urls[0]} is not signed by {format_dn(anchor.certificate.subject)}")
    if crl.next_update_utc is not None and crl.next_update_utc < now:
        raise PkiError(f"{unknown}; the CRL from {urls[0]} expired at {format_ios_time(crl.next_update_utc)}")
    revoked = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    if revoked is not None:
        raise PkiError(
            f"% Certificate {format_serial(leaf.serial_number)} ({format_dn(leaf.subject)}) was revoked "
            f"at {format_ios_time(revoked.revocation_date_utc)}"
        )


def fetch_url(
    url: str,
    *,
    max_bytes: int = MAX_BUNDLE_BYTES,
    check_server: Callable[[x509.Certificate, str], Anchor] | None = None,
) -> bytes:
    """GET `url` (http, or https whose server certificate `check_server` must accept).

    The whole fetch ends within FETCH_DEADLINE_SECONDS. Raises PkiError naming the URL and what
    went wrong (scheme, connection, status, size, deadline).
    """
    deadline = time.monotonic() + FETCH_DEADLINE_SECONDS
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PkiError(f"% Invalid URL {url!r}: expected http://host[:port]/path or https://...")
    if parts.scheme == "https" and check_server is None:
        raise PkiError(f"% Cannot fetch {url}: no CA store to check the server's certificate")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    timeout = min(FETCH_TIMEOUT_SECONDS, FETCH_DEADLINE_SECONDS)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        # The server's certificate is checked below against the trustpoints and the pool, not
        # by ssl's own store, so that the seed's lookup order and policies apply.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    expired = threading.Event()
    # The socket, kept here: http.client lets go of it when it hands it to the response.
    sockets: list[socket.socket] = []

    def cut_off() -> None:
        # The deadline passed while a read was blocked (a header trickled a byte at a time):
        # shutting the socket down wakes that read up.
        expired.set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), cut_off)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.connect()
        assert connection.sock is not None
        sockets.append(connection.sock)
        if expired.is_set():  # the watchdog fired while connecting
            raise TimeoutError("connecting took too long")
        if check_server is not None and parts.scheme == "https":
            der = connection.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
            check_server(x509.load_der_x509_certificate(der), parts.hostname)
        connection.request("GET", path, headers={"User-Agent": "Cisco-IOS-XR-PKI"})
        response = connection.getresponse()
        if response.status != 200:
            raise PkiError(f"% Cannot fetch {url}: the server answered {response.status} {response.reason}")
        data = read_capped(response, max_bytes, deadline, sockets[0], per_read_timeout=timeout)
    except (OSError, http.client.HTTPException, ValueError) as error:
        if expired.is_set() or time.monotonic() >= deadline:
            raise PkiError(
                f"% Cannot fetch {url}: no complete answer within {FETCH_DEADLINE_SECONDS:g} seconds"
            ) from error
        raise PkiError(f"% Cannot fetch {url}: {error}") from error
    finally:
        watchdog.cancel()
        connection.close()
    if len(data) > max_bytes:
        raise PkiError(f"% Cannot fetch {url}: expected at most {max_bytes} bytes; found more")
    return data
