"""The SSH client against a real loopback paramiko server: host keys, auth, deadlines, big output."""

from __future__ import annotations

import dataclasses
import re
import socket
import time
from pathlib import Path

import paramiko
import pytest

from collector.errors import (AuthError, CommandError, ConnectError, DeadlineError, HostKeyError,
                              OutputTooLargeError)
from collector.inventory import Device, HostKey, Timeouts, load_inventory
from collector.platforms import IOSXR
from collector.ssh import run_command
from collector_fakes import TIMESTAMP, FakeDevice, FakeFleet, _ed25519, reply


def one_device(tmp_path: Path, handler, **fake) -> tuple[FakeFleet, FakeDevice]:
    device = FakeDevice("xr-0001", handler, **fake)
    return FakeFleet([device]), device


def inventory_device(fleet: FakeFleet, tmp_path: Path) -> Device:
    return load_inventory(fleet.write_inventory(tmp_path / "inv.yaml", password_dir=tmp_path / "pw")).devices[0]


def test_output_is_returned_byte_for_byte(tmp_path: Path) -> None:
    payload = (TIMESTAMP + '{"x": "caf\u00e9\\n"}\r\n').encode() + bytes(range(256))
    fleet, fake = one_device(tmp_path, reply(payload))
    with fleet:
        device = inventory_device(fleet, tmp_path)
        result = run_command(device, "show x")
    assert result.output == payload
    assert result.exit_status == 0
    assert fake.commands == ["show x"]
    assert result.received >= result.started


def test_large_output_arrives_whole(tmp_path: Path) -> None:
    payload = b"A" * (6 * 1024 * 1024 + 17)
    fleet, _ = one_device(tmp_path, reply(payload))
    with fleet:
        result = run_command(inventory_device(fleet, tmp_path), "show big")
    assert len(result.output) == len(payload)


def test_output_bound_is_enforced(tmp_path: Path) -> None:
    fleet, _ = one_device(tmp_path, reply(b"B" * 300_000))
    with fleet, pytest.raises(OutputTooLargeError, match="at most 1000 bytes"):
        run_command(inventory_device(fleet, tmp_path), "show big", max_output_bytes=1000)


def test_unpinned_host_key_is_refused_with_fingerprint_and_pin_line(tmp_path: Path) -> None:
    fleet, fake = one_device(tmp_path, reply(b"x"))
    with fleet:
        device = dataclasses.replace(inventory_device(fleet, tmp_path), host_key=None)
        with pytest.raises(HostKeyError) as caught:
            run_command(device, "show x")
    message = str(caught.value)
    assert "not pinned" in message and f"[127.0.0.1]:{fake.port}" in message
    assert HostKey.parse(fake.host_key_line()).fingerprint in message
    assert fake.host_key.get_base64() in message
    assert fake.commands == []


def test_changed_host_key_is_refused(tmp_path: Path) -> None:
    fleet, fake = one_device(tmp_path, reply(b"x"))
    other = _ed25519()
    with fleet:
        device = dataclasses.replace(
            inventory_device(fleet, tmp_path),
            host_key=HostKey.parse(f"[127.0.0.1]:{fake.port} {other.get_name()} {other.get_base64()}"))
        with pytest.raises(HostKeyError, match="HOST KEY MISMATCH") as caught:
            run_command(device, "show x")
    assert not caught.value.transient
    assert fake.commands == []


def test_wrong_password_is_auth_error_not_transient(tmp_path: Path) -> None:
    fleet, fake = one_device(tmp_path, reply(b"x"), password="right")
    with fleet:
        device = inventory_device(fleet, tmp_path)
        (tmp_path / "pw" / "xr-0001.password").write_text("wrong\n")
        with pytest.raises(AuthError, match="rejected the credentials") as caught:
            run_command(device, "show x")
    assert not caught.value.transient


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    fleet, _ = one_device(tmp_path, reply(b"x"))
    with fleet:
        device = dataclasses.replace(inventory_device(fleet, tmp_path), port=port)
    with pytest.raises(ConnectError, match="refused") as caught:
        run_command(device, "show x")
    assert caught.value.transient


def test_a_host_that_sends_no_ssh_banner_is_named_with_what_happened(tmp_path: Path) -> None:
    listener = socket.socket()  # accepts TCP and never speaks, as a wrong port or a hung daemon does
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    fleet, _ = one_device(tmp_path, reply(b"x"))
    with fleet:
        device = inventory_device(fleet, tmp_path)
    device = dataclasses.replace(device, port=listener.getsockname()[1],
                                 timeouts=Timeouts(connect=0.5, auth=1, command=1, device=5))
    try:
        with pytest.raises(DeadlineError) as caught:
            run_command(device, "show x")
    finally:
        listener.close()
    assert str(caught.value) == (f"xr-0001: no SSH banner from [127.0.0.1]:{device.port} within 0.5 s: "
                                 "not an SSH server, or overloaded")
    assert caught.value.transient


def test_session_refused_by_device_is_transient(tmp_path: Path) -> None:
    fleet, _ = one_device(tmp_path, reply(b"x"), refuse_sessions=True)
    with fleet:
        with pytest.raises(ConnectError) as caught:
            run_command(inventory_device(fleet, tmp_path), "show x")
    assert caught.value.transient


