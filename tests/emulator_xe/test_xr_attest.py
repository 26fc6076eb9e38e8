"""XR `show platform security attest certificate <id> location all nonce <hex> json`, and the
mixed fleet and CLI options, checked independently (bare `cryptography`, the YANG's layout)."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from emu_ssh import run, strip_timestamp
from emulator.fleet import Fleet

COMMAND = "show platform security attest certificate system-identity location {where} nonce {nonce} json"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """xr-0001, xe-0002, xr-0003; the XR ones sign with RSA-2048 (the ECDSA fleet below covers
    the other attest signature algorithm)."""
    with Fleet(state_dir=tmp_path_factory.mktemp("mixed"), devices=3, platform="mixed", provisioned=True,
               key_type="rsa2048", files=50) as running:
        yield running


@pytest.fixture(scope="module")
def ecdsa_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(state_dir=tmp_path_factory.mktemp("xr"), devices=1, provisioned=True,
               key_type="ecdsa-p256", files=50) as running:
        yield running


def verify_attest(text: str, nonce_hex: str) -> list[str]:
    """Per node: signature over nonce || uint32 BE version || each listed DER, by the last
    certificate's key (the queried one). Returns the node locations."""
    document = json.loads(text)
    nodes = document["get-certificate-response"]["system-certificates"]
    locations = []
    for node in nodes:
        nonce = base64.b64decode(node["nonce"], validate=True)
        assert nonce == bytes.fromhex(nonce_hex)
        ders = [base64.b64decode(c["value"], validate=True) for c in node["certificates"]["certificate"]]
        message = nonce + struct.pack(">I", node["signature_version"]) + b"".join(ders)
        signature = base64.b64decode(node["signature"], validate=True)
        leaf, root = x509.load_der_x509_certificate(ders[-1]), x509.load_der_x509_certificate(ders[0])
        assert leaf.issuer == root.subject
        key = leaf.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        with pytest.raises(InvalidSignature):
            bad = bytes(16) + message[len(nonce):]
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, bad, padding.PKCS1v15(), hashes.SHA256())
            else:
                key.verify(signature, bad, ec.ECDSA(hashes.SHA256()))
        locations.append(node["node-location"])
    return locations


def test_attest_certificate_rsa(mixed: Fleet) -> None:
    device = mixed["xr-0001"]
    out = strip_timestamp(run(device, COMMAND.format(where="all", nonce="1580ab")))
    assert verify_attest(out, "1580ab") == device.device.facts.rp_nodes


def test_attest_certificate_ecdsa_and_one_location(ecdsa_fleet: Fleet) -> None:
    device = ecdsa_fleet.devices[0]
    node = device.device.facts.rp_nodes[0]
    out = strip_timestamp(run(device, COMMAND.format(where=node, nonce="00ff" * 16)))
    assert verify_attest(out, "00ff" * 16) == [node]


@pytest.mark.parametrize("command, expected", [
    (COMMAND.format(where="all", nonce="abc"), "% Invalid nonce"),
    (COMMAND.format(where="0/RP9/CPU0", nonce="1580"), "% Invalid location '0/RP9/CPU0'"),
    (COMMAND.replace("system-identity", "nosuch").format(where="all", nonce="1580"), "not found"),
])
def test_attest_certificate_refusals(ecdsa_fleet: Fleet, command: str, expected: str) -> None:
    out = run(ecdsa_fleet.devices[0], command)
    assert expected in out and "signature" not in out


def test_attest_needs_an_enrolled_trustpoint(tmp_path: Path) -> None:
    with Fleet(state_dir=tmp_path, devices=1, files=20) as fleet:
        out = run(fleet.devices[0], COMMAND.format(where="all", nonce="1580"))
    assert out.splitlines()[-1].startswith("%") and "signature" not in out


def test_mixed_fleet_names_platforms_and_inventory(mixed: Fleet, tmp_path: Path) -> None:
    import yaml

    assert [(d.name, d.platform) for d in mixed.devices] == [
        ("xr-0001", "iosxr"), ("xe-0002", "iosxe"), ("xr-0003", "iosxr")]
    path = tmp_path / "inventory.yaml"
    mixed.write_inventory(path)
    entries = yaml.safe_load(path.read_text())["devices"]
    assert [e["platform"] for e in entries] == ["iosxr", "iosxe", "iosxr"]
    # Each personality answers only its own commands.
    assert "% Invalid input" in run(mixed["xr-0001"], "show platform integrity sign nonce 5")
    assert "% Invalid input" in run(mixed["xe-0002"], COMMAND.format(where="all", nonce="1580"))
    assert run(mixed["xe-0002"], "show platform integrity").startswith("Platform: ")


def test_cli_serve_offers_platform() -> None:
    from emulator.cli import emulator_group

    result = CliRunner().invoke(emulator_group, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--platform" in result.output and "mixed" in result.output
    result = CliRunner().invoke(emulator_group, ["serve", "--state-dir", "x", "--platform", "junos"])
    assert result.exit_code == 2 and "junos" in result.output
