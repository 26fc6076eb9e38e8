"""Certificates over SSH: re-keying, cut-and-paste enrollment, every key type (openssl too)."""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from _pki_helpers import outside_ca
from emu_proof import check_envelope
from emu_ssh import Shell, run, strip_timestamp
from emulator.fleet import Fleet

TP = "system-trustpoint"


def signed(device, nonce: str | None = None) -> dict:
    nonce = nonce or secrets.token_hex(16)
    output = run(device, f"show platform security integrity dossier include packages nonce {nonce} "
                         f"| utility sign nonce {nonce} include-certificate")
    return check_envelope(strip_timestamp(output), bytes.fromhex(nonce))


def test_rekey_issues_a_new_leaf_under_the_same_root(fleet) -> None:
    device = fleet.devices[1]
    before = signed(device)
    output = run(device, "crypto key generate ecdsa system-enroll-key", stdin="yes\nnistp256\n")
    assert "You already have keys defined for system-enroll-key" in output
    run(device, f"crypto ca enroll {TP}", stdin="yes\nno\n")
    after = signed(device)
    assert after["root"] == before["root"]
    assert after["leaf"].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
        before["leaf"].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert after["leaf"].serial_number > before["leaf"].serial_number


def test_clear_certificates_then_signing_fails_clearly(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    device.device.provision("ecdsa-p256")
    run(device, f"clear crypto ca certificates {TP}")
    output = strip_timestamp(run(device, "show version | utility sign nonce 01"))
    assert output.startswith("% Signing failed") and TP in output
    assert strip_timestamp(run(device, f"show crypto ca certificates {TP}")) == ""
    run(device, f"crypto ca authenticate {TP}")
    run(device, f"crypto ca enroll {TP}", stdin="yes\nyes\n10.1.1.1\n")
    proof = signed(device)
    assert "10.1.1.1" in str(proof["leaf"].subject)


def test_signing_with_no_trustpoint_is_refused(blank_fleet) -> None:
    output = strip_timestamp(run(blank_fleet.devices[0], "show version | utility sign nonce 0102"))
    assert output.startswith("% Signing failed")


def test_no_crypto_ca_trustpoint_removes_it(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    device.device.provision("ecdsa-p256")
    with Shell(device) as shell:
        shell.cmd("configure")
        shell.cmd(f"no crypto ca trustpoint {TP}")
        shell.cmd("commit")
        shell.cmd("end")
    assert strip_timestamp(run(device, f"show running-config crypto ca trustpoint {TP}")) == "% No such configuration item(s)\n"


def test_cut_and_paste_enrollment_with_an_outside_ca(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    ca_key, ca_cert = outside_ca()
    run(device, "crypto key generate ecdsa mykey", stdin="nistp256\n")
    with Shell(device) as shell:
        for line in ["configure", "crypto ca trustpoint myca", "enrollment terminal", "keypair ecdsa mykey",
                     "subject-name CN=router1,O=Example", "commit", "end"]:
            shell.cmd(line)
        shell.cmd("crypto ca authenticate myca", expect=r"on a line by itself\s*$")
        pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        shell.send(pem.replace("\n", "\r") + "\r")
        output = shell.read_until(r"Do you accept this certificate\?\? \[yes/no\]:$")
        assert "Fingerprint" in output
        shell.cmd("yes")
        shell.cmd("crypto ca enroll myca", expect=r"Password: $")
        shell.cmd("s3cret", expect=r"Re-enter Password: $")
        shell.cmd("s3cret", expect=r"subject name\? \[yes/no\]: $")
        shell.cmd("yes", expect=r"\[yes/no\]: $")
        output = shell.cmd("no")
        begin = output.index("-----BEGIN CERTIFICATE REQUEST-----")
        end = output.index("-----END CERTIFICATE REQUEST-----") + len("-----END CERTIFICATE REQUEST-----")
        csr = x509.load_pem_x509_csr(output[begin:end].encode())
        assert csr.is_signature_valid
        now = dt.datetime.now(dt.timezone.utc)
        issued = (
            x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
            .public_key(csr.public_key()).serial_number(99)
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        shell.cmd("crypto ca import myca certificate", expect=r"on a line by itself\s*$")
        shell.send(issued.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r") + "\r")
        output = shell.read_until(r"RP/0/RP0/CPU0:[\w.-]+#$")
        assert "successfully imported" in output
        shown = shell.cmd("show crypto ca certificates myca")
        assert "Enterprise Root CA" in shown


def test_import_of_a_certificate_for_another_key_is_refused(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    ca_key, ca_cert = outside_ca()
    run(device, "crypto key generate ecdsa mykey", stdin="nistp256\n")
    with Shell(device) as shell:
        for line in ["configure", "crypto ca trustpoint myca", "enrollment terminal", "keypair ecdsa mykey", "commit", "end"]:
            shell.cmd(line)
        shell.cmd("crypto ca authenticate myca", expect=r"on a line by itself\s*$")
        shell.send(ca_cert.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r") + "\r")
        shell.read_until(r"\[yes/no\]:$")
        shell.cmd("yes")
        stranger = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        issued = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .issuer_name(ca_cert.subject).public_key(stranger.public_key()).serial_number(5)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(ca_key, hashes.SHA256())
        )
        shell.cmd("crypto ca import myca certificate", expect=r"on a line by itself\s*$")
        shell.send(issued.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r") + "\r")
        output = shell.read_until(r"RP/0/RP0/CPU0:[\w.-]+#$")
    assert "% Certificate import failed" in output


KEY_TYPES = ["rsa2048", "rsa3072", "rsa4096", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "dsa2048"]


@pytest.fixture(scope="module")
def every_key_type(tmp_path_factory: pytest.TempPathFactory):
    fleets = []
    try:
        for key_type in KEY_TYPES:
            fleet = Fleet(state_dir=tmp_path_factory.mktemp(key_type), devices=1, provisioned=True,
                          key_type=key_type, files=50)
            fleet.start()
            fleets.append((key_type, fleet))
        yield fleets
    finally:
        for _, fleet in fleets:
            fleet.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command line not installed")
def test_every_key_type_signs_and_openssl_agrees(every_key_type, tmp_path: Path) -> None:
    digests = {"rsa": "sha256", "ec256": "sha256", "ec384": "sha384", "ec521": "sha512", "dsa": "sha256"}
    for key_type, fleet in every_key_type:
        proof = signed(fleet.devices[0])
        folder = tmp_path / key_type
        folder.mkdir()
        (folder / "root.pem").write_bytes(proof["root"].public_bytes(serialization.Encoding.PEM))
        (folder / "leaf.pem").write_bytes(proof["leaf"].public_bytes(serialization.Encoding.PEM))
        (folder / "pub.pem").write_bytes(proof["leaf"].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        (folder / "signed.bin").write_bytes(proof["signed"])
        (folder / "sig.bin").write_bytes(proof["signature"])
        chain = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", folder / "root.pem", folder / "leaf.pem"],
                               capture_output=True, text=True)
        assert chain.returncode == 0 and ": OK" in chain.stdout, (key_type, chain.stdout, chain.stderr)
        public = proof["leaf"].public_key()
        kind = "rsa" if key_type.startswith("rsa") else "dsa" if key_type.startswith("dsa") else f"ec{public.curve.key_size}"
        verify = subprocess.run(["openssl", "dgst", f"-{digests[kind]}", "-verify", folder / "pub.pem",
                                 "-signature", folder / "sig.bin", folder / "signed.bin"], capture_output=True, text=True)
        assert verify.returncode == 0 and "Verified OK" in verify.stdout, (key_type, verify.stdout, verify.stderr)
        tampered = bytearray(proof["signed"])
        tampered[-1] ^= 1
        (folder / "tampered.bin").write_bytes(bytes(tampered))
        bad = subprocess.run(["openssl", "dgst", f"-{digests[kind]}", "-verify", folder / "pub.pem",
                              "-signature", folder / "sig.bin", folder / "tampered.bin"], capture_output=True, text=True)
        assert bad.returncode != 0, key_type
