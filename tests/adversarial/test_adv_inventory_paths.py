"""Adversarial tests of the inventory: credential paths relative to the
inventory file's folder (also under jump_host), `~` expanded, absolute paths unchanged;
unknown --group refused; plainer schema messages "file:line: field: expected ..., found ..."."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.errors import InventoryError
from collector.inventory import load_inventory
from dossier_cli.main import cli
from verifier import TrustStore

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def secret(path: Path, value: str = "s3cret") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def one_device(credential: str, extra: str = "") -> str:
    return ("devices:\n  - name: r1\n    host: 127.0.0.1\n    username: u\n"
            f"    credential: {credential}\n{extra}")


# --- credential paths ------------------------------------------------------------------------


def test_relative_paths_resolve_beside_the_inventory_from_any_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "etc" / "dossier"
    secret(conf / "secrets" / "r1.pw", "device-pw")
    secret(conf / "secrets" / "jump.pw", "jump-pw")
    inventory = write(conf / "fleet.yaml", f"""\
defaults:
  jump_host:
    host: 10.0.0.9
    username: j
    credential: {{password_file: secrets/jump.pw}}
    host_key: "{HOST_KEY}"
devices:
  - name: r1
    host: 127.0.0.1
    username: u
    credential: {{password_file: ./secrets/r1.pw}}
  - name: r2
    host: 127.0.0.1
    username: u
    credential: {{key_file: keys/../keys/id, passphrase_env: PP}}
""")
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # cron starts in $HOME
    r1, r2 = load_inventory(inventory).devices
    assert r1.credential.password() == "device-pw"
    assert r1.jump_host is not None and r1.jump_host.credential.password() == "jump-pw"
    assert Path(r2.credential.reference or "").parent.parent == conf / "keys" / ".."
    assert Path(r2.credential.reference or "").is_absolute()
    assert r2.credential.passphrase_env == "PP"
    # the same file through a symlinked folder name: relative to the name it was loaded by
    (tmp_path / "link").symlink_to(conf)
    assert load_inventory(tmp_path / "link" / "fleet.yaml").devices[0].credential.reference == \
        str(tmp_path / "link" / "secrets" / "r1.pw")


def test_a_relative_inventory_path_works_from_its_working_folder(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    secret(tmp_path / "conf" / "pw", "from-conf")
    write(tmp_path / "conf" / "inv.yaml", one_device("{password_file: pw}"))
    monkeypatch.chdir(tmp_path)
    device = load_inventory("conf/inv.yaml").devices[0]
    assert device.credential.password() == "from-conf"


def test_tilde_is_expanded_and_absolute_paths_are_kept_as_written(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    secret(home / ".dossier" / "pw", "home-pw")
    monkeypatch.setenv("HOME", str(home))
    inventory = write(tmp_path / "conf" / "inv.yaml", f"""\
devices:
  - name: r1
    host: 127.0.0.1
    username: u
    credential: {{password_file: ~/.dossier/pw}}
  - name: r2
    host: 127.0.0.1
    username: u
    credential: {{password_file: {tmp_path}/conf/../abs/./pw}}
  - name: r3
    host: 127.0.0.1
    username: u
    credential: {{key_file: "sub/~notexpanded"}}
  - name: r4
    host: 127.0.0.1
    username: u
    credential: {{password_env: PW}}
  - name: r5
    host: 127.0.0.1
    username: u
    credential: {{agent: true}}
""")
    secret(tmp_path / "abs" / "pw", "abs-pw")
    r1, r2, r3, r4, r5 = load_inventory(inventory).devices
    assert r1.credential.reference == str(home / ".dossier" / "pw") and r1.credential.password() == "home-pw"
    assert r2.credential.reference == f"{tmp_path}/conf/../abs/pw"  # pathlib drops "./" only
    assert r2.credential.password() == "abs-pw"
    assert r3.credential.reference == str(tmp_path / "conf" / "sub" / "~notexpanded")  # ~ only leads
    assert (r4.credential.kind, r4.credential.reference) == ("password_env", "PW")
    assert (r5.credential.kind, r5.credential.reference) == ("agent", None)


def test_a_missing_relative_file_is_named_by_its_resolved_path(tmp_path: Path) -> None:
    inventory = write(tmp_path / "conf" / "inv.yaml", one_device("{password_file: nothere}"))
    device = load_inventory(inventory).devices[0]
    with pytest.raises(InventoryError) as caught:
        device.credential.password()
    assert f"{inventory}:2: credential: cannot read password file {tmp_path / 'conf' / 'nothere'}" in str(caught.value)


def test_tilde_of_an_unknown_user_fails_its_device_with_an_inventory_error(tmp_path: Path) -> None:
    """Like any credential that cannot be read: the inventory loads (other problems are still
    all listed), that device fails with the file, line and user named, the run exits 2."""
    inventory = write(tmp_path / "inv.yaml", one_device("{password_file: ~no_such_user_adv4/pw}"))
    device = load_inventory(inventory).devices[0]
    with pytest.raises(InventoryError) as caught:
        device.credential.password()
    assert f"{inventory}:2: credential: expected a path whose ~user exists on this machine, found " \
           "'~no_such_user_adv4/pw'" in str(caught.value)
    TrustStore.open(tmp_path / "t", create=True)
    result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "s"),
                                      "--trust-store", str(tmp_path / "t"), "--json"])
    assert result.exit_code == 2, repr(result.exception)
    outcome = json.loads(result.stdout)["devices"][0]
    assert outcome["reason"] == "inventory.invalid" and "no_such_user_adv4" in outcome["message"]
    both = write(tmp_path / "both.yaml", one_device("{password_file: ~no_such_user_adv4/pw}",
                                                    "    groups: [nosuchgroup]\n"))
    with pytest.raises(InventoryError, match="nosuchgroup"):  # not hidden by the ~user
        load_inventory(both)


# --- --group -------------------------------------------------------------------------------


GROUPED = f"""\
groups:
  core: {{username: u}}
  edge: {{username: u}}
  unused: {{username: u}}
