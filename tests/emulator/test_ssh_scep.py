"""SCEP enrollment (RFC 8894) over SSH: `enrollment url http://...`, `crypto ca authenticate`
with the seed's accept question, `crypto ca enroll` with the challenge password, pending and
retry, a refused password, and the issued certificate signing a dossier the verifier accepts.
The CA is tests/emulator/scep_ca.py on loopback; strongSwan's `pki --scep` enrolls against it
too, so it is a SCEP CA to a client the project did not write."""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import AttributeOID

from emu_ssh import PROMPT_RE, Shell, run, strip_timestamp
from scep_ca import ScepCa, ScepServer
from verifier.verify import verify_envelope

CHALLENGE = "enroll-me-7"
ACCEPT = r"Do you accept this certificate\?\? \[yes/no\]:$"


def _configure(shell: Shell, trustpoint: str, url: str, *extra: str) -> None:
    for line in ["configure", f"crypto ca trustpoint {trustpoint}", f"enrollment url {url}", *extra, "commit", "end"]:
        shell.cmd(line)


def _md5_spaced(cert: x509.Certificate) -> str:
    digest = hashlib.md5(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324
    return " ".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _messages(ca: ScepCa) -> list[str]:
    return [operation for operation in ca.operations if operation in ("PKCSReq", "CertPoll")]


def _authenticate(shell: Shell, trustpoint: str) -> str:
    output = shell.cmd(f"crypto ca authenticate {trustpoint}", expect=ACCEPT)
    shell.cmd("yes")
    return output


def _rsa_trustpoint(device, shell: Shell, url: str, *extra: str) -> None:
    """Trustpoint `myca` on a new RSA key `scepkey`, enrolling at `url`, authenticated."""
    run(device, "crypto key generate rsa scepkey", stdin="2048\n")
    _configure(shell, "myca", url, "rsakeypair scepkey", *extra)
    _authenticate(shell, "myca")


def _enroll(shell: Shell, trustpoint: str, password: str = CHALLENGE, again: str | None = None) -> str:
    """`crypto ca enroll` up to the subject questions' end; returns the screens before them."""
    head = shell.cmd(f"crypto ca enroll {trustpoint}", expect=r"Password: $")
    head += shell.cmd(password, expect=r"Re-enter Password: $")
    head += shell.cmd(again if again is not None else password, expect=r"subject name\? \[yes/no\]: $")
    shell.cmd("no", expect=r"IP address in the subject name\? \[yes/no\]: $")
    return head


def test_authenticate_shows_the_ca_fingerprint_and_keeps_it_only_on_yes(blank_fleet, scep_ca) -> None:
    ca, url = scep_ca
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        _configure(shell, "myca", url)
        output = shell.cmd("crypto ca authenticate myca", expect=ACCEPT)
        assert f"Fingerprint:{_md5_spaced(ca.cert)}" in output
        assert "CN=Loopback SCEP Root CA" in output
        refused = shell.cmd("no")
        assert "% Certificate not accepted." in refused
        assert shell.cmd("show crypto ca certificates myca").count("Loopback SCEP Root CA") == 0
        _authenticate(shell, "myca")
        shown = shell.cmd("show crypto ca certificates myca")
    assert "CA certificate" in shown and "Loopback SCEP Root CA" in shown and "Router certificate" not in shown
    assert ca.operations == ["GetCACaps", "GetCACert", "GetCACaps", "GetCACert"]


def test_enroll_sends_the_challenge_password_and_the_certificate_signs_a_dossier(blank_fleet, scep_ca) -> None:
    ca, url = scep_ca
    device = blank_fleet.devices[0]
    trustpoint = "system-trustpoint"
    run(device, "crypto key generate rsa system-enroll-key", stdin="2048\n")
    with Shell(device) as shell:
        _configure(shell, trustpoint, url, "keypair rsa system-enroll-key")
        _authenticate(shell, trustpoint)
        head = _enroll(shell, trustpoint)
        output = shell.cmd("no")
    assert "% Create a challenge password." in head and CHALLENGE not in head  # no echo
    assert "% Certificate request sent to Certificate Authority" in output
    assert re.search(r"Fingerprint: [0-9A-F]{8} [0-9A-F]{8} [0-9A-F]{8} [0-9A-F]{8}", output)
    assert "Certificate keypair configured Type: 1, Label: system-enroll-key." in output
    (issued,) = ca.issued
    assert ca.operations[-1] == "PKCSReq"
    assert "CN=Loopback SCEP Root CA" in output and issued.fingerprint(hashes.SHA1()).hex().upper() in output

    nonce = secrets.token_bytes(16)
    envelope = strip_timestamp(run(
        device, f"show platform security integrity dossier include packages nonce {nonce.hex()} "
                f"| utility sign nonce {nonce.hex()} include-certificate"))
    verdict = verify_envelope(envelope.encode(), roots=[ca.cert], expected_nonce=nonce)
    assert verdict.trusted, verdict.ids()
    assert verdict.leaf == issued and verdict.root == ca.cert and verdict.dossier is not None


def test_a_pending_request_is_polled_every_retry_period(blank_fleet, scep_ca) -> None:
    ca, url = scep_ca
    ca.pending_polls = 2
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        _rsa_trustpoint(device, shell, url, "enrollment retry period 2", "enrollment retry count 3")
        _enroll(shell, "myca")
        shell.send("no\r")
        for attempt in (1, 2):
            shell.read_until(rf"% Certificate request pending: retry {attempt} of 3 in 2 minute\(s\)\n")
            polls = ca.operations.count("CertPoll")
            device.device.advance_clock(60)  # half the period: no poll yet
            assert ca.operations.count("CertPoll") == polls
            device.device.advance_clock(61)
        output = shell.read_until(PROMPT_RE)
        shown = shell.cmd("show crypto ca certificates myca")
    assert "Certificate keypair configured Type: 1, Label: scepkey." in output
    assert _messages(ca) == ["PKCSReq", "CertPoll", "CertPoll"]
    assert "Router certificate" in shown


def test_enrollment_gives_up_after_the_retry_count(blank_fleet, scep_ca) -> None:
    ca, url = scep_ca
    ca.pending_polls = 99
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        _rsa_trustpoint(device, shell, url, "enrollment retry count 1")
        _enroll(shell, "myca")
        shell.send("no\r")
        shell.read_until(r"retry 1 of 1 in 1 minute\(s\)\n")
        device.device.advance_clock(61)
        output = shell.read_until(PROMPT_RE)
        shown = shell.cmd("show crypto ca certificates myca")
    assert "% Certificate request timed out: still pending after 1 retries" in output
    assert "Router certificate" not in shown and ca.issued == []


def test_a_refused_challenge_password_stores_nothing(blank_fleet, scep_ca) -> None:
    ca, url = scep_ca
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        _rsa_trustpoint(device, shell, url)
        _enroll(shell, "myca", password="not-the-one")
        output = shell.cmd("no")
        shown = shell.cmd("show crypto ca certificates myca")
    assert "% Certificate enrollment failed: the CA refused the request (badRequest" in output
    assert "Router certificate" not in shown and ca.issued == []


def test_mismatched_passwords_send_nothing(blank_fleet, scep_ca) -> None:
    ca, url = scep_ca
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        _rsa_trustpoint(device, shell, url)
        shell.cmd("crypto ca enroll myca", expect=r"Password: $")
        shell.cmd("one", expect=r"Re-enter Password: $")
        output = shell.cmd("two")
    assert "% Passwords do not match" in output
    assert "PKCSReq" not in ca.operations


def test_scep_needs_an_rsa_key(blank_fleet, scep_ca) -> None:
    _, url = scep_ca
    device = blank_fleet.devices[0]
    run(device, "crypto key generate ecdsa eckey", stdin="nistp256\n")
    with Shell(device) as shell:
        _configure(shell, "myca", url, "keypair ecdsa eckey")
        _authenticate(shell, "myca")
        _enroll(shell, "myca")
        output = shell.cmd("no")
    assert "% SCEP enrollment needs an RSA key pair" in output


def test_an_unreachable_ca_is_reported(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    with ScepServer(ScepCa(challenge_password=CHALLENGE)) as url:
        pass  # served and stopped: nothing listens on the port any more
    with Shell(device) as shell:
        _configure(shell, "myca", url)
        output = shell.cmd("crypto ca authenticate myca")
    assert f"% SCEP GetCACaps to {url} failed" in output


@pytest.mark.skipif(shutil.which("pki") is None, reason="strongSwan's pki (Debian strongswan-pki) not installed")
def test_strongswan_enrolls_against_the_test_ca(scep_ca, tmp_path: Path) -> None:
    """The test CA speaks SCEP to strongSwan's client: CA certificate, PKCSReq with the challenge
    password, a pending answer polled, then the certificate; and a wrong password refused."""
    ca, url = scep_ca
    ca.pending_polls = 1
    ca_file, key_file = tmp_path / "ca.der", tmp_path / "key.der"
    fetched = subprocess.run(["pki", "--scepca", "--url", url, "--caout", str(ca_file)],
                             capture_output=True, text=True, timeout=60)
    assert fetched.returncode == 0, fetched.stderr
    assert x509.load_der_x509_certificate(ca_file.read_bytes()) == ca.cert
    key_file.write_bytes(subprocess.run(["pki", "--gen", "--type", "rsa", "--size", "2048", "--outform", "der"],
                                        capture_output=True, check=True, timeout=60).stdout)

    def enroll(password: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["pki", "--scep", "--url", url, "--in", str(key_file), "--dn", "CN=strongswan-client, O=Example",
             "--password", password, "--cacert-enc", str(ca_file), "--cacert-sig", str(ca_file),
             "--interval", "1", "--maxpolltime", "30"],
            capture_output=True, timeout=60,
        )

    enrolled = enroll(CHALLENGE)
    assert enrolled.returncode == 0, enrolled.stderr.decode(errors="replace")[-2000:]
    issued = x509.load_der_x509_certificate(enrolled.stdout)
    issued.verify_directly_issued_by(ca.cert)
    assert issued.subject.rfc4514_string() == "O=Example,CN=strongswan-client"
    assert _messages(ca) == ["PKCSReq", "CertPoll"]

    refused = enroll("wrong")
    assert refused.returncode != 0 and refused.stdout == b""
    assert "badRequest" in refused.stderr.decode(errors="replace")


def test_cut_and_paste_request_carries_the_challenge_password(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    run(device, "crypto key generate rsa mykey", stdin="2048\n")
    ca = ScepCa(challenge_password=CHALLENGE)  # only its certificate: pasted, not fetched
    with Shell(device) as shell:
        for line in ["configure", "crypto ca trustpoint paste", "enrollment terminal", "rsakeypair mykey", "commit", "end"]:
            shell.cmd(line)
        shell.cmd("crypto ca authenticate paste", expect=r"on a line by itself\s*$")
        shell.send(ca.cert.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r") + "\r")
        shell.read_until(ACCEPT)
        shell.cmd("yes")
        head = _enroll(shell, "paste")
        output = shell.cmd("no")
    assert head.index("% Start certificate enrollment ...") < head.index("Password:") < head.index("Re-enter Password:")
    begin = output.index("-----BEGIN CERTIFICATE REQUEST-----")
    end = output.index("-----END CERTIFICATE REQUEST-----") + len("-----END CERTIFICATE REQUEST-----")
    csr = x509.load_pem_x509_csr(output[begin:end].encode())
    assert csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value == CHALLENGE.encode()
