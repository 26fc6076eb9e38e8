"""The emulator's IOS XE and XR attest outputs verify with the verifier's own profiles (library
and `dossier verify --profile`), chosen by name and by shape; tampering, a wrong nonce and
unsigned output are never trusted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from emu_ssh import run, strip_timestamp
from emulator.fleet import Fleet

profiles = pytest.importorskip("verifier.profiles", reason="the verifier has no IOS XE profiles in this tree")

V2_PARTS = ("trust_chain", "measurement", "compliance")


@pytest.fixture(scope="module")
def outputs(xe_fleet: Fleet) -> dict[str, dict[str, bytes]]:
    """Per device: SUDI sign (nonce 11), integrity sign (12), the v2 parts (13), unsigned."""
    result = {}
    for entry in xe_fleet.devices:
        got = {
            "sudi": run(entry, "show platform sudi certificate sign nonce 11").encode(),
            "integrity": run(entry, "show platform integrity sign nonce 12").encode(),
            "unsigned": run(entry, "show platform integrity").encode(),
        }
        for part in V2_PARTS:
            got[part] = run(entry, f"show system integrity all {part} nonce 13").encode()
        result[entry.name] = got
    return result


@pytest.fixture(scope="module")
def roots(xe_fleet: Fleet) -> list:  # type: ignore[type-arg]
    authority = xe_fleet.sudi_authority()
    return [authority.root, authority.sub_ca]


def _errors(verdict) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{f.id}: {f.message}" for f in verdict.findings if str(f.severity) == "error"]


@pytest.mark.parametrize("index", range(4))
def test_every_output_verifies_by_name_and_by_shape(xe_fleet: Fleet, outputs, roots, index: int) -> None:  # type: ignore[no-untyped-def]
    got = outputs[xe_fleet.devices[index].name]
    cases = [("sudi", "xe-sudi-sign", 11), ("integrity", "xe-integrity-sign", 12)]
    cases += [(part, "xe-system-integrity", 13) for part in V2_PARTS]
    for key, name, nonce in cases:
        for asked in (name, "auto"):
            verdict = profiles.verify_output(got[key], profile=asked, roots=roots, expected_nonce=nonce,
                                             signer=got["sudi"])
            assert verdict.profile == name
            assert verdict.trusted, (key, asked, _errors(verdict))


def test_wrong_nonce_tamper_and_unsigned_are_not_trusted(xe_fleet: Fleet, outputs, roots) -> None:  # type: ignore[no-untyped-def]
    got = outputs[xe_fleet.devices[1].name]
    wrong = profiles.verify_output(got["sudi"], profile="xe-sudi-sign", roots=roots, expected_nonce=12)
    assert not wrong.trusted and _errors(wrong)
    text = got["integrity"].decode()
    pcr8 = next(line for line in text.splitlines() if line.startswith("PCR8: "))
    flipped = pcr8[:-1] + ("0" if pcr8[-1] != "0" else "1")
    tampered = profiles.verify_output(text.replace(pcr8, flipped).encode(), profile="xe-integrity-sign",
                                      roots=roots, expected_nonce=12, signer=got["sudi"])
    assert not tampered.trusted and _errors(tampered)
    unsigned = profiles.verify_output(got["unsigned"], profile="xe-integrity-sign", roots=roots,
                                      expected_nonce=None, signer=got["sudi"])
    assert not unsigned.trusted
    # Another fleet's authority is not this device's anchor.
    other = profiles.verify_output(got["sudi"], profile="xe-sudi-sign", roots=roots[:1], expected_nonce=11)
    assert not other.trusted


def test_dossier_verify_cli_on_emulator_output(xe_fleet: Fleet, outputs, roots, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dossier_cli.main import cli

    got = outputs[xe_fleet.devices[0].name]
    root_pem, sub_pem = tmp_path / "root.pem", tmp_path / "sub-ca.pem"
    root_pem.write_bytes(roots[0].public_bytes(Encoding.PEM))
    sub_pem.write_bytes(roots[1].public_bytes(Encoding.PEM))
    sudi, integrity = tmp_path / "sudi.txt", tmp_path / "integrity.txt"
    sudi.write_bytes(got["sudi"])
    integrity.write_bytes(got["integrity"])
    anchors = ["--root", str(root_pem), "--root", str(sub_pem)]
    runner = CliRunner()
    ok = runner.invoke(cli, ["verify", str(sudi), "--profile", "xe-sudi-sign", "--nonce-dec", "11", "--json", *anchors])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output.splitlines()[0])["profile"] == "xe-sudi-sign"
    auto = runner.invoke(cli, ["verify", str(integrity), "--profile", "auto", "--nonce-dec", "12",
                               "--signer", str(sudi), "--json", *anchors])
    assert auto.exit_code == 0, auto.output
    assert json.loads(auto.output.splitlines()[0])["profile"] == "xe-integrity-sign"
    bad = runner.invoke(cli, ["verify", str(integrity), "--profile", "auto", "--nonce-dec", "13",
                              "--signer", str(sudi), "--json", *anchors])
    assert bad.exit_code == 1, bad.output


@pytest.fixture(scope="module")
def xr_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(state_dir=tmp_path_factory.mktemp("xr"), devices=1, provisioned=True,
               key_type="ecdsa-p256", files=20) as running:
        yield running


@pytest.mark.parametrize("keep_timestamp", [False, True])
def test_xr_attest_certificate_verifies_with_its_profile(xr_fleet: Fleet, keep_timestamp: bool) -> None:
    device = xr_fleet.devices[0]
    root = device.device.certificates("system-trustpoint")[0]
    out = run(device, "show platform security attest certificate system-identity location all nonce 1580ab json")
    raw = (out if keep_timestamp else strip_timestamp(out)).encode()
    for asked in ("xr-attest-certificate", "auto"):
        verdict = profiles.verify_output(raw, profile=asked, roots=[root], expected_nonce=bytes.fromhex("1580ab"))
        assert verdict.profile == "xr-attest-certificate"
        assert verdict.trusted, _errors(verdict)
    stale = profiles.verify_output(raw, profile="xr-attest-certificate", roots=[root], expected_nonce=bytes.fromhex("1580"))
    assert not stale.trusted