def slow(command: str, channel: paramiko.Channel) -> None:
    channel.sendall(b"partial")
    time.sleep(1.5)
    channel.sendall(b" rest")
    channel.send_exit_status(0)
    channel.close()


def test_command_deadline(tmp_path: Path) -> None:
    fleet, _ = one_device(tmp_path, slow)
    with fleet:
        device = dataclasses.replace(inventory_device(fleet, tmp_path), timeouts=Timeouts(command=0.3))
        begin = time.monotonic()
        with pytest.raises(DeadlineError, match="command deadline passed after 7 bytes") as caught:
            run_command(device, "show x")
    assert time.monotonic() - begin < 1.4
    assert caught.value.transient


def test_whole_device_deadline(tmp_path: Path) -> None:
    fleet, _ = one_device(tmp_path, slow)
    with fleet:
        device = dataclasses.replace(inventory_device(fleet, tmp_path), timeouts=Timeouts(device=0.5))
        with pytest.raises(DeadlineError):
            run_command(device, "show x")


def drop(command: str, channel: paramiko.Channel) -> None:
    channel.sendall(b'{"signed-envelope": {"data": "half')
    channel.get_transport().close()


def test_connection_cut_mid_output_is_a_transient_failure(tmp_path: Path) -> None:
    fleet, _ = one_device(tmp_path, drop)
    with fleet:
        with pytest.raises(ConnectError, match="cut mid-output") as caught:
            run_command(inventory_device(fleet, tmp_path), "show x")
    assert caught.value.transient


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (TIMESTAMP + "% Invalid input detected at '^' marker.\n", "device.command_error"),
        (TIMESTAMP + "\n% This command is not authorized\n", "device.not_authorized"),
    ],
)
def test_device_error_lines_are_command_errors(output: str, reason: str) -> None:
    with pytest.raises(CommandError) as caught:
        IOSXR.check_output(output.encode())
    assert caught.value.reason == reason
    assert "expected a signed envelope" in str(caught.value)


def test_envelope_output_passes_the_check() -> None:
    IOSXR.check_output((TIMESTAMP + '{"signed-envelope": {}}\n').encode())


def test_dossier_command_uses_the_same_nonce_twice() -> None:
    command = IOSXR.dossier_command(["packages"], "ab" * 16,
                                    filesystem_options={"0/RP0/CPU0": {"block_start": 5}})
    assert command == (
        "show platform security integrity dossier include packages filesystem-inventory-options "
        "'{\"0/RP0/CPU0\":{\"block_start\":5}}' nonce " + "ab" * 16 + " | utility sign nonce "
        + "ab" * 16 + " include-certificate"
    )


def test_key_file_credential_with_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    key_file = tmp_path / "id_ed25519"
    key_file.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                               serialization.BestAvailableEncryption(b"pass phrase")))
    key_file.chmod(0o600)
    public = paramiko.PKey.from_path(key_file, password=b"pass phrase")
    fleet, fake = one_device(tmp_path, reply(b"key ok"), authorized_keys=[public])
    with fleet:
        fleet.write_inventory(tmp_path / "inv.yaml", password_dir=tmp_path / "pw")
        text = (tmp_path / "inv.yaml").read_text()
        text = re.sub(r"credential: \{password_file: [^}]*\}",
                      f"credential: {{key_file: {key_file}, passphrase_env: KEY_PASSPHRASE}}", text)
        (tmp_path / "inv.yaml").write_text(text)
        device = load_inventory(tmp_path / "inv.yaml").devices[0]
        monkeypatch.setenv("KEY_PASSPHRASE", "pass phrase")
        assert run_command(device, "show x").output == b"key ok"
        monkeypatch.setenv("KEY_PASSPHRASE", "wrong")
        with pytest.raises(Exception) as caught:
            run_command(device, "show x")
    assert "cannot load key file" in str(caught.value)


def test_agent_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if not shutil.which("ssh-agent") or not shutil.which("ssh-add"):
        pytest.skip("OpenSSH ssh-agent/ssh-add not installed")
    key_file = tmp_path / "id_agent"
    key_file.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    key_file.chmod(0o600)
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        env = {"SSH_AUTH_SOCK": str(socket_path), "PATH": "/usr/bin:/bin"}
        deadline = time.monotonic() + 5
        while not socket_path.exists():  # the agent's readiness is its socket appearing
            assert agent.poll() is None and time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.01)
        subprocess.run(["ssh-add", str(key_file)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        fleet, _ = one_device(tmp_path, reply(b"agent ok"),
                              authorized_keys=[paramiko.PKey.from_path(key_file)])
        with fleet:
            fleet.write_inventory(tmp_path / "inv.yaml", password_dir=tmp_path / "pw")
            text = re.sub(r"credential: \{password_file: [^}]*\}", "credential: {agent: true}",
                          (tmp_path / "inv.yaml").read_text())
            (tmp_path / "inv.yaml").write_text(text)
            device = load_inventory(tmp_path / "inv.yaml").devices[0]
            assert run_command(device, "show x").output == b"agent ok"
    finally:
        agent.terminate()
        agent.wait(5)
