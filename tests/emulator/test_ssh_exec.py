"""The emulator over real SSH (exec channels): the dossier, utility sign, errors, files."""

from __future__ import annotations

import json
import re
import secrets

import paramiko
import pytest

from emu_proof import check_dossier, check_envelope
from emu_ssh import connect, run, strip_timestamp

ALL_ITEMS = "packages reboot-history rollback-history system-integrity-snapshot system-inventory filesystem-inventory"


def dossier_command(nonce: str, items: str = ALL_ITEMS, *, sign: bool = True, include: bool = True) -> str:
    command = f"show platform security integrity dossier include {items} nonce {nonce}"
    if sign:
        command += f" | utility sign nonce {nonce}" + (" include-certificate" if include else "")
    return command


def test_show_version_starts_with_the_timestamp_line(fleet) -> None:
    output = run(fleet.devices[0], "show version")
    body = strip_timestamp(output)
    assert "Cisco IOS XR Software" in body


def test_signed_dossier_verifies_independently(fleet) -> None:
    nonce = secrets.token_hex(16)
    output = run(fleet.devices[0], dossier_command(nonce))
    proof = check_envelope(strip_timestamp(output), bytes.fromhex(nonce))
    dossier = check_dossier(proof["data"])
    assert dossier["nonce"] == nonce
    for item in ALL_ITEMS.split():
        assert dossier[item]["result-code"] == "Success", item
    assert list(dossier)[:4] == ["collection-start-time", "model-name", "model-revision", "nonce"]
    assert list(dossier)[-1] == "collection-end-time"


def test_the_two_options_of_utility_sign_come_in_either_order(fleet) -> None:
    nonce = "1580"
    output = run(fleet.devices[0], f"show platform security integrity dossier include reboot-history nonce {nonce} "
                                   f"| utility sign include-certificate nonce {nonce}")
    check_envelope(strip_timestamp(output), bytes.fromhex(nonce))


def test_envelope_without_include_certificate_has_no_certificates(fleet) -> None:
    output = strip_timestamp(run(fleet.devices[0], dossier_command("abcd", "packages", include=False)))
    body = json.loads(output)["signed-envelope"]
    assert "certificates" not in body
    assert set(body) == {"signature_version", "nonce", "data", "signature"}


def test_utility_sign_works_after_any_command(fleet) -> None:
    output = strip_timestamp(run(fleet.devices[0], "show inventory | utility sign nonce 0102 include-certificate"))
    proof = check_envelope(output, b"\x01\x02")
    assert "Chassis" in proof["data"] or "NAME:" in proof["data"]


@pytest.mark.parametrize("bad", ["0", "00", "123", "xyz1", "0" * 130, "0000"])
def test_malformed_nonce_is_refused_with_invalid(fleet, bad: str) -> None:
    output = strip_timestamp(run(fleet.devices[0], f"show version | utility sign nonce {bad}"))
    assert output.startswith("% Invalid"), output
    assert "signed-envelope" not in output


def test_unknown_command_puts_the_caret_under_the_offending_word(fleet) -> None:
    output = run(fleet.devices[0], "show platfrom")
    assert output.splitlines() == ["show platfrom", "     ^", "% Invalid input detected at '^' marker."]


def test_incomplete_command(fleet) -> None:
    assert run(fleet.devices[0], "show crypto key mypubkey") == "% Incomplete command.\n"


def test_abbreviated_keywords_are_accepted(fleet) -> None:
    output = strip_timestamp(run(fleet.devices[0], "sh plat sec int dossier include packages nonce 11"))
    assert check_dossier(output)["packages"]["result-code"] == "Success"


def test_file_pipe_writes_to_harddisk_and_dir_more_read_it_back(fleet) -> None:
    device = fleet.devices[1]
    assert strip_timestamp(run(device, "show platform security integrity dossier include "
                                       "filesystem-inventory | file harddisk:PE1-parent.json")) == ""
    listing = strip_timestamp(run(device, "dir harddisk:"))
    assert "PE1-parent.json" in listing
    content = strip_timestamp(run(device, "more harddisk:PE1-parent.json"))
    assert check_dossier(content)["filesystem-inventory"]["result-code"] == "Success"


def test_file_pipe_refuses_paths_outside_harddisk(fleet) -> None:
    output = strip_timestamp(run(fleet.devices[1], "show version | file harddisk:../../escape.txt"))
    assert output.startswith("% Invalid file name")


