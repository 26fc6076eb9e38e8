"""Adversarial tests of the emulator over loopback SSH: hostile input never crashes the server,
never hangs a session and never reaches files outside the device's folder."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

import paramiko
import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emu_ssh
from emulator.fleet import Fleet
from verifier.verify import verify_envelope

SESSION_DEADLINE_S = 20.0  # generous for a loaded 2-core machine; a hang is far longer


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(state_dir=tmp_path_factory.mktemp("advfleet"), devices=1, provisioned=True,
               key_type="ecdsa-p256", files=20, seed=11) as running:
        yield running


@pytest.fixture(scope="module")
def device(fleet: Fleet):
    return fleet.devices[0]


def alive(device) -> None:
    """The server still answers a fresh connection with a normal command."""
    assert "Cisco IOS XR" in emu_ssh.run(device, "show version")


def run_bounded(device, command: str) -> str:
    started = time.monotonic()
    out = emu_ssh.run(device, command)
    assert time.monotonic() - started < SESSION_DEADLINE_S
    return out


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def server_errors() -> Iterator[_Collect]:
    """ERROR records of the emulator's server threads (a handler on its own logger: no race with
    caplog's per-test handler)."""
    handler = _Collect()
    logger = logging.getLogger("emulator")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


HOSTILE = [
    "", " ", "|", "||", "| | |", "show version |", "show version | | file harddisk:x",
    "show 'unbalanced", 'show "unbalanced', "show version | include '(", "show version | include [",
    "show version | utility sign nonce " + "ab" * 5000,
    "show version | utility sign nonce 00", "show version | utility sign nonce 0x15",
    "show version | utility sign nonce 1580 | utility sign nonce 1580 include-certificate",
    "show platform security integrity dossier include packages filesystem-inventory-options "
    "'{\"0/RP0/CPU0\": {\"block_start\": -1, \"count\": 99999999}}' nonce 1580",
    "show platform security integrity dossier include packages filesystem-inventory-options '{' nonce 1580",
    "show platform security integrity dossier include packages nonce " + "f" * 130,
    "\x1b[A\x07\x7f\x08\x03", "\x00\x01\x02", "show\tversion\r", "a" * 200_000, "show version " + "| " * 500,
    "describe " + "x " * 1000, "show version | begin " + "(" * 300,
]


@pytest.mark.parametrize("command", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_exec_lines_end_and_leave_the_server_alive(device, server_errors: _Collect, command: str) -> None:
    server_errors.records.clear()
    run_bounded(device, command)
    alive(device)
    assert not [(r.getMessage(), r.exc_text) for r in server_errors.records]


@pytest.mark.parametrize("path", [
    "harddisk:../../device.json", "harddisk:/../../device.json", "harddisk:..", "harddisk:sub/../../x",
    "/etc/passwd", "harddisk:../../../../../../etc/passwd", "bootflash:../x", "harddisk:%2e%2e/x",
])
def test_more_and_file_refuse_paths_outside_harddisk(device, path: str) -> None:
    folder = device.device.folder
    before = sorted(p.relative_to(folder.parent) for p in folder.parent.rglob("*") if "harddisk" not in p.parts)
    out = run_bounded(device, f"more {path}")
    assert "root:" not in out and "signing" not in out and '"facts"' not in out
    run_bounded(device, f"show version | file {path}")
    after = sorted(p.relative_to(folder.parent) for p in folder.parent.rglob("*") if "harddisk" not in p.parts)
    assert [p for p in after if p not in before] == []
    alive(device)


def test_symlink_on_harddisk_does_not_reach_outside(device, tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("TOP-SECRET-OUTSIDE\n")
    harddisk = device.device.folder / "harddisk"
    harddisk.mkdir(exist_ok=True)
    link = harddisk / "adv-link.txt"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(secret, link)
    try:
        assert "TOP-SECRET-OUTSIDE" not in run_bounded(device, "more harddisk:adv-link.txt")
        run_bounded(device, "show version | file harddisk:adv-link.txt")
        assert secret.read_text() == "TOP-SECRET-OUTSIDE\n"
    finally:
        link.unlink()




@pytest.mark.parametrize("commands", [
    ["more harddisk:a\x00b"],
    ["show version | file harddisk:a\x00b"],
    ["more harddisk:" + "n" * 300],
    ["show version | file harddisk:" + "n" * 300],
    ["show version | file harddisk:adv-dir/x", "show version | file harddisk:adv-dir"],
    ["show version | file harddisk:adv-file", "show version | file harddisk:adv-file/y"],
], ids=["more-nul", "file-nul", "more-long", "file-long", "file-onto-dir", "file-under-file"])
def test_bad_file_names_get_an_error_answer(device, commands: list[str]) -> None:
    for command in commands[:-1]:
        run_bounded(device, command)
    try:
        out = run_bounded(device, commands[-1])
    finally:
        alive(device)
    assert "%" in out, repr(out)


def test_nul_in_a_file_name_leaves_the_server_alive(device) -> None:
    try:
        run_bounded(device, "more harddisk:a\x00b")
    except (paramiko.SSHException, EOFError, OSError):
        pass
    alive(device)


def test_saved_old_dossier_resigned_with_a_new_nonce_is_not_trusted(device) -> None:
    """Replay: save a dossier to a file, later `more file | utility sign nonce NEW`."""
    run_bounded(device, "show platform security integrity dossier include packages nonce 1111 "
                        "| file harddisk:adv-old.json")
    out = run_bounded(device, "more harddisk:adv-old.json | utility sign nonce 2222 include-certificate")
    raw = out.encode()
    start = raw.index(b"{")
    body = json.loads(raw[start:])["signed-envelope"]
    import base64
    root = x509.load_der_x509_certificate(base64.b64decode(body["certificates"]["certificate"][0]["value"]))
    result = verify_envelope(raw, roots=[root], expected_nonce=bytes.fromhex("2222"))
    assert not result.trusted and "nonce.dossier_mismatch" in result.ids(), result.ids()


@pytest.mark.parametrize("command", ["reload", "crypto key generate rsa system-root-key",
                                     "copy harddisk:x harddisk:y", "configure terminal"])
def test_prompting_commands_over_exec_do_not_hang(device, command: str) -> None:
    run_bounded(device, command)
    alive(device)


def test_interactive_shell_with_hostile_keystrokes_ends(device, server_errors: _Collect) -> None:
    server_errors.records.clear()
    client = emu_ssh.connect(device)
    try:
        channel = client.invoke_shell(width=80, height=24)
        channel.settimeout(SESSION_DEADLINE_S)
        for chunk in ("\x1b[A" * 50, "'" * 10 + "\r", "\t\t?\r", "show version | " + "|" * 100 + "\r",
                      "x" * 70_000, "\r", "\x03\x1a\x04", "exit\r"):
            channel.sendall(chunk.encode())
        deadline = time.monotonic() + SESSION_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                if not channel.recv(65536):
                    break
            except socket.timeout:
                break
    finally:
        client.close()
    alive(device)
    assert not [(r.getMessage(), r.exc_text) for r in server_errors.records]


def test_abandoned_handshake_does_not_block_others(device) -> None:
    sockets = [socket.create_connection((device.host, device.port), timeout=5) for _ in range(5)]
    try:
        for sock in sockets:
            sock.sendall(b"SSH-2.0-adv\r\n" + os.urandom(64))
        alive(device)
    finally:
        for sock in sockets:
            sock.close()


_ALPHABET = st.sampled_from(list("ab19 |'\"{}[]()\\/.:-_\t\x00\x01\x1b\x7f\u00e9\u2028") + [
    "show ", "version", "utility sign nonce ", "include-certificate", "file harddisk:", "more ",
    "platform security integrity dossier include ", "packages ", "nonce ", "1580", "begin ",
    "include ", "exclude ", "describe ", "../", "harddisk:", "running-config", "inventory"])


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_ALPHABET, min_size=1, max_size=20).map("".join))
def test_random_exec_lines_never_raise_inside_the_server(device, server_errors: _Collect, line: str) -> None:
    server_errors.records.clear()
    try:
        run_bounded(device, line)
    except (paramiko.SSHException, EOFError, OSError, UnicodeDecodeError):
        pass
    alive(device)  # a second connection: the failing one's thread has logged by then
    crashes = [(r.getMessage(), r.exc_text) for r in server_errors.records]
    assert not crashes, (line, crashes)


