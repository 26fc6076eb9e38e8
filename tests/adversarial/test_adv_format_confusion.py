"""Format confusion: an IOS XR attest answer is not a signed envelope (issue 15, item 8).

`show platform security attest certificate ... json` signs nonce || u32 version || DER(root) ||
DER(leaf); an envelope with empty `data` signs exactly the same bytes (ENVELOPE.md section 3).
Fixed: an envelope whose `data` is empty is refused (`envelope.missing_member`).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from cryptography import x509

from dossier_cli.main import cli
from emu_ssh import run, strip_timestamp
from emulator.fleet import Fleet
from verifier.verify import verify_envelope

NONCE_HEX = "1580ab42"
ATTEST = "show platform security attest certificate system-identity location all nonce {nonce} json"


@pytest.fixture(scope="module")
def xr_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(state_dir=tmp_path_factory.mktemp("attest"), devices=1, provisioned=True,
               key_type="ecdsa-p256", files=20) as running:
        yield running


@pytest.fixture(scope="module")
def attest_node(xr_device: Fleet) -> dict:
    """One node's entry of a real attest answer from the emulated XR device."""
    answer = json.loads(strip_timestamp(run(xr_device.devices[0], ATTEST.format(nonce=NONCE_HEX))))
    return answer["get-certificate-response"]["system-certificates"][0]


def _converted(node: dict, data: str) -> bytes:
    """The attest answer rewritten as an envelope: same nonce, version, signature, certificates."""
    certificates = node["certificates"]["certificate"]
    return json.dumps({"signed-envelope": {
        "signature_version": node["signature_version"], "nonce": node["nonce"], "data": data,
        "signature": node["signature"],
        "certificates": {"certificate": [{"name": c.get("name", "certificate"), "value": c["value"]}
                                         for c in certificates]},
    }}).encode()


def _root(node: dict) -> x509.Certificate:
    return x509.load_der_x509_certificate(base64.b64decode(node["certificates"]["certificate"][0]["value"]))


def test_a_converted_attest_answer_is_not_a_trusted_envelope(attest_node: dict) -> None:
    verdict = verify_envelope(_converted(attest_node, ""), roots=[_root(attest_node)],
                              expected_nonce=bytes.fromhex(NONCE_HEX))
    assert not verdict.trusted
    assert [f.id for f in verdict.errors] == ["envelope.missing_member"]
    finding = verdict.errors[0]
    assert "data is empty" in finding.message
    assert (finding.expected, finding.found) == ("signed data (the command's output)", "an empty string")


def test_the_conversion_is_faithful_but_for_the_empty_data(attest_node: dict) -> None:
    """The same conversion with any data fails on the signature only: the test above is refused
    for its empty data, not for a mistake in the conversion."""
    verdict = verify_envelope(_converted(attest_node, "x"), roots=[_root(attest_node)],
                              expected_nonce=bytes.fromhex(NONCE_HEX))
    assert [f.id for f in verdict.errors] == ["signature.invalid"]


def test_dossier_verify_says_not_trusted(attest_node: dict, tmp_path: Path) -> None:
    envelope, root = tmp_path / "converted.json", tmp_path / "root.pem"
    envelope.write_bytes(_converted(attest_node, ""))
    from cryptography.hazmat.primitives.serialization import Encoding

    root.write_bytes(_root(attest_node).public_bytes(Encoding.PEM))
    result = CliRunner().invoke(cli, ["verify", str(envelope), "--root", str(root), "--nonce", NONCE_HEX,
                                      "--json"])
    assert result.exit_code == 1, result.output
    line = json.loads(result.output)
    assert line["trusted"] is False and [f["id"] for f in line["findings"]] == ["envelope.missing_member"]
