"""Inventory loading: the emulator's file as is, groups/defaults, and errors with file:line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector.errors import InventoryError
from collector.inventory import DEFAULT_ITEMS, HostKey, load_inventory
from collector_fakes import _ed25519

KEY = _ed25519()
KEY_LINE = f"[127.0.0.1]:41001 {KEY.get_name()} {KEY.get_base64()}"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path


def emulator_style(tmp_path: Path) -> Path:
    secret = tmp_path / "xr-0001.password"
    secret.write_text("pw-Secret-7q\n")
    secret.chmod(0o600)
    return write(tmp_path, f"""\
# written by `dossier emulator serve`
devices:
  - name: xr-0001
    host: 127.0.0.1
    port: 41001
    username: admin
    credential: {{password_file: {secret}}}   # file mode 0600
    host_key: "{KEY_LINE}"
    platform: iosxr
""")


def test_emulator_inventory_loads_as_is(tmp_path: Path) -> None:
    inventory = load_inventory(emulator_style(tmp_path))
    (device,) = inventory.devices
    assert (device.name, device.host, device.port, device.username) == ("xr-0001", "127.0.0.1", 41001, "admin")
    assert device.credential.password() == "pw-Secret-7q"
    assert device.host_key is not None and device.host_key.to_pkey().asbytes() == KEY.asbytes()
    assert device.items == DEFAULT_ITEMS
    # (a distinctive password: "pw" alone turned up inside the random host key's base64)
    assert "pw-Secret-7q" not in repr(device)


def test_groups_and_defaults_resolve_device_first(tmp_path: Path) -> None:
    path = write(tmp_path, """\
defaults:
  username: ops
  credential: {password_env: FLEET_PW}
  timeouts: {connect: 3, command: 50}
groups:
  core:
    port: 2222
    items: [packages, filesystem-inventory]
    timeouts: {command: 90}
  edge:
    port: 2200
devices:
  - {name: r1, host: 10.0.0.1, groups: [core, edge]}
  - {name: r2, host: 10.0.0.2, groups: [edge], port: 22, username: admin}
