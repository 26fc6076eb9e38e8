"""RSA usage keys over SSH, as the seed describes them: two key pairs (signature and encryption)
under one label, `crypto ca enroll` printing two requests, `crypto ca import` entered twice in
either order, and both keys and both router certificates shown."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from _pki_helpers import outside_ca
from emu_ssh import PROMPT_RE, Shell, run, strip_timestamp
from emulator.pki import PkiError
from emulator.pki.keys import generate_keypair, load_keypairs, save_keypair
from verifier.verify import verify_envelope

REQUEST_RE = re.compile(
    r"% (Signature|Encryption) key certificate request:\nCertificate Request follows:\n\n"
    r"(-----BEGIN CERTIFICATE REQUEST-----.+?-----END CERTIFICATE REQUEST-----)", re.S
)


def _issue(ca_key, ca_cert, csr: x509.CertificateSigningRequest, serial: int, *, encipherment: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    usage = x509.KeyUsage(not encipherment, False, encipherment, False, False, False, False, False, False)
    return (
        x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
        .public_key(csr.public_key()).serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(ca_key, hashes.SHA256())
    )


def _paste(shell: Shell, command: str, cert: x509.Certificate, expect: re.Pattern[str] | str = PROMPT_RE) -> str:
    shell.cmd(command, expect=r"on a line by itself\s*$")
    shell.send(cert.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r") + "\r")
    return shell.read_until(expect)


def _authenticate(shell: Shell, cert: x509.Certificate) -> None:
    _paste(shell, "crypto ca authenticate myca", cert, expect=r"Do you accept this certificate\?\? \[yes/no\]:$")
    shell.cmd("yes")


def _public_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _mypubkey_blocks(device) -> list[tuple[str, str, bytes]]:
    """(label, type, public DER) of each key `show crypto key mypubkey rsa` lists."""
    shown = strip_timestamp(run(device, "show crypto key mypubkey rsa"))
    blocks = []
    for block in shown.strip().split("\n\n"):
        lines = block.splitlines()
        data = "".join("".join(line.split()) for line in lines[5:])
        blocks.append((lines[0].split(": ", 1)[1], lines[1].split(": ", 1)[1], bytes.fromhex(data)))
    return blocks


def test_usage_keys_are_two_key_pairs_each_in_a_private_file(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    output = strip_timestamp(run(device, "crypto key generate rsa usage keys mykey", stdin="1024\n"))
    assert "for your Special Usage\nKeypair." in output and output.endswith("[OK]\n"), output
    keys = [block for block in _mypubkey_blocks(device) if block[0] == "mykey"]
    assert [(label, kind) for label, kind, _ in keys] == [("mykey", "RSA Signature"), ("mykey", "RSA Encryption")]
    assert keys[0][2] != keys[1][2]
    keypair = device.device.keys[("rsa", "mykey")]
    assert (_public_der(keypair.private_key.public_key()), _public_der(keypair.encryption_key.public_key())) == (
        keys[0][2], keys[1][2])
    folder = device.device.folder / "keys"
    for name in ("rsa-mykey.key.pem", "rsa-mykey.encryption-key.pem"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert strip_timestamp(run(device, "crypto key zeroize rsa mykey", stdin="yes\n")).endswith("[OK]\n")
    assert not (folder / "rsa-mykey.encryption-key.pem").exists()


def test_enroll_requests_two_certificates_and_import_takes_them_in_either_order(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    ca_key, ca_cert = outside_ca("Usage Keys Root CA")
    run(device, "crypto key generate rsa usage keys mykey", stdin="1024\n")
    with Shell(device) as shell:
        for line in ["configure", "crypto ca trustpoint myca", "enrollment terminal", "rsakeypair mykey",
                     "subject-name CN=router1,O=Example", "commit", "end"]:
            shell.cmd(line)
        _authenticate(shell, ca_cert)
        shell.cmd("crypto ca enroll myca", expect=r"Password: $")
        shell.cmd("s3cret", expect=r"Re-enter Password: $")
        shell.cmd("s3cret", expect=r"subject name\? \[yes/no\]: $")
        shell.cmd("yes", expect=r"\[yes/no\]: $")
        output = shell.cmd("no")
        requests = REQUEST_RE.findall(output.replace("\r", ""))
        assert [purpose for purpose, _ in requests] == ["Signature", "Encryption"], output
        assert output.count("Fingerprint: ") == 2
        csrs = [x509.load_pem_x509_csr(pem.encode()) for _, pem in requests]
        assert all(csr.is_signature_valid for csr in csrs)
        keypair = device.device.keys[("rsa", "mykey")]
        assert [_public_der(csr.public_key()) for csr in csrs] == [
            _public_der(keypair.private_key.public_key()), _public_der(keypair.encryption_key.public_key())]
        signature_cert = _issue(ca_key, ca_cert, csrs[0], 101, encipherment=False)
        encryption_cert = _issue(ca_key, ca_cert, csrs[1], 102, encipherment=True)
        # The seed: "It does not matter which certificate is pasted first."
        assert "successfully imported" in _paste(shell, "crypto ca import myca certificate", encryption_cert)
        assert "successfully imported" in _paste(shell, "crypto ca import myca certificate", signature_cert)
        shown = shell.cmd("show crypto ca certificates myca").replace("\r", "")
    routers = shown.split("Router certificate\n")[1:]
    assert [part.splitlines()[0] for part in routers] == ["  Key usage      : Signature", "  Key usage      : Encryption"]
    assert "Serial Number  : 65" in routers[0] and "Serial Number  : 66" in routers[1], shown
    assert device.device.certificates("myca")[1] == signature_cert
    assert device.device.encryption_certificate("myca") == encryption_cert
    run(device, "clear crypto ca certificates myca")
    assert device.device.encryption_certificate("myca") is None


def test_a_certificate_for_neither_usage_key_is_refused(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    ca_key, ca_cert = outside_ca("Usage Keys Root CA")
    run(device, "crypto key generate rsa usage keys mykey", stdin="1024\n")
    with Shell(device) as shell:
        for line in ["configure", "crypto ca trustpoint myca", "enrollment terminal", "rsakeypair mykey", "commit", "end"]:
            shell.cmd(line)
        _authenticate(shell, ca_cert)
        stranger = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(stranger, hashes.SHA256()))
        output = _paste(shell, "crypto ca import myca certificate", _issue(ca_key, ca_cert, csr, 5, encipherment=False))
    assert "does not match either key pair rsa mykey of trustpoint myca" in output, output


def test_scep_enrolls_both_keys_and_the_signature_key_signs_the_dossier(blank_fleet, scep_ca) -> None:
    ca, url = scep_ca
    device = blank_fleet.devices[0]
    trustpoint = "system-trustpoint"
    run(device, "crypto key generate rsa usage keys system-enroll-key", stdin="2048\n")
    with Shell(device) as shell:
        for line in ["configure", f"crypto ca trustpoint {trustpoint}", f"enrollment url {url}",
                     "rsakeypair system-enroll-key", "commit", "end"]:
            shell.cmd(line)
        shell.cmd(f"crypto ca authenticate {trustpoint}", expect=r"Do you accept this certificate\?\? \[yes/no\]:$")
        shell.cmd("yes")
        shell.cmd(f"crypto ca enroll {trustpoint}", expect=r"Password: $")
        shell.cmd("enroll-me-7", expect=r"Re-enter Password: $")
        shell.cmd("enroll-me-7", expect=r"subject name\? \[yes/no\]: $")
        shell.cmd("no", expect=r"IP address in the subject name\? \[yes/no\]: $")
        output = shell.cmd("no").replace("\r", "")
    assert output.index("% Signature key certificate request:") < output.index("% Encryption key certificate request:")
    assert output.count("% Certificate request sent to Certificate Authority") == 2
    signature_cert, encryption_cert = ca.issued
    keypair = device.device.keys[("rsa", "system-enroll-key")]
    assert _public_der(signature_cert.public_key()) == _public_der(keypair.private_key.public_key())
    assert _public_der(encryption_cert.public_key()) == _public_der(keypair.encryption_key.public_key())
    nonce = secrets.token_bytes(16)
    envelope = strip_timestamp(run(
        device, f"show platform security integrity dossier include packages nonce {nonce.hex()} "
                f"| utility sign nonce {nonce.hex()} include-certificate"))
    verdict = verify_envelope(envelope.encode(), roots=[ca.cert], expected_nonce=nonce)
    assert verdict.trusted, verdict.ids()
    assert verdict.leaf == signature_cert


def test_self_enrollment_issues_a_certificate_per_usage_key(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    run(device, "crypto key generate rsa usage keys mykey", stdin="1024\n")
    run(device, "crypto key generate rsa rootkey", stdin="2048\n")
    with Shell(device) as shell:
        for line in ["configure", "crypto ca trustpoint selfca", "enrollment url self", "ca-keypair rsa rootkey",
                     "rsakeypair mykey", "commit", "end"]:
            shell.cmd(line)
        shell.cmd("crypto ca authenticate selfca")
        shell.cmd("crypto ca enroll selfca", expect=r"subject name\? \[yes/no\]: $")
        shell.cmd("no", expect=r"\[yes/no\]: $")
        output = shell.cmd("no").replace("\r", "")
        shown = shell.cmd("show crypto ca certificates selfca").replace("\r", "")
    assert output.count("Certificate keypair configured Type: 1, Label: mykey.") == 2, output
    assert "Key usage      : Signature" in shown and "Key usage      : Encryption" in shown, shown
    keypair = device.device.keys[("rsa", "mykey")]
    assert _public_der(device.device.encryption_certificate("selfca").public_key()) == _public_der(
        keypair.encryption_key.public_key())


def test_usage_keys_come_back_from_the_key_store_with_both_halves(tmp_path) -> None:
    keypair = generate_keypair("rsa", "mykey", modulus=1024, usage="usage", now=dt.datetime.now(dt.timezone.utc))
    save_keypair(keypair, tmp_path)
    loaded = load_keypairs(tmp_path)[("rsa", "mykey")]
    assert [(purpose, half.public_der()) for purpose, half in loaded.halves()] == [
        (purpose, half.public_der()) for purpose, half in keypair.halves()]
    (tmp_path / "rsa-mykey.encryption-key.pem").write_text("not a key")
    with pytest.raises(PkiError, match=r"Key store damaged: cannot read .*rsa-mykey.encryption-key.pem"):
        load_keypairs(tmp_path)