def test_server_errors_are_observed(device, server_errors: _Collect, monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector above works, and a handler bug costs one command, not the session: a
    handler made to fail (injected, since no real input reaches one) is logged and answered."""
    from emulator import commands

    row = next(row for row in commands.EXEC_ROWS if row.pattern == "show clock")

    def broken(session, match):
        raise RuntimeError("injected handler bug")

    monkeypatch.setattr(row, "handler", broken)
    server_errors.records.clear()
    out = run_bounded(device, "show clock")
    assert "% Internal error: RuntimeError: injected handler bug" in out
    alive(device)
    assert server_errors.records


def test_an_idle_configuration_session_does_not_block_other_sessions(device) -> None:
    with emu_ssh.Shell(device) as shell:
        shell.cmd("configure terminal", expect=r"\(config\)#$")
        shell.send("hostname adv-half-typed")  # no Enter: the line stays open
        run_bounded(device, "show platform security integrity dossier include packages nonce 1580 "
                            "| utility sign nonce 1580 include-certificate")
        alive(device)


def test_a_channel_that_never_asks_for_anything_does_not_block_others(device) -> None:
    client = emu_ssh.connect(device)
    try:
        client.get_transport().open_session()  # no exec, no shell: the server waits for a request
        alive(device)
    finally:
        client.close()
    alive(device)


@pytest.mark.parametrize("nonce", ["00", "0000", "158", "0x1580", "+1580", "15_80", "\uff11\uff15\uff18\uff10",
                                   "ab" * 65, "g1", "''", '""'])
def test_malformed_nonces_get_invalid_and_nothing_signed(device, nonce: str) -> None:
    out = run_bounded(device, f"show version | utility sign nonce {nonce} include-certificate")
    assert "signed-envelope" not in out
    assert "% Invalid" in out, repr(out)


def test_dossier_nonce_and_sign_nonce_that_differ_are_not_trusted(device) -> None:
    out = run_bounded(device, "show platform security integrity dossier include packages nonce 1580 "
                              "| utility sign nonce 2222 include-certificate")
    raw = out.encode()
    body = json.loads(raw[raw.index(b"{"):])["signed-envelope"]
    import base64
    root = x509.load_der_x509_certificate(base64.b64decode(body["certificates"]["certificate"][0]["value"]))
    result = verify_envelope(raw, roots=[root], expected_nonce=bytes.fromhex("2222"))
    assert not result.trusted and "nonce.dossier_mismatch" in result.ids(), result.ids()
    honest = run_bounded(device, "show platform security integrity dossier include packages nonce 2222 "
                                 "| utility sign nonce 2222 include-certificate")
    assert verify_envelope(honest.encode(), roots=[root], expected_nonce=bytes.fromhex("2222")).trusted
