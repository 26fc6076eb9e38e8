"""The CA trust pool over SSH: the built-in bundle, `crypto ca trustpool import url` from HTTP
servers on loopback (PEM and PKCS#7, over http and https), `clean`, the policy shown and used,
and a trustpoint's CA and policy taking precedence over the same CA in the pool."""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emu_ssh import Shell, run, strip_timestamp
from emulator import iosxe
from emulator.pki import trustpool as trustpool_mod

NOW = dt.datetime.now(dt.timezone.utc)


def _ca(name: str, *, days: int = 365) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, *, crl_url: str | None = None,
                 ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bundle-server")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1)).not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if crl_url is not None:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _crl(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, revoked: list[int]) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
        .last_update(NOW - dt.timedelta(hours=1)).next_update(NOW + dt.timedelta(days=7))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - dt.timedelta(minutes=5)).build())
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


@contextmanager
def _http_server(files: dict[str, bytes], tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """Serve `files` (path -> body, changeable while running) on 127.0.0.1, port 0; yields the
    base URL. With `tls` (certificate chain file, key file) it serves https."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass  # keep pytest's output clean

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # bound (ready) on return
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _show(device, command: str) -> str:
    return strip_timestamp(run(device, command))


def _configure(device, lines: list[str]) -> None:
    with Shell(device) as shell:
        for line in ["configure", *lines, "commit", "end"]:
            shell.cmd(line)


def test_built_in_bundle_is_the_emulated_vendor_roots_in_the_seed_layout(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    authority = iosxe.load_authority(device.device.folder.parent)
    shown = _show(device, "show crypto ca trustpool")
    root = authority.root
    fingerprint = root.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S324 - the seed's column
    expected_root = "\n".join([
        "Trustpool: Built-In CA certificate",
        "Serial Number : " + ":".join(f"{b:02X}" for b in root.serial_number.to_bytes((root.serial_number.bit_length() + 7) // 8, "big")),
        f"Subject: {root.subject.rfc4514_string()}",
        f"Issued By : {root.issuer.rfc4514_string()}",
        f"Validity Start : {root.not_valid_before_utc:%H:%M:%S} UTC {root.not_valid_before_utc:%a %b %d %Y}",
        f"Validity End : {root.not_valid_after_utc:%H:%M:%S} UTC {root.not_valid_after_utc:%a %b %d %Y}",
        f"SHA1 Fingerprint: {fingerprint}",
    ])
    assert shown.startswith(expected_root + "\n")
    assert shown.count("Trustpool: Built-In CA certificate") == 2  # the SUDI root and its sub-CA


def test_import_url_fetches_pem_and_pkcs7_bundles_and_clean_removes_them(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    _, first = _ca("Bundle CA One")
    _, second = _ca("Bundle CA Two")
    files = {
        "/ios.pem": _pem(first),
        "/ios.p7b": pkcs7.serialize_certificates([first, second], serialization.Encoding.DER),
    }
    with _http_server(files) as base:
        output = strip_timestamp(run(device, f"crypto ca trustpool import url {base}/ios.pem"))
        assert output.startswith(f"Reading file from {base}/ios.pem\n") and "1 CA certificates" in output
        shown = _show(device, "show crypto ca trustpool")
        assert "Trustpool: Downloaded CA certificate" in shown and "CN=Bundle CA One" in shown
        # An import replaces the whole downloaded bundle (seed).
        run(device, f"crypto ca trustpool import url {base}/ios.p7b")
        shown = _show(device, "show crypto ca trustpool")
        assert shown.count("Trustpool: Downloaded CA certificate") == 2 and "CN=Bundle CA Two" in shown
        missing = strip_timestamp(run(device, f"crypto ca trustpool import url {base}/absent.p7b"))
        assert "\n% Cannot fetch" in missing and "404 Not Found" in missing
    assert strip_timestamp(run(device, "crypto ca trustpool import url clean")) == ""
    shown = _show(device, "show crypto ca trustpool")
    assert "Downloaded" not in shown and shown.count("Built-In") == 2


def test_policy_settings_are_shown_and_cabundle_url_updates_an_expired_pool(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    _, short_lived = _ca("Short Lived CA", days=2)
    _, successor = _ca("Successor CA", days=3650)
    files = {"/first.pem": _pem(short_lived), "/next.pem": _pem(successor)}
    with _http_server(files) as base:
        _configure(device, ["crypto ca trustpool policy", f"cabundle url {base}/next.pem", "crl optional",
                            "description Trustpool for Test."])
        policy = _show(device, "show crypto ca trustpool policy")
        assert "Description         : Trustpool for Test." in policy
        assert f"CA bundle URL       : {base}/next.pem" in policy
        assert "Revocation checking : disabled (crl optional)" in policy
        running = _show(device, "show running-config crypto ca trustpool policy")
        assert f"cabundle url {base}/next.pem" in running and "crl optional" in running
        run(device, f"crypto ca trustpool import url {base}/first.pem")
        assert "CN=Short Lived CA" in _show(device, "show crypto ca trustpool")
        device.device.advance_clock(3 * 86400)  # the pool's earliest CA has now expired
        shown = _show(device, "show crypto ca trustpool")
    assert "CN=Successor CA" in shown and "Short Lived CA" not in shown


@pytest.fixture()
def https_bundle(tmp_path: Path) -> Iterator[tuple[str, x509.Certificate, dict[str, bytes], int]]:
    """An https server whose certificate (for 127.0.0.1, with a CRL distribution point on a
    second, plain http server) is issued by a test CA. Yields (https base URL, the CA, the
    http server's files, the server certificate's serial)."""
    ca_key, ca_cert = _ca("Peer Root CA")
    crl_files: dict[str, bytes] = {}
    with _http_server(crl_files) as crl_base:
        crl_files["/peer.crl"] = _crl(ca_key, ca_cert, [])
        crl_files["/peer-ca.pem"] = _pem(ca_cert)
        key, cert = _server_cert(ca_key, ca_cert, crl_url=f"{crl_base}/peer.crl")
        chain, key_file = tmp_path / "server.pem", tmp_path / "server.key"
        chain.write_bytes(_pem(cert, ca_cert))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        crl_files["/revoke"] = _crl(ca_key, ca_cert, [cert.serial_number])
        crl_files["__base__"] = crl_base.encode()
        with _http_server({"/bundle.pem": _pem(ca_cert)}, tls=(chain, key_file)) as base:
            yield base, ca_cert, crl_files, cert.serial_number


def test_https_import_checks_the_server_against_the_pool_and_its_crl_policy(blank_fleet, https_bundle) -> None:
    device = blank_fleet.devices[0]
    base, _, crl_files, _ = https_bundle
    # Not yet in any store: refused.
    output = strip_timestamp(run(device, f"crypto ca trustpool import url {base}/bundle.pem"))
    assert "% Certificate validation failed for 127.0.0.1" in output
    run(device, f"crypto ca trustpool import url {crl_files['__base__'].decode()}/peer-ca.pem")
    # In the pool, CRL required (the default policy): the CRL is fetched and the server is not on it.
    output = strip_timestamp(run(device, f"crypto ca trustpool import url {base}/bundle.pem"))
    assert "1 CA certificates" in output, output
    # Revoked: refused.
    crl_files["/peer.crl"] = crl_files["/revoke"]
    output = strip_timestamp(run(device, f"crypto ca trustpool import url {base}/bundle.pem"))
    assert "was revoked" in output, output
    # The pool policy's `crl optional` turns the check off.
    _configure(device, ["crypto ca trustpool policy", "crl optional"])
    output = strip_timestamp(run(device, f"crypto ca trustpool import url {base}/bundle.pem"))
    assert "1 CA certificates" in output, output


def test_a_trustpoint_ca_and_its_policy_come_before_the_same_ca_in_the_pool(blank_fleet, https_bundle) -> None:
    device = blank_fleet.devices[0]
    base, ca_cert, crl_files, _ = https_bundle
    crl_files["/peer.crl"] = crl_files["/revoke"]  # the server's certificate is revoked
    run(device, f"crypto ca trustpool import url {crl_files['__base__'].decode()}/peer-ca.pem")
    _configure(device, ["crypto ca trustpool policy", "crl optional"])
    # Only in the pool, whose policy skips the CRL: accepted.
    assert "1 CA certificates" in strip_timestamp(run(device, f"crypto ca trustpool import url {base}/bundle.pem"))
    # The same CA in a trustpoint that requires a CRL: the trustpoint decides, so the revocation counts.
    _configure(device, ["crypto ca trustpoint peer", "enrollment terminal"])
    with Shell(device) as shell:
        shell.cmd("crypto ca authenticate peer", expect=r"on a line by itself\s*$")
        shell.send(_pem(ca_cert).decode().replace("\n", "\r") + "\r")
        shell.read_until(r"Do you accept this certificate\?\? \[yes/no\]:$")
        shell.cmd("yes")
    output = strip_timestamp(run(device, f"crypto ca trustpool import url {base}/bundle.pem"))
    assert "was revoked" in output, output
    # The trustpoint's own `crl optional`: accepted again through the trustpoint.
    _configure(device, ["crypto ca trustpoint peer", "crl optional"])
    assert "1 CA certificates" in strip_timestamp(run(device, f"crypto ca trustpool import url {base}/bundle.pem"))
    # With the pool requiring a CRL, the trustpoint's policy still decides.
    _configure(device, ["crypto ca trustpool policy", "no crl optional"])
    assert "1 CA certificates" in strip_timestamp(run(device, f"crypto ca trustpool import url {base}/bundle.pem"))


@contextmanager
def _trickling_server() -> Iterator[tuple[str, threading.Event]]:
    """An HTTP server on 127.0.0.1 (port 0) that answers each request with one byte and then
    says nothing more until the test ends. Yields (base URL, set once a request came in)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop, requested = threading.Event(), threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            conn.recv(65536)
            conn.sendall(b"H")
            requested.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", requested
    finally:
        stop.set()
        listener.close()
        for conn in held:
            conn.close()
        thread.join(5)


def test_a_trickling_cabundle_server_neither_hangs_the_show_nor_holds_the_device(blank_fleet, monkeypatch) -> None:
    """The due automatic update downloads without the device's lock and within a total deadline:
    meanwhile the device's other commands and its expiry alert check go on."""
    deadline = 3.0
    monkeypatch.setattr(trustpool_mod, "FETCH_DEADLINE_SECONDS", deadline)
    device = blank_fleet.devices[0]
    _, short_lived = _ca("Short Lived CA", days=2)
    with _http_server({"/first.pem": _pem(short_lived)}) as base, _trickling_server() as (slow, requested):
        run(device, f"crypto ca trustpool import url {base}/first.pem")
        _configure(device, ["crypto ca trustpool policy", f"cabundle url {slow}/next.pem"])
        device.device.advance_clock(3 * 86400)  # the pool's earliest CA has expired: update due
        shown: list[str] = []
        started = time.monotonic()
        show = threading.Thread(target=lambda: shown.append(_show(device, "show crypto ca trustpool")))
        show.start()
        assert requested.wait(10), "the update did not start"
        # While the download trickles: the device's lock is free, the alert check runs, and a
        # command that takes the lock (a commit) answers.
        assert device.device.alerts.check(lock_timeout=0.5) is not None
        _configure(device, ["crypto ca trustpool policy", "description Still answering."])
        assert "description Still answering." in _show(device, "show running-config crypto ca trustpool policy")
        show.join(deadline + 20)
        elapsed = time.monotonic() - started
    assert not show.is_alive()
    assert elapsed < deadline + 15
    assert "% Trustpool automatic update failed: Cannot fetch" in shown[0]
    assert f"no complete answer within {deadline:g} seconds" in shown[0]
    assert "CN=Short Lived CA" in shown[0]  # the pool stays as it was