def test_filesystem_inventory_options_select_blocks(fleet) -> None:
    device = fleet.devices[0]
    run(device, "show platform security integrity dossier include filesystem-inventory")  # block 0 exists now
    fleet[device.name].device.advance_clock(3 * 3600)  # three more hourly snapshot blocks
    options = '\'{"0/RP0/CPU0": {"block_start": 1, "count": 2}}\''
    output = strip_timestamp(run(device, f"show platform security integrity dossier include filesystem-inventory "
                                         f"filesystem-inventory-options {options} nonce 42"))
    snapshots = check_dossier(output)["filesystem-inventory"]["filesystem-inventory"]["0/RP0/CPU0"]["snapshots"]
    assert [s["snapshot-block-no"] for s in snapshots] == [1, 2]
    assert all(s["snapshot-type"] == "incremental" for s in snapshots)


def test_malformed_filesystem_options_are_refused(fleet) -> None:
    output = strip_timestamp(run(fleet.devices[0], "show platform security integrity dossier include "
                                                   "filesystem-inventory filesystem-inventory-options '{bad' nonce 42"))
    assert output.startswith("% Invalid filesystem-inventory-options")


def test_show_commands_agree_with_the_dossier(fleet) -> None:
    device = fleet.devices[0]
    dossier = check_dossier(strip_timestamp(run(device, "show platform security integrity dossier include packages "
                                                        "system-inventory nonce 10")))
    assert dossier["version"]["version"] == strip_timestamp(run(device, "show version"))
    assert dossier["platform"]["platform"] == strip_timestamp(run(device, "show platform"))
    active = strip_timestamp(run(device, "show install active"))
    for package in dossier["packages"]["packages"][:5]:
        assert package["name"] in active
    inventory = strip_timestamp(run(device, "show inventory"))
    for part in dossier["system-inventory"]["system-inventory"]:
        assert part["sn"] in inventory


def test_wrong_password_is_refused(fleet) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        connect(fleet.devices[0], password="not-the-password")


def test_unknown_host_key_is_not_silently_accepted(fleet) -> None:
    device = fleet.devices[0]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect(device.host, port=device.port, username=device.username, password=device.password,
                       look_for_keys=False, allow_agent=False, timeout=10)


def test_timestamp_line_format(fleet) -> None:
    first = run(fleet.devices[0], "show clock").splitlines()[0]
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \w{3} [ \d]\d \d\d:\d\d:\d\d\.\d{3} UTC", first)


def test_exec_is_answered_before_the_command_runs(fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server answers an exec request before the command's output and close (RFC 4254 6.5;
    OpenSSH and IOS XR alike). The emulator runs the command in another thread than the one
    that answers: if that thread ran first, a fast command closed the channel before the
    answer and the client's exec failed with "Channel closed." (seen under load). The delay
    below stands for the answering thread losing the CPU after the request is accepted."""
    import time

    from emulator import server

    accept = server._ServerInterface.check_channel_exec_request

    def slow_answer(self, channel, command):  # type: ignore[no-untyped-def]
        ok = accept(self, channel, command)
        time.sleep(0.3)  # the command (show clock: ~1 ms) would be done and closed by now
        return ok

    monkeypatch.setattr(server._ServerInterface, "check_channel_exec_request", slow_answer)
    for _ in range(3):
        assert "UTC" in run(fleet.devices[0], "show clock")


def test_exec_that_wants_no_answer_still_runs(fleet) -> None:
    """RFC 4254 lets a client send exec with want-reply false; the emulator then gets no answer
    to wait for and runs the command after a short while (UNANSWERED_REQUEST_S)."""
    from paramiko.common import cMSG_CHANNEL_REQUEST

    client = connect(fleet.devices[0])
    try:
        channel = client.get_transport().open_session()  # type: ignore[union-attr]
        channel.settimeout(30)
        request = paramiko.Message()
        request.add_byte(cMSG_CHANNEL_REQUEST)
        request.add_int(channel.remote_chanid)
        request.add_string("exec")
        request.add_boolean(False)
        request.add_string("show clock")
        channel.transport._send_user_message(request)  # what exec_command does, without the reply
        output = b""
        while chunk := channel.recv(65536):
            output += chunk
        assert b"UTC" in output
    finally:
        client.close()
