"""SCP and SFTP of harddisk: files, driven by OpenSSH's scp and sftp and by paramiko's SFTPClient."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import paramiko
import pytest

from emu_ssh import Shell, connect, generate_client_key, private_key_text, run, strip_timestamp
from emulator import filetransfer
from emulator.faults import Fault
from emulator.fleet import Fleet

needs_openssh = pytest.mark.skipif(shutil.which("scp") is None or shutil.which("sftp") is None,
                                reason="OpenSSH scp/sftp clients not installed")

DOSSIER_FILE = "dossier.json"
DOSSIER = ("show platform security integrity dossier include packages reboot-history system-inventory nonce 1580 "
           f"| utility sign nonce 1580 include-certificate | file harddisk:{DOSSIER_FILE}")
# A user who may run show commands but not read files: no basic-services task.
NO_FILES_USER = ("crypto-reader", "Crypto-pw1")
NO_FILES_CONFIG = [
    "configure", "taskgroup crypto-only", "task read crypto", "commit",
    "usergroup crypto-readers", "taskgroup crypto-only", "commit",
    f"username {NO_FILES_USER[0]}", "group crypto-readers", f"secret 0 {NO_FILES_USER[1]}", "commit", "end",
]


class Client:
    """OpenSSH's scp and sftp against one device: public-key login, the device's host key pinned."""

    def __init__(self, device: Any, folder: Path, username: str) -> None:
        self.device, self.folder, self.username = device, folder, username
        self.key_file = folder / f"id_rsa_{username}"
        key, public_line = generate_client_key()
        self.key_file.write_text(private_key_text(key))
        self.key_file.chmod(0o600)
        device.device.add_authorized_key(username, public_line.split()[1])
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text(device.host_key_line + "\n")

    def options(self) -> list[str]:
        return ["-F", "/dev/null", "-i", str(self.key_file), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]

    def scp(self, *args: str, legacy: bool = False) -> subprocess.CompletedProcess[str]:
        command = ["scp", *self.options(), "-P", str(self.device.port), *(["-O"] if legacy else []), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    def remote(self, path: str) -> str:
        return f"{self.username}@{self.device.host}:{path}"

    def sftp(self, batch: str) -> subprocess.CompletedProcess[str]:
        batch_file = self.folder / "batch"
        batch_file.write_text(batch)
        command = ["sftp", *self.options(), "-P", str(self.device.port), "-b", str(batch_file),
                   f"{self.username}@{self.device.host}"]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.folder)


@pytest.fixture(scope="module")
def files_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One provisioned device with a signed dossier written by `| file`, and a user without file access."""
    with Fleet(state_dir=tmp_path_factory.mktemp("files"), devices=1, provisioned=True, files=50) as running:
        device = running.devices[0]
        assert strip_timestamp(run(device, DOSSIER)) == ""
        with Shell(device) as shell:
            for line in NO_FILES_CONFIG:
                shell.cmd(line)
        yield running


@pytest.fixture(scope="module")
def more_bytes(files_fleet: Fleet) -> bytes:
    """What `more harddisk:dossier.json` prints (after its timestamp line)."""
    return strip_timestamp(run(files_fleet.devices[0], f"more harddisk:{DOSSIER_FILE}")).encode()


@needs_openssh
@pytest.mark.parametrize("legacy", [False, True], ids=["sftp-protocol", "legacy-O"])
@pytest.mark.parametrize("path", [f"harddisk:/{DOSSIER_FILE}", f"/harddisk:/{DOSSIER_FILE}", DOSSIER_FILE])
def test_scp_of_a_file_output_returns_the_bytes_more_prints(files_fleet, more_bytes, tmp_path: Path,
                                                            legacy: bool, path: str) -> None:
    device = files_fleet.devices[0]
    client = Client(device, tmp_path, device.username)
    result = client.scp(client.remote(path), str(tmp_path / "copy.json"), legacy=legacy)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "copy.json").read_bytes() == more_bytes
    assert more_bytes.startswith(b"{") and b'"signature"' in more_bytes


