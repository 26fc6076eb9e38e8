"""IOS XE personality over real SSH: every signed output verifies under the independent check."""

from __future__ import annotations

import re
import time

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from emu_ssh import connect, run
from emulator.fleet import Fleet

import xe_check

PLATFORM_LAYOUTS = {
    "ISR4321/K9": "single OS Hash",
    "ISR4451-X/K9": "OS Hashes list",
    "C1111-8P": "64-hex boot loader",
    "WS-C3650-8X24UQ": "Boot Loader printed first",
}


def _device_cert(fleet: Fleet, name: str) -> x509.Certificate:
    return fleet[name].device.xe_identity().certificate


def test_fleet_covers_every_layout(xe_fleet: Fleet) -> None:
    pids = {entry.device.xe_identity().facts.pid for entry in xe_fleet.devices}
    assert pids == set(PLATFORM_LAYOUTS)
    assert [d.name for d in xe_fleet.devices] == ["xe-0001", "xe-0002", "xe-0003", "xe-0004"]
    assert {d["platform"] for d in xe_fleet.inventory()["devices"]} == {"iosxe"}


@pytest.mark.parametrize("nonce", [None, 1, 12345, 2**64 - 1, 0])
def test_sudi_sign_verifies(xe_fleet: Fleet, xe_anchors: tuple[bytes, bytes], nonce: int | None) -> None:
    device = xe_fleet.devices[0]
    command = "show platform sudi certificate sign" + ("" if nonce is None else f" nonce {nonce}")
    out = run(device, command)
    chain = xe_check.verify_sudi(out, nonce, *xe_anchors)
    assert chain.device == _device_cert(xe_fleet, device.name)


def test_sudi_signature_binds_the_nonce_layout(xe_fleet: Fleet, xe_anchors: tuple[bytes, bytes]) -> None:
    """The README's negative probes fail: little-endian, 4-byte, ASCII nonce, swapped order."""
    out = run(xe_fleet.devices[1], "show platform sudi certificate sign nonce 1325")
    chain = xe_check.verify_sudi(out, 1325, *xe_anchors)
    signature = xe_check.signature_hex(out)
    key = chain.device.public_key()
    payload = b"".join(chain.ders)
    import struct

    for wrong in (struct.pack("<QI", 1325, 1), struct.pack(">II", 1325, 1), b"1325" + struct.pack(">I", 1),
                  struct.pack(">IQ", 1, 1325), struct.pack(">Q", 1325), struct.pack(">QI", 1326, 1)):
        assert not xe_check.rsa_ok(key, signature, wrong + payload)  # type: ignore[arg-type]


@pytest.mark.parametrize("index", range(4))
def test_integrity_sign_verifies_on_every_layout(xe_fleet: Fleet, index: int) -> None:
    device = xe_fleet.devices[index]
    cert = _device_cert(xe_fleet, device.name)
    fields = xe_check.verify_integrity(run(device, "show platform integrity sign nonce 987654321"), 987654321, cert)
    pid = str(fields["Platform"])
    if PLATFORM_LAYOUTS[pid] == "OS Hashes list":
        files = [name for name, _ in fields["OS Hashes"]]  # type: ignore[union-attr]
        assert files[0].endswith(".bin") and all(f.endswith(".pkg") for f in files[1:]) and len(files) > 1
    if PLATFORM_LAYOUTS[pid] == "64-hex boot loader":
        assert len(str(fields["Boot Loader Hash"])) == 64
    # No-nonce form: a 4-byte header; unsigned form: no signature lines at all.
    xe_check.verify_integrity(run(device, "show platform integrity sign"), None, cert)
    xe_check.verify_integrity(run(device, "show platform integrity"), None, cert, signed=False)


def test_cat3k_prints_boot_loader_first_and_pcr0_still_folds_boot0_first(xe_fleet: Fleet) -> None:
    device = next(d for d in xe_fleet.devices if d.device.xe_identity().facts.pid == "WS-C3650-8X24UQ")
    out = run(device, "show platform integrity sign nonce 123")
    labels = [line.split(":")[0] for line in out.splitlines()]
    assert labels.index("Boot Loader Version") < labels.index("Boot 0 Version")
    xe_check.verify_integrity(out, 123, _device_cert(xe_fleet, device.name))


@pytest.mark.parametrize("part", ["trust_chain", "measurement", "compliance"])
def test_system_integrity_v2_verifies(xe_fleet: Fleet, xe_anchors: tuple[bytes, bytes], part: str) -> None:
    device = xe_fleet.devices[1]  # ISR4451: several packages in the measurement
    out = run(device, f"show system integrity all {part} nonce 34567")
    xe_check.verify_v2(out, part, 34567, _device_cert(xe_fleet, device.name))
    if part == "trust_chain":
        xe_check.check_chain(xe_check.pem_ders(out), *xe_anchors)


@pytest.mark.parametrize("command, expected", [
    ("show platform integrity sign nonce 18446744073709551616", "must fit in 64 bits"),
    ("show platform sudi certificate sign nonce 12ab", "expected a decimal number"),
    ("show platform sudi certificate sign nonce -1", "expected a decimal number"),
    ("show system integrity all measurement", "% Incomplete command."),
    ("show platform security integrity dossier include packages nonce 1580", "% Invalid input"),
    ("show platform integrity | utility sign nonce 1580", "% Invalid input"),
])
def test_bad_input_is_refused_in_ios_style(xe_fleet: Fleet, command: str, expected: str) -> None:
    out = run(xe_fleet.devices[0], command)
    assert expected in out
    assert "Signature" not in out


