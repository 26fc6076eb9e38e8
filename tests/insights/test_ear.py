"""EARs issued from a store collected from an emulated device with faults, checked by `dossier
ear verify` and by an independent JOSE library (PyJWT; the code signs with joserfc)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import jwt as pyjwt
from click.testing import CliRunner

import schemas
from collector.insights import load_policy
from dossier_cli.main import cli
from emulator import facts as device_facts
from emulator.faults import Fault

POLICY_YAML = """\
format: trust-dossier/policy/1
name: ear-test
rules:
  secure-boot: {level: enforce}
  hardware-changes: {level: warn}
"""


def _independently_verified(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The claims as PyJWT checks them against the published JWKS (no code of ours involved)."""
    header = pyjwt.get_unverified_header(token)
    [key] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    return pyjwt.decode(token, pyjwt.PyJWK(key).key, algorithms=["ES256"])


def test_ears_from_a_store_with_faults_verify_offline_and_with_pyjwt(rig_factory: Any, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY_YAML)
    rig = rig_factory(load_policy(policy_file))
    name = rig.devices[0].name
    rig.collect()  # affirming baseline
    with rig.device.lock:
        device_facts.set_secure_boot(rig.device.facts, False)
        rig.device.save()
    rig.device.advance_clock(3700)
    rig.collect()  # boot contraindicated
    rig.fleet.set_fault(name, Fault.DATA_CHANGED)
    rig.collect()  # untrusted: data altered after signing
    key = tmp_path / "keys" / "ear.pem"
    key.parent.mkdir()
    common = ["--trust-store", str(rig.trust), "--ear-key", str(key)]
    runner = CliRunner()

    jwks_out = runner.invoke(cli, ["ear", "jwks", *common])
    assert jwks_out.exit_code == 0, jwks_out.output
    jwks = json.loads(jwks_out.stdout)
    assert key.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE" not in jwks_out.output and "\"d\"" not in jwks_out.output
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(jwks_out.stdout)

    records = list(reversed(rig.store.history(name)))  # oldest first
    seen: dict[str, dict[str, Any]] = {}
    for position, expected in ((-3, "affirming"), (-2, "contraindicated"), (-1, "contraindicated")):
        out = tmp_path / f"ear{position}.jwt"
        issued = runner.invoke(cli, ["ear", "issue", "--store", str(rig.store.root), "--device", name,
                                     "--envelope", str(position), "--policy", str(policy_file), *common,
                                     "--output", str(out)])
        assert issued.exit_code == 0, issued.output
        checked = runner.invoke(cli, ["ear", "verify", str(out), "--jwks", str(jwks_file), "--json"])
        assert checked.exit_code == 0, checked.output
        claims = _independently_verified(out.read_text().strip(), jwks)
        assert claims == json.loads(checked.stdout)["claims"]
        jsonschema.validate(claims, schemas.load("ear"))
        assert claims["eat_profile"] == "tag:github.com,2023:veraison/ear"
        assert claims["ear_verifier_id"]["developer"] == "trust-dossier"
        submod = claims["submods"][name]
        assert submod["ear_status"] == expected
        assert submod["ear_verifier_claims"]["envelope"] == records[position].path
        seen[str(position)] = claims

    affirming, boot_off, untrusted = seen["-3"], seen["-2"], seen["-1"]
    # The nonce the evidence was bound to, echoed base64url.
    nonce = base64.urlsafe_b64decode(affirming["eat_nonce"] + "=" * (-len(affirming["eat_nonce"]) % 4))
    assert nonce.hex() == records[-3].nonce
    assert affirming["submods"][name]["ear_trustworthiness_vector"] == {
        "executables": 3, "hardware": 2, "instance-identity": 2}  # boot affirming: approved boot
    # Secure boot off (our boot category) lands in executables as contraindicated.
    vector = boot_off["submods"][name]["ear_trustworthiness_vector"]
    assert vector["executables"] == 96 and vector["instance-identity"] == 2
    assert boot_off["submods"][name]["ear_verifier_claims"]["categories"]["boot"] == "contraindicated"
    assert "appraisal.boot.secure_boot_disabled" in boot_off["submods"][name]["ear_verifier_claims"]["findings"]
    # Altered after signing: cryptographic validation failed, nothing else claimed, no nonce echoed.
    assert untrusted["submods"][name]["ear_trustworthiness_vector"] == {"instance-identity": 99}
    assert "eat_nonce" not in untrusted

    # Without --policy: identity only, from the verification.
    plain = runner.invoke(cli, ["ear", "issue", "--store", str(rig.store.root), "--device", name,
                                "--envelope", "-3", *common])
    assert plain.exit_code == 0, plain.output
    claims = _independently_verified(plain.stdout.strip(), jwks)
    assert claims["submods"][name]["ear_trustworthiness_vector"] == {"instance-identity": 2}
    assert claims["submods"][name]["ear_appraisal_policy_id"] == "urn:trust-dossier:policy:identity-only"

    # Input errors exit 2 with a message: no such device, a key inside the store.
    missing = runner.invoke(cli, ["ear", "issue", "--store", str(rig.store.root), "--device", "nope", *common])
    assert missing.exit_code == 2 and "expected envelopes of nope" in missing.output
    inside = runner.invoke(cli, ["ear", "issue", "--store", str(rig.store.root), "--device", name,
                                 "--trust-store", str(rig.trust), "--ear-key", str(rig.store.root / "k.pem")])
    assert inside.exit_code == 2 and "inside the store" in inside.output
