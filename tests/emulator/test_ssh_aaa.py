"""Users, task groups, public-key login, line timeouts, persistence, and OpenSSH's own client."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emu_proof import check_envelope
from emu_ssh import Shell, connect, generate_client_key, private_key_text, run, strip_timestamp
from emulator.fleet import Fleet

SEED_DOSSIER_USER = [
    "configure",
    "taskgroup alltasks-dossier",
    "task read sysmgr",
    "task read system",
    "task read pkg-mgmt",
    "task read basic-services",
    "task read config-services",
    "task execute crypto",
    "task execute basic-services",
    "commit",
    "usergroup dossier-group",
    "taskgroup alltasks-dossier",
    "commit",
    "username dossier-user",
    "group dossier-group",
    "secret 0 Dossier-pw1",
    "commit",
    "username viewer",
    "group operator",
    "secret 0 Viewer-pw1",
    "commit",
    "end",
]
DOSSIER = ("show platform security integrity dossier include packages reboot-history rollback-history "
           "system-integrity-snapshot system-inventory nonce 1580 | utility sign nonce 1580 include-certificate")


def test_seed_user_authorization_example(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    device.device.provision("ecdsa-p256")
    with Shell(device) as shell:
        for line in SEED_DOSSIER_USER:
            shell.cmd(line)
    running = strip_timestamp(run(device, "show running-config username dossier-user"))
    assert "Dossier-pw1" not in running and "secret 10 $scrypt$" in running
    output = run(device, DOSSIER, username="dossier-user", password="Dossier-pw1")
    check_envelope(strip_timestamp(output), bytes.fromhex("1580"))
    refused = run(device, DOSSIER, username="viewer", password="Viewer-pw1")
    assert refused.strip() == "% This command is not authorized"
    assert "Cisco IOS XR" in run(device, "show version", username="viewer", password="Viewer-pw1")
    described = strip_timestamp(run(device, f"describe {DOSSIER}", username="viewer", password="Viewer-pw1"))
    assert "User needs ALL of the following taskids:" in described and "crypto (EXECUTE)" in described


def test_public_key_login_after_import(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    key, public_line = generate_client_key()
    harddisk = device.device.folder / "harddisk"
    harddisk.mkdir(exist_ok=True)
    (harddisk / "admin.pub").write_text(public_line + "\n")
    output = run(device, "crypto key import authentication rsa", stdin="harddisk:/admin.pub\n")
    assert "[OK]" in output
    client = connect(device, pkey=key)
    client.close()


def test_exec_timeout_closes_an_idle_session(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        for line in ("configure", "line default", "exec-timeout 0 1", "commit", "end"):
            shell.cmd(line)
    with Shell(device) as idle:
        with pytest.raises(EOFError):
            idle.read_until("NEVER", timeout=15)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Fleet(state_dir=state, devices=1, provisioned=True, files=50) as first:
        entry = first.devices[0]
        with Shell(entry) as shell:
            for line in ("configure", "hostname kept", "commit", "end"):
                shell.cmd(line)
        before = check_envelope(strip_timestamp(run(entry, "show version | utility sign nonce 01 include-certificate")), b"\x01")
        host_key = entry.host_key_line.split(" ", 1)[1]
        commits = strip_timestamp(run(entry, "show configuration commit list"))
    with Fleet(state_dir=state, devices=1, provisioned=True, files=50) as second:
        entry = second.devices[0]
        assert entry.host_key_line.split(" ", 1)[1] == host_key
        after = check_envelope(strip_timestamp(run(entry, "show version | utility sign nonce 01 include-certificate")), b"\x01")
        assert after["root"] == before["root"] and after["leaf"] == before["leaf"]
        assert "RP/0/RP0/CPU0:kept#" in Shell(entry).cmd("")
        assert strip_timestamp(run(entry, "show configuration commit list")) == commits
    modes = {p.name: p.stat().st_mode & 0o777 for p in (state / "xr-0001" / "keys").glob("*.key.pem")}
    assert modes and set(modes.values()) == {0o600}
    assert (state / "xr-0001" / "host_key").stat().st_mode & 0o777 == 0o600


def _ssh_base(device, key_file: Path, known_hosts: Path) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-p", str(device.port), "-i", str(key_file),
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", f"{device.username}@{device.host}"]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")
def test_openssh_client_runs_the_dossier_and_the_seed_config(blank_fleet, tmp_path: Path) -> None:
    device = blank_fleet.devices[0]
    key, public_line = generate_client_key()
    key_file = tmp_path / "id_rsa"
    key_file.write_text(private_key_text(key))
    key_file.chmod(0o600)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(device.host_key_line + "\n")
    device.device.add_authorized_key(device.username, public_line.split()[1])
    device.device.provision("rsa2048")
    # Non-interactive: ssh host 'command'
    result = subprocess.run(_ssh_base(device, key_file, known_hosts) + [DOSSIER], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    check_envelope(strip_timestamp(result.stdout), bytes.fromhex("1580"))
    # Interactive through a PTY: the seed's hostname/domain example typed line by line.
    script = "configure\rhostname myhost\rdomain name mydomain.com\rend\ryes\rshow running-config hostname\rexit\r"
    result = subprocess.run(_ssh_base(device, key_file, known_hosts)[:1] + ["-tt"] + _ssh_base(device, key_file, known_hosts)[1:],
                            input=script, capture_output=True, text=True, timeout=60)
    assert "RP/0/RP0/CPU0:myhost#" in result.stdout, result.stdout[-2000:]
    assert "Uncommitted changes found, commit them? [yes]:" in result.stdout


def test_serve_command_prints_ready_writes_inventory_and_stops_on_sigterm(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    process = subprocess.Popen(
        [sys.executable, "-m", "dossier_cli", "emulator", "serve", "--devices", "3", "--state-dir", str(tmp_path / "s"),
         "--inventory-out", str(inventory), "--provisioned", "--files", "50", "--fault", "xr-0002=data-changed"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        data = yaml.safe_load(inventory.read_text())
        assert [d["name"] for d in data["devices"]] == ["xr-0001", "xr-0002", "xr-0003"]
        first = data["devices"][0]
        secret_file = Path(first["credential"]["password_file"])
        assert secret_file.stat().st_mode & 0o777 == 0o600
        assert secret_file.read_text().strip() not in inventory.read_text()

        class Entry:
            host, port, username = first["host"], first["port"], first["username"]
            password = secret_file.read_text().strip()
            host_key_line = first["host_key"]

        assert "Cisco IOS XR" in run(Entry, "show version")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_serve_without_an_inventory_prints_which_device_listens_on_which_port(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dossier_cli", "emulator", "serve", "--devices", "3", "--state-dir", str(tmp_path / "s"),
         "--files", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        lines = [process.stderr.readline().rstrip("\n") for _ in range(4)]  # type: ignore[union-attr]
        assert lines[0] == "3 device(s) on 127.0.0.1, ports picked by the system", lines
        mapped = dict(line.split(" ") for line in lines[1:])
        assert sorted(mapped) == ["xr-0001", "xr-0002", "xr-0003"]
        for name, address in mapped.items():  # each device answers SSH on the port printed beside its name
            host, port = address.rsplit(":", 1)
            assert host == "127.0.0.1"
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                assert sock.recv(64).startswith(b"SSH-2.0-"), name
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0