def test_nonces_give_fresh_signatures(xe_fleet: Fleet) -> None:
    device = xe_fleet.devices[0]
    first = xe_check.signature_hex(run(device, "show platform integrity sign nonce 1"))
    second = xe_check.signature_hex(run(device, "show platform integrity sign nonce 2"))
    assert first != second


def test_interactive_prompt_is_hostname_hash(xe_fleet: Fleet) -> None:
    """`xe-0001#` (IOS XE style), the command runs in a shell session, `exit` closes."""
    device = xe_fleet.devices[0]
    client = connect(device)
    try:
        channel = client.invoke_shell(width=200, height=50)
        channel.settimeout(30)
        buffer = ""

        def until(pattern: str) -> str:
            nonlocal buffer
            deadline = time.monotonic() + 30
            while not re.search(pattern, buffer):
                assert time.monotonic() < deadline, buffer[-300:]
                buffer += channel.recv(65536).decode("utf-8", "replace")
            text, buffer = buffer, ""
            return text.replace("\r\n", "\n")

        first = until(r"xe-0001#$")
        assert "RP/0/RP0/CPU0" not in first
        channel.sendall(b"show platform integrity sign nonce 42\r")
        out = until(r"\nxe-0001#$")
        body = out.split("\n", 1)[1].rsplit("\n", 1)[0] + "\n"
        xe_check.verify_integrity(body, 42, _device_cert(xe_fleet, device.name))
        channel.sendall(b"exit\r")
    finally:
        client.close()


def test_identity_survives_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Same state directory, same SUDI certificate and authority; an unknown platform refuses."""
    from emulator.fleet import FleetError

    with Fleet(state_dir=tmp_path, devices=1, platform="iosxe", files=20) as fleet:
        cert = fleet.devices[0].device.xe_identity().certificate
        root = fleet.sudi_authority().root
    with Fleet(state_dir=tmp_path, devices=1, platform="iosxe", files=20) as fleet:
        assert fleet.devices[0].device.xe_identity().certificate == cert
        assert fleet.sudi_authority().root == root
    with pytest.raises(FleetError, match="unknown platform"):
        Fleet(state_dir=tmp_path, platform="junos")


@pytest.mark.parametrize("fault, params", [
    ("wrong-nonce", {}), ("wrong-nonce", {"nonce": "ff"}), ("data-changed", {}), ("other-key", {}),
])
def test_signing_faults_fail_the_independent_check(xe_fleet: Fleet, xe_anchors: tuple[bytes, bytes],
                                                   fault: str, params: dict) -> None:  # type: ignore[type-arg]
    from emulator.faults import Fault

    device = xe_fleet.devices[2]
    cert = _device_cert(xe_fleet, device.name)
    xe_fleet.set_fault(device.name, Fault(fault), **params)
    try:
        outputs = {
            "sudi": run(device, "show platform sudi certificate sign nonce 255"),
            "integrity": run(device, "show platform integrity sign nonce 255"),
            **{part: run(device, f"show system integrity all {part} nonce 255")
               for part in ("trust_chain", "measurement", "compliance")},
        }
    finally:
        xe_fleet.clear_faults(device.name)
    checks = {
        "sudi": lambda text: xe_check.verify_sudi(text, 255, *xe_anchors),
        "integrity": lambda text: xe_check.verify_integrity(text, 255, cert),
        **{part: (lambda text, part=part: xe_check.verify_v2(text, part, 255, cert))
           for part in ("trust_chain", "measurement", "compliance")},
    }
    for name, text in outputs.items():
        with pytest.raises((AssertionError, ValueError, InvalidSignature)):
            checks[name](text)
    # Cleared: the same commands verify again.
    xe_check.verify_integrity(run(device, "show platform integrity sign nonce 255"), 255, cert)


def test_certificate_faults_reissue_the_sudi_certificate(tmp_path, xe_anchors) -> None:  # type: ignore[no-untyped-def]
    """expired-leaf: a SUDI certificate whose window has ended; rekeyed-leaf: a new key and
    certificate under the same sub-CA (still verifies); root-replaced is refused for XE."""
    from datetime import datetime, timezone

    from emulator.device import DeviceError
    from emulator.faults import Fault

    with Fleet(state_dir=tmp_path, devices=1, platform="iosxe", files=20) as fleet:
        device = fleet.devices[0]
        anchors = fleet.sudi_authority()
        pins = [c.public_bytes(Encoding.DER) for c in (anchors.root, anchors.sub_ca)]
        before = device.device.xe_identity().certificate
        fleet.set_fault(device.name, Fault.REKEYED_LEAF)
        rekeyed = xe_check.verify_sudi(run(device, "show platform sudi certificate sign nonce 5"), 5, *pins)
        assert rekeyed.device.public_key().public_numbers() != before.public_key().public_numbers()
        fleet.set_fault(device.name, Fault.EXPIRED_LEAF)
        expired = xe_check.verify_sudi(run(device, "show platform sudi certificate sign nonce 6"), 6, *pins)
        assert expired.device.not_valid_after_utc < datetime.now(timezone.utc)
        with pytest.raises(DeviceError, match="not emulated for IOS XE"):
            fleet.set_fault(device.name, Fault.ROOT_REPLACED)