@needs_openssh
def test_sftp_batch_shows_harddisk_lists_and_gets(files_fleet, more_bytes, tmp_path: Path) -> None:
    device = files_fleet.devices[0]
    client = Client(device, tmp_path, device.username)
    result = client.sftp(f"pwd\nls -l\nget {DOSSIER_FILE} a.json\nget harddisk:/{DOSSIER_FILE} b.json\n"
                         f"cd /harddisk:\nget /harddisk:/{DOSSIER_FILE} c.json\n")
    assert result.returncode == 0, result.stderr
    assert "Remote working directory: /harddisk:" in result.stdout
    assert DOSSIER_FILE in result.stdout and str(len(more_bytes)) in result.stdout
    for name in ("a.json", "b.json", "c.json"):
        assert (tmp_path / name).read_bytes() == more_bytes


def test_paramiko_sftp_client_with_a_password(files_fleet, more_bytes) -> None:
    device = files_fleet.devices[0]
    client = connect(device)
    try:
        sftp = client.open_sftp()
        assert sftp.normalize(".") == "/harddisk:"
        assert DOSSIER_FILE in sftp.listdir("harddisk:")
        assert sftp.stat(f"/harddisk:/{DOSSIER_FILE}").st_size == len(more_bytes)
        with sftp.open(f"harddisk:/{DOSSIER_FILE}") as remote:
            assert remote.read() == more_bytes
    finally:
        client.close()


@needs_openssh
def test_a_user_without_the_file_task_ids_is_refused(files_fleet, tmp_path: Path) -> None:
    device = files_fleet.devices[0]
    username, password = NO_FILES_USER
    described = strip_timestamp(run(device, f"describe more harddisk:{DOSSIER_FILE}"))
    assert "basic-services (READ)" in described  # the task IDs a file read needs, as for `more`
    assert run(device, f"more harddisk:{DOSSIER_FILE}", username=username, password=password).strip() == \
        "% This command is not authorized"
    client = connect(device, username=username, password=password)
    try:
        sftp = client.open_sftp()
        with pytest.raises(PermissionError):
            sftp.open(DOSSIER_FILE).read()
        with pytest.raises(PermissionError):
            sftp.listdir(".")
    finally:
        client.close()
    openssh = Client(device, tmp_path, username)
    for legacy in (False, True):
        result = openssh.scp(openssh.remote(DOSSIER_FILE), str(tmp_path / "copy.json"), legacy=legacy)
        assert result.returncode != 0 and not (tmp_path / "copy.json").exists()
        if legacy:  # in SFTP mode scp's glob reports any refused stat as "No such file or directory"
            assert "This command is not authorized" in result.stderr, result.stderr


@needs_openssh
def test_paths_outside_harddisk_are_refused(files_fleet, tmp_path: Path) -> None:
    device = files_fleet.devices[0]
    outside = tmp_path / "secret.txt"
    outside.write_text("not on the device\n")
    (device.device.folder / "harddisk" / "escape").symlink_to(outside)
    spellings = ["../device.json", "harddisk:/../../secret.txt", "/etc/passwd", "escape", f"/harddisk:/../{DOSSIER_FILE}x"]
    client = connect(device)
    try:
        sftp = client.open_sftp()
        for path in spellings:
            with pytest.raises(PermissionError):
                sftp.open(path).read()
        assert "escape" not in sftp.listdir(".")  # a link that leaves harddisk: is not listed
    finally:
        client.close()
    openssh = Client(device, tmp_path, device.username)
    for legacy in (False, True):
        for path in ("/etc/passwd", "../../secret.txt", "escape"):
            result = openssh.scp(openssh.remote(path), str(tmp_path / "copy"), legacy=legacy)
            assert result.returncode != 0 and not (tmp_path / "copy").exists(), (path, legacy)


@needs_openssh
def test_writes_are_refused(files_fleet, tmp_path: Path) -> None:
    device = files_fleet.devices[0]
    harddisk = device.device.folder / "harddisk"
    local = tmp_path / "upload.txt"
    local.write_text("from outside\n")
    client = connect(device)
    try:
        sftp = client.open_sftp()
        with pytest.raises(PermissionError):
            sftp.put(str(local), "upload.txt")
        for attempt in (lambda: sftp.remove(DOSSIER_FILE), lambda: sftp.rename(DOSSIER_FILE, "moved.json"),
                        lambda: sftp.mkdir("new"), lambda: sftp.chmod(DOSSIER_FILE, 0o777),
                        lambda: sftp.open(DOSSIER_FILE, "a")):
            with pytest.raises(PermissionError):
                attempt()
    finally:
        client.close()
    openssh = Client(device, tmp_path, device.username)
    for legacy in (False, True):
        result = openssh.scp(str(local), openssh.remote("harddisk:/upload.txt"), legacy=legacy)
        assert result.returncode != 0, result.stderr
        assert ("read-only" if legacy else "Permission denied") in result.stderr, result.stderr
    result = openssh.sftp("put upload.txt\n")
    assert result.returncode != 0 and "Permission denied" in result.stderr, result.stderr
    assert not (harddisk / "upload.txt").exists() and (harddisk / DOSSIER_FILE).exists()


