"""Every fault a device can be given, seen from a client over SSH."""

from __future__ import annotations

import base64
import json

import paramiko
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from emu_proof import check_dossier, check_envelope
from emu_ssh import connect, run, strip_timestamp
from emulator.faults import Fault, parse_fault_spec


def dossier(device, nonce: str) -> str:
    return strip_timestamp(run(device, f"show platform security integrity dossier include packages reboot-history "
                                       f"nonce {nonce} | utility sign nonce {nonce} include-certificate"))


@pytest.fixture()
def device(blank_fleet):
    entry = blank_fleet.devices[0]
    entry.device.provision("ecdsa-p256")
    return entry


def set_fault(fleet, name, fault, **params):
    fleet.set_fault(name, fault, **params)


def test_auth_failure(blank_fleet, device) -> None:
    set_fault(blank_fleet, device.name, Fault.AUTH_FAILURE)
    with pytest.raises(paramiko.AuthenticationException):
        connect(device)
    blank_fleet.clear_faults(device.name)
    assert "Cisco IOS XR" in run(device, "show version")


def test_rate_limit_fault_refuses_the_session(blank_fleet, device) -> None:
    set_fault(blank_fleet, device.name, Fault.RATE_LIMIT)
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        connect(device, timeout=5)


def test_configured_rate_limit_refuses_sessions_over_the_rate(blank_fleet, device) -> None:
    from emu_ssh import Shell

    with Shell(device) as shell:
        for line in ("configure", "ssh server rate-limit 1", "commit", "end"):
            shell.cmd(line)
    # The rate window holds the sessions above; the next one is refused.
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        connect(device, timeout=5)


def test_slow_output_still_arrives_whole(blank_fleet, device) -> None:
    set_fault(blank_fleet, device.name, Fault.SLOW_OUTPUT, delay=0.5)
    nonce = "a1b2"
    check_envelope(dossier(device, nonce), bytes.fromhex(nonce))


def test_drop_mid_output_cuts_the_envelope(blank_fleet, device) -> None:
    set_fault(blank_fleet, device.name, Fault.DROP_MID_OUTPUT)
    output = dossier(device, "a1b2")
    with pytest.raises(json.JSONDecodeError):
        json.loads(output)


def test_not_json(blank_fleet, device) -> None:
    set_fault(blank_fleet, device.name, Fault.NOT_JSON)
    output = dossier(device, "a1b2")
    with pytest.raises(json.JSONDecodeError):
        json.loads(output)


def test_wrong_nonce_is_a_valid_signature_over_a_stale_nonce(blank_fleet, device) -> None:
    set_fault(blank_fleet, device.name, Fault.WRONG_NONCE, nonce="1580")
    output = dossier(device, "a1b2")
    body = json.loads(output)["signed-envelope"]
    assert base64.b64decode(body["nonce"]) == bytes.fromhex("1580")
    check_envelope(output, bytes.fromhex("1580"))  # signed consistently over the stale nonce


def test_data_changed_breaks_the_signature(blank_fleet, device) -> None:
    set_fault(blank_fleet, device.name, Fault.DATA_CHANGED)
    with pytest.raises(InvalidSignature):
        check_envelope(dossier(device, "a1b2"), bytes.fromhex("a1b2"))


def test_other_key_breaks_the_signature(blank_fleet, device) -> None:
    set_fault(blank_fleet, device.name, Fault.OTHER_KEY)
    with pytest.raises(InvalidSignature):
        check_envelope(dossier(device, "a1b2"), bytes.fromhex("a1b2"))


def test_expired_leaf(blank_fleet, device) -> None:
    set_fault(blank_fleet, device.name, Fault.EXPIRED_LEAF)
    proof = check_envelope(dossier(device, "a1b2"), bytes.fromhex("a1b2"))
    assert proof["leaf"].not_valid_after_utc < device.device.clock.now()


def test_rekeyed_leaf_keeps_the_root(blank_fleet, device) -> None:
    before = check_envelope(dossier(device, "a1b2"), bytes.fromhex("a1b2"))
    set_fault(blank_fleet, device.name, Fault.REKEYED_LEAF)
    after = check_envelope(dossier(device, "a1b2"), bytes.fromhex("a1b2"))
    assert after["root"] == before["root"] and after["leaf"] != before["leaf"]


def test_root_replaced(blank_fleet, device) -> None:
    before = check_envelope(dossier(device, "a1b2"), bytes.fromhex("a1b2"))
    set_fault(blank_fleet, device.name, Fault.ROOT_REPLACED)
    after = check_envelope(dossier(device, "a1b2"), bytes.fromhex("a1b2"))
    der = lambda c: c.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # noqa: E731
    assert der(after["root"]) != der(before["root"])


def test_items_failing(blank_fleet, device) -> None:
    set_fault(blank_fleet, device.name, Fault.ITEMS_FAILING, items=["packages"], result="Failed: timeout collecting data")
    proof = check_envelope(dossier(device, "a1b2"), bytes.fromhex("a1b2"))
    content = check_dossier(proof["data"])
    assert content["packages"] == {"result-code": "Failed: timeout collecting data"}
    assert content["reboot-history"]["result-code"] == "Success"


def test_faults_stay_on_their_device(fleet) -> None:
    fleet.set_fault("xr-0001", Fault.DATA_CHANGED)
    try:
        check_envelope(dossier(fleet.devices[1], "a1b2"), bytes.fromhex("a1b2"))
    finally:
        fleet.clear_faults("xr-0001")


def test_fault_spec_parsing() -> None:
    assert parse_fault_spec("xr-0002=slow-output:delay=3") == ("xr-0002", Fault.SLOW_OUTPUT, {"delay": 3.0})
    assert parse_fault_spec("xr-0001=items-failing:items=packages+reboot-history")[2] == {
        "items": ["packages", "reboot-history"]}
    with pytest.raises(ValueError, match="unknown fault"):
        parse_fault_spec("xr-0001=melt")
    with pytest.raises(ValueError, match="expected DEVICE=FAULT"):
        parse_fault_spec("melt")
