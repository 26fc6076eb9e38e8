"""Seed details over SSH: the boot-time default RSA key, the replace question's layout, the
"Do you accept this certificate??" question and the "CRL Distribution Point" line."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emu_ssh import Shell, run, strip_timestamp

# Verbatim from the seed's `show crypto ca certificates` example.
SEED_CRL_POINT = "ldap://coax-u10.cisco.com/CN=Root coax-u10 Certificate Manager,O=Cisco Systems"


def test_an_unprovisioned_device_has_a_boot_time_rsa_key_until_zeroized(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    shown = strip_timestamp(run(device, "show crypto key mypubkey rsa"))
    assert shown.startswith("Key label: the_default\nType      : RSA General purpose\nSize      : 2048\n")
    assert strip_timestamp(run(device, "crypto key zeroize rsa", stdin="yes\n")).endswith("[OK]\n")
    assert strip_timestamp(run(device, "show crypto key mypubkey rsa")) == ""


def test_replacing_a_key_asks_in_the_seed_layout(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        shell.cmd("crypto key generate rsa the_default", expect=r"replace them\? \[yes/no\]: $")
        output = shell.cmd("yes", expect=r"How many bits in the modulus \[2048\]: $")
        assert output.endswith(
            "yes\n"
            "  Choose the size of the key modulus in the range of 512 to 4096 for your General Purpose\n"
            "  Keypair. Choosing a key modulus greater than 512 may take a few minutes.\n"
            "\n"
            "How many bits in the modulus [2048]: "
        ), output
        assert "Done w/ crypto generate keypair\n[OK]\n" in shell.cmd("1024")


def test_pasted_ca_is_accepted_with_the_seed_question_and_crl_point_shown(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Root coax-u10 Certificate Manager")])
    now = dt.datetime.now(dt.timezone.utc)
    ca_cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(SEED_CRL_POINT)], None, None, None)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    with Shell(device) as shell:
        for line in ["configure", "crypto ca trustpoint myca", "enrollment terminal", "commit", "end"]:
            shell.cmd(line)
        shell.cmd("crypto ca authenticate myca", expect=r"on a line by itself\s*$")
        shell.send(ca_cert.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r") + "\r")
        output = shell.read_until(r"\[yes/no\]:$")
        assert output.endswith("\nDo you accept this certificate?? [yes/no]:")
        shell.cmd("yes")
        shown = shell.cmd("show crypto ca certificates myca")
    validity_end = next(line for line in shown.splitlines() if "Validity End" in line)
    assert f"{validity_end}\n  CRL Distribution Point\n    {SEED_CRL_POINT}\n  SHA1 Fingerprint:" in shown