def test_the_rate_limit_applies_to_file_transfer(files_fleet, tmp_path: Path) -> None:
    device = files_fleet.devices[0]
    files_fleet.set_fault(device.name, Fault.RATE_LIMIT)
    try:
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            connect(device, timeout=5).open_sftp()
    finally:
        files_fleet.clear_faults(device.name, Fault.RATE_LIMIT)


@needs_openssh
@pytest.mark.parametrize("legacy", [False, True], ids=["sftp-protocol", "legacy-O"])
def test_scp_recursive_copies_a_folder_with_its_times(files_fleet, tmp_path: Path, legacy: bool) -> None:
    device = files_fleet.devices[0]
    assert strip_timestamp(run(device, "show version | file harddisk:/reports/version.txt")) == ""
    expected = strip_timestamp(run(device, "more harddisk:/reports/version.txt")).encode()
    client = Client(device, tmp_path, device.username)
    result = client.scp("-r", "-p", client.remote("harddisk:/reports"), str(tmp_path / "copy"), legacy=legacy)
    assert result.returncode == 0, result.stderr
    copied = tmp_path / "copy" / "version.txt"
    assert copied.read_bytes() == expected
    on_device = device.device.folder / "harddisk" / "reports" / "version.txt"
    assert int(copied.stat().st_mtime) == int(on_device.stat().st_mtime)


def test_sftp_open_handles_are_capped_per_session(files_fleet) -> None:
    device = files_fleet.devices[0]
    client = connect(device)
    try:
        sftp = client.open_sftp()
        opened = [sftp.open(f"harddisk:/{DOSSIER_FILE}") for _ in range(filetransfer.MAX_SFTP_HANDLES)]
        with pytest.raises(IOError):
            sftp.open(f"harddisk:/{DOSSIER_FILE}")
        with pytest.raises(IOError):
            sftp.listdir("harddisk:")  # a folder handle counts too
        opened.pop().close()
        with sftp.open(f"harddisk:/{DOSSIER_FILE}") as again:  # a closed handle frees its place
            assert again.read(1) == b"{"
        for handle in opened:
            handle.close()
        assert DOSSIER_FILE in sftp.listdir("harddisk:")
    finally:
        client.close()


@needs_openssh
def test_scp_recursive_skips_a_symlink_loop(files_fleet, tmp_path: Path) -> None:
    device = files_fleet.devices[0]
    planted = device.device.folder / "harddisk" / "looped"
    (planted / "a").mkdir(parents=True)
    (planted / "a" / "note.txt").write_text("inside\n")
    (planted / "a" / "loop").symlink_to("..")
    try:
        client = Client(device, tmp_path, device.username)
        result = client.scp("-r", client.remote("harddisk:/looped"), str(tmp_path / "copy"), legacy=True)
    finally:
        (planted / "a" / "loop").unlink()
        shutil.rmtree(planted)
    assert (tmp_path / "copy" / "a" / "note.txt").read_text() == "inside\n"
    assert "harddisk:/looped/a/loop: skipped, a link to a folder already copied" in result.stderr
    assert result.returncode == 1  # the warning counts as an error at the client, as scp does


@needs_openssh
def test_scp_turns_an_unexpected_error_into_an_scp_error(files_fleet, tmp_path: Path, monkeypatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(filetransfer, "_send_file", explode)
    device = files_fleet.devices[0]
    client = Client(device, tmp_path, device.username)
    result = client.scp(client.remote(f"harddisk:/{DOSSIER_FILE}"), str(tmp_path / "copy.json"), legacy=True)
    assert result.returncode != 0
    assert "scp: internal error: RecursionError" in result.stderr