""")
    r1, r2 = load_inventory(path).devices
    assert r1.port == 2222 and r1.items == ("packages", "filesystem-inventory")
    assert (r1.timeouts.connect, r1.timeouts.command, r1.timeouts.auth) == (3, 90, 15.0)
    assert r2.port == 22 and r2.username == "admin" and r2.items == DEFAULT_ITEMS
    assert r1.known_hosts_name == "[10.0.0.1]:2222" and r2.known_hosts_name == "10.0.0.2"
    assert load_inventory(path).select(groups=["core"]) == [r1]


@pytest.mark.parametrize(
    ("body", "line", "expected"),
    [
        ("devices:\n  - name: r1\n    host: h\n    username: u\n    credential: {password: x}\n", 5,
         "inline passwords are not accepted"),
        ("devices:\n  - name: r1\n    host: h\n    username: u\n    credential: {agent: true}\n    prot: 22\n",
         2, "unexpected field(s) prot"),
        ("devices:\n  - name: r1\n    host: h\n    username: u\n    credential: {pasword_file: pw}\n", 5,
         "unexpected field(s) pasword_file (did you mean password_file?); a credential is {password_env: VAR}, "
         "{password_file: PATH}, {key_file: PATH[, passphrase_env: VAR]} or {agent: true}"),
        ("devices:\n  - name: r1\n    host: h\n    username: u\n    credential: {agent: true}\n    hostkey: x\n",
         2, "unexpected field(s) hostkey (did you mean host_key?)"),
        ("devices:\n  - name: r1\n    host: h\n    host: h2\n", 4, "expected each key once"),
        ("devices:\n  - name: r1\n    host: h\n    username: u\n    credential: {agent: true}\n    port: 70000\n",
         6, "devices[0].port"),
        ("devices:\n  - name: r1\n    host: h\n    username: u\n    credential: {agent: true}\n    items: [bogus]\n",
         6, "one of packages"),
        ("devices:\n  - name: r1\n    host: h\n", 2, "expected username, credential"),
        ("devices:\n  - name: r1\n    host: h\n    username: u\n    credential: {agent: true}\n"
         "  - name: r1\n    host: h\n    username: u\n    credential: {agent: true}\n", 6, "unique device names"),
        ("devices:\n  - name: r1\n    host: h\n    username: u\n    credential: {agent: true}\n    groups: [nope]\n",
         2, "expected a group defined"),
        ("devices:\n  - name: r1\n    host: [unclosed\n", 4, "not valid YAML"),
        ("devices:\n  - name: r1\n    host: h\n    username: u\n    credential: {agent: true}\n    host_key: nonsense\n",
         6, "known_hosts line"),
        ("devices:\n  - name: ../etc\n", 2, "devices[0].name"),
        ("", 1, "empty file"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, body: str, line: int, expected: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert expected in message
    if body:
        assert f"{path}:{line}" in message


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="not found; pass --inventory"):
        load_inventory(tmp_path / "nope.yaml")


def test_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = emulator_style(tmp_path)
    (tmp_path / "xr-0001.password").chmod(0o644)
    device = load_inventory(path).devices[0]
    with pytest.raises(InventoryError, match="chmod 600"):
        device.credential.password()


def test_loaded_credentials_read_the_password_once_for_a_poll(tmp_path: Path) -> None:
    path = emulator_style(tmp_path)
    secret = tmp_path / "xr-0001.password"
    device = load_inventory(path).devices[0]
    loaded = device.with_credentials_loaded()
    secret.write_text("pw-Rotated-9z\n")  # a change applies from the next poll, not within one
    assert loaded.credential.password() == "pw-Secret-7q"
    assert device.credential.password() == "pw-Rotated-9z"
    assert device.with_credentials_loaded().credential.password() == "pw-Rotated-9z"
    secret.unlink()  # the poll in progress keeps what it read; the next one fails on the file
    assert loaded.credential.password() == "pw-Secret-7q"
    with pytest.raises(InventoryError, match="cannot read password file"):
        device.with_credentials_loaded()
    # The value read never shows, and a loaded credential still equals its reference.
    assert "pw-Secret" not in repr(loaded) and loaded.credential == device.credential


def test_loaded_credentials_are_checked_before_use(tmp_path: Path) -> None:
    path = emulator_style(tmp_path)
    secret = tmp_path / "xr-0001.password"
    device = load_inventory(path).devices[0]
    secret.chmod(0o640)
    with pytest.raises(InventoryError, match="found mode 0640; run `chmod 600"):
        device.with_credentials_loaded()
    secret.chmod(0o600)
    secret.write_bytes(b"pw-\xff\r\n")
    with pytest.raises(InventoryError, match="found bytes that are not UTF-8") as caught:
        device.with_credentials_loaded()
    assert "\\xff" not in str(caught.value)
    secret.write_bytes(b"pw-Crlf-3\r\n")  # a Windows line end is not part of the password
    assert device.with_credentials_loaded().credential.password() == "pw-Crlf-3"


def test_password_env_unset_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_PW", raising=False)
    path = write(tmp_path, "devices:\n  - {name: r1, host: h, username: u, credential: {password_env: NO_SUCH_PW}}\n")
    device = load_inventory(path).devices[0]
    with pytest.raises(InventoryError, match="NO_SUCH_PW"):
        device.credential.password()
    monkeypatch.setenv("NO_SUCH_PW", "s3cret")
    assert device.credential.password() == "s3cret"


def test_host_key_line_without_host_part() -> None:
    key = HostKey.parse(f"{KEY.get_name()} {KEY.get_base64()}")
    assert key.fingerprint.startswith("SHA256:")
    with pytest.raises(ValueError):
        HostKey.parse("ssh-ed25519 AAAAnotakey")


def test_select_unknown_device_is_an_error(tmp_path: Path) -> None:
    inventory = load_inventory(emulator_style(tmp_path))
    with pytest.raises(InventoryError, match="unknown xr-9999"):
        inventory.select(names=["xr-9999"])
    assert os.path.basename(str(inventory.path)) == "inventory.yaml"