devices:
  - name: r1
    host: 127.0.0.1
    groups: [core]
    credential: {{password_env: PW}}
  - name: r2
    host: 127.0.0.1
    groups: [edge, core]
    credential: {{password_env: PW}}
  - name: r3
    host: 127.0.0.1
    username: u
    credential: {{password_env: PW}}
"""


def test_group_selection_and_refusal(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path / "inv.yaml", GROUPED))
    assert [d.name for d in inventory.select(groups=["core"])] == ["r1", "r2"]
    assert [d.name for d in inventory.select(["r3"], ["edge"])] == ["r2", "r3"]
    with pytest.raises(InventoryError) as caught:
        inventory.select(groups=["core", "cor", "Edge"])
    message = str(caught.value)
    assert "found unknown Edge, cor;" in message and "groups in use: core, edge" in message
    # Defined under `groups:` but no device is in it: refused as well (nothing would be polled).
    with pytest.raises(InventoryError, match="found unknown unused"):
        inventory.select(groups=["unused"])
    # An unknown group is reported even when the device names are wrong too.
    with pytest.raises(InventoryError, match="group"):
        inventory.select(["nosuch"], ["nosuch"])


def test_no_groups_at_all_says_none(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path / "inv.yaml", one_device("{password_env: PW}")))
    with pytest.raises(InventoryError, match="groups in use: none"):
        inventory.select(groups=["x"])


def test_unknown_group_via_cli_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    inventory = write(tmp_path / "inv.yaml", GROUPED)
    for command in (["collect", "--store", str(tmp_path / "s")], ["enroll", "--trust-on-first-use"]):
        result = CliRunner().invoke(cli, [*command, "-i", str(inventory), "--trust-store", str(tmp_path / "t"),
                                          "-g", "nosuch"])
        assert result.exit_code == 2, (command, result.output, result.exception)
        assert "found unknown nosuch" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.yaml"]


# --- schema messages -------------------------------------------------------------------------


@pytest.mark.parametrize(("snippet", "line", "field", "expected", "found"), [
    ("    port: 0\n", 6, "devices[0].port", "a number >= 1", "0"),
    ("    port: 65536\n", 6, "devices[0].port", "a number <= 65535", "65536"),
    ("    timeouts: {connect: 0}\n", 6, "devices[0].timeouts.connect", "a number > 0", "0"),
    ("    timeouts:\n      command: 86401\n", 7, "devices[0].timeouts.command", "a number <= 86400", "86401"),
    ("    items: []\n", 6, "devices[0].items", "at least 1 item(s)", "[]"),
    ("    items: [packages, packages]\n", 6, "devices[0].items", "no repeated items",
     "['packages', 'packages']"),
    ("    platform: junos\n", 6, "devices[0].platform", "one of iosxr, iosxe", "'junos'"),
    ("    port: '22'\n", 6, "devices[0].port", "a value of type integer", "'22'"),
])
def test_bounds_are_explained_plainly_with_file_line_and_field(tmp_path: Path, snippet: str, line: int,
                                                                field: str, expected: str, found: str) -> None:
    inventory = write(tmp_path / "inv.yaml", one_device("{password_env: PW}", snippet))
    with pytest.raises(InventoryError) as caught:
        load_inventory(inventory)
    assert f"{inventory}:{line}: {field}: expected {expected}, found {found}" in str(caught.value)


def test_empty_strings_and_empty_fleet_are_explained(tmp_path: Path) -> None:
    inventory = write(tmp_path / "inv.yaml", "devices:\n  - name: r1\n    host: ''\n    username: ''\n"
                      "    credential: {password_env: PW}\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(inventory)
    assert f"{inventory}:3: devices[0].host: expected text of at least 1 character(s), found ''" in str(caught.value)
    assert f"{inventory}:4: devices[0].username: expected text of at least 1 character(s), found ''" in str(caught.value)
    write(inventory, "devices: []\n")
    with pytest.raises(InventoryError, match=r"inv.yaml:1: devices: expected at least 1 item\(s\), found \[\]"):
        load_inventory(inventory)


@pytest.mark.parametrize(("credential", "field"), [
    ("{password_file: ''}", "password_file"),
    ("{key_file: ''}", "key_file"),
    ("{password_env: 1BAD}", "password_env"),
    ("{agent: false}", "agent"),
])
def test_a_bad_value_inside_a_credential_is_not_called_an_unexpected_field(tmp_path: Path, credential: str,
                                                                           field: str) -> None:
    inventory = write(tmp_path / "inv.yaml", one_device(credential))
    with pytest.raises(InventoryError) as caught:
        load_inventory(inventory)
    message = str(caught.value)
    assert f"{inventory}:5: devices[0].credential" in message
    assert f"unexpected field(s) {field}" not in message, message


def test_the_reserved_device_name_state_is_explained_plainly(tmp_path: Path) -> None:
    inventory = write(tmp_path / "inv.yaml", "devices:\n  - name: state\n    host: h\n    username: u\n"
                      "    credential: {password_env: PW}\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(inventory)
    message = str(caught.value)
    assert f"{inventory}:2: devices[0].name: expected " in message
    assert "should not be valid under" not in message, message
