"""Configuration errors are exit code 2 with a message that says what was expected and found,
found before any device is polled (or, for one device's unreadable credential, after polling
the others), and nothing is created or changed on the way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from collector.errors import InventoryError
from collector.inventory import load_inventory
from fleet_setup import enroll_all
from collector_fakes import FakeDevice, FakeFleet, dossier_handler, reply
from dossier_cli.main import cli
from verifier import TrustStore

ROOT = Path(__file__).resolve().parents[2]


def _fleet(tmp_path: Path, pki, count: int = 2) -> tuple[list[FakeDevice], Path, Path, Path]:
    fakes = [FakeDevice(f"r{i}", dossier_handler(pki)) for i in range(1, count + 1)]
    return fakes, tmp_path / "inventory.yaml", tmp_path / "store", tmp_path / "truststore"


def _polled(fakes: list[FakeDevice]) -> list[str]:
    return [fake.name for fake in fakes if fake.commands]


def test_a_missing_trust_store_is_refused_and_not_created(tmp_path: Path, pki) -> None:
    fakes, inventory, store, trust = _fleet(tmp_path, pki)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(store),
                                          "--trust-store", str(tmp_path / "typo")])
    assert result.exit_code == 2, result.output
    assert f"expected a trust store at {tmp_path / 'typo'}, found none" in result.stderr
    assert "dossier enroll" in result.stderr
    assert not (tmp_path / "typo").exists() and _polled(fakes) == []


def test_a_damaged_trust_store_is_refused_before_polling(tmp_path: Path, pki) -> None:
    fakes, inventory, store, trust = _fleet(tmp_path, pki)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        enroll_all(inventory, trust)
        commands_before = [list(fake.commands) for fake in fakes]
        device_file = trust / "devices" / "r2.json"
        record = json.loads(device_file.read_text())
        recorded = record["roots"][0]["sha256"]
        record["roots"][0]["sha256"] = ("0" if recorded[0] != "0" else "1") + recorded[1:]
        device_file.write_text(json.dumps(record))  # an edit: the certificate no longer matches
        edited = device_file.read_bytes()
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(store),
                                          "--trust-store", str(trust)])
        assert result.exit_code == 2, result.output
        assert str(device_file) in result.stderr and "damaged" in result.stderr
        assert [list(fake.commands) for fake in fakes] == commands_before  # nothing polled
        assert device_file.read_bytes() == edited
        device_file.write_text("{")  # not JSON at all
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(store),
                                          "--trust-store", str(trust)])
        assert result.exit_code == 2 and "cannot be read as JSON" in result.stderr
        assert [list(fake.commands) for fake in fakes] == commands_before
    assert not list(store.rglob("*.envelope"))


def test_an_unknown_group_is_refused(tmp_path: Path, pki) -> None:
    fakes, inventory, store, trust = _fleet(tmp_path, pki)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        TrustStore.open(trust, create=True)
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(store),
                                          "--trust-store", str(trust), "-g", "nosuchgroup"])
    assert result.exit_code == 2
    assert "expected group names the inventory's devices belong to, found unknown nosuchgroup" in result.stderr
    assert _polled(fakes) == []


def test_metrics_file_and_syslog_socket_are_checked_before_polling(tmp_path: Path, pki) -> None:
    fakes, inventory, store, trust = _fleet(tmp_path, pki)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        TrustStore.open(trust, create=True)
        base = ["collect", "-i", str(inventory), "--store", str(store), "--trust-store", str(trust)]
        result = CliRunner().invoke(cli, base + ["--metrics-file", str(tmp_path / "nodir" / "m.prom")])
        assert result.exit_code == 2
        assert f"expected an existing folder for {tmp_path / 'nodir' / 'm.prom'}" in result.stderr
        result = CliRunner().invoke(cli, base + ["--syslog", str(tmp_path / "no.sock")])
        assert result.exit_code == 2
        assert f"expected a syslog socket at {tmp_path / 'no.sock'}, found none" in result.stderr
        (tmp_path / "plain").write_text("")
        result = CliRunner().invoke(cli, base + ["--syslog", str(tmp_path / "plain")])
        assert result.exit_code == 2 and "found a file that is not a socket" in result.stderr
    assert _polled(fakes) == []


def test_a_syslog_port_out_of_range_or_an_unknown_host_is_refused_before_polling(tmp_path: Path, pki) -> None:
    fakes, inventory, store, trust = _fleet(tmp_path, pki)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        TrustStore.open(trust, create=True)
        base = ["collect", "-i", str(inventory), "--store", str(store), "--trust-store", str(trust)]
        for address, expected in (("127.0.0.1:99999", "expected a syslog UDP port from 1 to 65535, found 99999"),
                                  ("127.0.0.1:0", "found 0"),
                                  ("no-such-host.invalid:514", "expected a syslog host name or address that "
                                                               "resolves, found 'no-such-host.invalid'")):
            result = CliRunner().invoke(cli, base + ["--syslog", address])
            assert result.exit_code == 2, (address, result.output)
            assert expected in result.stderr, (address, result.stderr)
    assert _polled(fakes) == []


def test_an_unreadable_credential_fails_its_device_and_the_run_exits_2(tmp_path: Path, pki,
                                                                       monkeypatch) -> None:
    fakes, inventory, store, trust = _fleet(tmp_path, pki)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        enroll_all(inventory, trust)
        monkeypatch.delenv("DOSSIER_TEST_UNSET", raising=False)
        text = inventory.read_text()
        r2_secret = f"{{password_file: {tmp_path / 'pw' / 'r2.password'}}}"
        inventory.write_text(text.replace(r2_secret, "{password_env: DOSSIER_TEST_UNSET}"))
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(store),
                                          "--trust-store", str(trust), "--json"])
    assert result.exit_code == 2, result.output
    outcomes = {d["device"]: d for d in json.loads(result.stdout)["devices"]}
    assert outcomes["r1"]["status"] == "trusted"  # the others are still polled
    assert outcomes["r2"]["reason"] == "inventory.invalid"
    assert "DOSSIER_TEST_UNSET" in outcomes["r2"]["message"]
    assert outcomes["r2"]["attempts"] == 0  # found before connecting, never retried


def test_relative_credential_paths_are_relative_to_the_inventory(tmp_path: Path, pki) -> None:
    fakes, inventory, store, trust = _fleet(tmp_path, pki, count=1)
    folder = tmp_path / "conf"
    folder.mkdir()
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(folder / "inventory.yaml", password_dir=folder / "secrets")
        text = (folder / "inventory.yaml").read_text().replace(str(folder / "secrets"), "secrets")
        (folder / "inventory.yaml").write_text(text)
        assert "password_file: secrets/r1.password" in text
        device = load_inventory(folder / "inventory.yaml").devices[0]
        assert device.credential.reference == str(folder / "secrets" / "r1.password")
        assert device.credential.password() == fakes[0].password  # whatever the working folder


def test_the_emulators_inventory_loads_from_any_folder(tmp_path: Path) -> None:
    """`emulator serve --state-dir REL --inventory-out REL` run in one folder, loaded from another
    (cron starts in $HOME): the credential paths it writes still resolve."""
    work = tmp_path / "work"
    (work / "emu").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dossier_cli", "emulator", "serve", "--devices", "1", "--state-dir",
         "emu/state", "--inventory-out", "emu/fleet.yaml", "--files", "5"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "ready":
                break
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        check = subprocess.run(
            [sys.executable, "-c", "from collector.inventory import load_inventory; "
             "d = load_inventory('../work/emu/fleet.yaml').devices[0]; print(bool(d.credential.password()))"],
            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr
        assert check.stdout.strip() == "True"
    finally:
        proc.terminate()
        proc.wait(30)


def test_enroll_checks_the_fingerprint_before_connecting(tmp_path: Path, pki) -> None:
    fakes, inventory, store, trust = _fleet(tmp_path, pki, count=1)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        result = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(trust),
                                          "--device", "r1", "--provision", "--expect-fingerprint", "0011"])
    assert result.exit_code == 2, result.output
    assert "expected a SHA-256 (64 hex digits) or SHA-1 (40 hex digits) fingerprint, found '0011'" in result.stderr
    assert _polled(fakes) == [] and not trust.exists()


def test_enroll_errors_name_the_device(tmp_path: Path, pki) -> None:
    """Several devices failing alike: each error line says which device it is about."""
    fakes, inventory, store, trust = _fleet(tmp_path, pki, count=3)
    unprovisioned = reply(b"% Signing failed: no system trustpoint is configured\n")
    fakes[1].handler = fakes[2].handler = unprovisioned
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        result = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(trust),
                                          "--trust-on-first-use"])
    assert result.exit_code == 1
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert [line.split(":")[1].strip() for line in errors] == ["r2", "r3"], errors
    assert all("found the device error '% Signing failed" in line for line in errors)


def test_inventory_bounds_are_explained_plainly(tmp_path: Path) -> None:
    bad = tmp_path / "inv.yaml"
    bad.write_text("devices:\n  - name: r1\n    host: 10.0.0.1\n    port: 70000\n    username: u\n"
                   "    credential: {password_env: X}\n    timeouts: {connect: -1}\n")
    result = CliRunner().invoke(cli, ["collect", "-i", str(bad), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert f"{bad}:4: devices[0].port: expected a number <= 65535, found 70000" in result.stderr
    assert "devices[0].timeouts.connect: expected a number >= 0, found -1" in result.stderr or \
        "devices[0].timeouts.connect: expected a number > 0, found -1" in result.stderr
    assert "is greater than the maximum" not in result.stderr


def test_an_extra_field_in_a_credential_is_named_in_its_own_form(tmp_path: Path) -> None:
    bad = tmp_path / "inv.yaml"
    bad.write_text("devices:\n  - name: r1\n    host: 10.0.0.1\n    username: u\n"
                   "    credential: {key_file: k, passphrase: x}\n")
    result = CliRunner().invoke(cli, ["collect", "-i", str(bad), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert ("credential: unexpected field(s) passphrase (did you mean passphrase_env?); expected one of: key_file, "
            "passphrase_env") in result.stderr


def test_a_password_file_that_is_not_utf8_is_reported_without_its_bytes(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes("pässwörd".encode("latin-1"))
    secret.chmod(0o600)
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(f"devices:\n  - name: r1\n    host: 10.0.0.1\n    username: u\n"
                         f"    credential: {{password_file: {secret}}}\n")
    device = load_inventory(inventory).devices[0]
    try:
        device.credential.password()
    except InventoryError as exc:
        message = str(exc)
    assert message.endswith(f"expected password file {secret} to hold UTF-8 text, found bytes that are not UTF-8")
    assert "0xe4" not in message and "offset" not in message  # nothing of the secret
