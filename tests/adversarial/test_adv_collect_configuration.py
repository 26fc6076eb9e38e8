"""Adversarial tests of `dossier collect`'s and `dossier enroll`'s configuration checks:
the trust store is checked before polling (missing: refused and not created;
damaged: refused), --metrics-file's folder and the --syslog socket likewise; a device whose
credential cannot be read fails alone (the run exits 2); enroll checks --expect-fingerprint
before connecting and names the device in each error line; the emulator's --inventory-out
loads from any folder. Real SSH over loopback (collector_fakes), real keys, real files."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import paramiko
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from collector.enroll import enroll_root, fetch_root
from collector.inventory import load_inventory
from fleet_setup import enroll_all
from collector_fakes import DevicePki, FakeDevice, FakeFleet, dossier_handler, make_pki
from dossier_cli.main import cli


@pytest.fixture(scope="module")
def pki() -> DevicePki:
    return make_pki("adv4")


class Setup:
    """Fakes r1..rN with an inventory, an enrolled trust store and a store path (not created)."""

    def __init__(self, tmp_path: Path, fleet: FakeFleet, fakes: list[FakeDevice], enroll: bool = True) -> None:
        self.tmp, self.fakes = tmp_path, fakes
        self.inventory = fleet.write_inventory(tmp_path / "inventory.yaml", password_dir=tmp_path / "pw")
        self.store, self.trust = tmp_path / "store", tmp_path / "trust"
        if enroll:
            enroll_all(self.inventory, self.trust)
        self.before = self.commands()

    def commands(self) -> list[int]:
        return [len(fake.commands) for fake in self.fakes]

    def polled(self) -> list[str]:
        return [fake.name for fake, n in zip(self.fakes, self.before) if len(fake.commands) > n]

    def collect(self, *extra: str, trust: Path | None = None):
        return CliRunner().invoke(cli, ["collect", "-i", str(self.inventory), "--store", str(self.store),
                                        "--trust-store", str(trust or self.trust), *extra])

    def replace_credential(self, name: str, credential: str) -> None:
        old = f"{{password_file: {self.tmp / 'pw' / f'{name}.password'}}}"
        text = self.inventory.read_text()
        assert old in text
        self.inventory.write_text(text.replace(old, credential))

    def device_file(self, name: str) -> Path:
        return self.trust / "devices" / f"{name}.json"

    def edit_record(self, name: str, change) -> None:
        record = json.loads(self.device_file(name).read_text())
        change(record)
        self.device_file(name).write_text(json.dumps(record))


def fakes_for(pki: DevicePki, count: int = 2) -> list[FakeDevice]:
    return [FakeDevice(f"r{i}", dossier_handler(pki)) for i in range(1, count + 1)]


def tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


# --- the trust store, before polling ----------------------------------------------------------


@pytest.mark.parametrize("shape", ["regular-file", "empty-folder", "wrong-format", "wrong-version",
                                   "no-devices-folder", "marker-not-json"])
def test_a_trust_store_that_is_not_one_is_refused_and_left_alone(tmp_path: Path, pki: DevicePki,
                                                                  shape: str) -> None:
    fakes = fakes_for(pki)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes, enroll=shape in ("wrong-format", "wrong-version",
                                                                "no-devices-folder", "marker-not-json"))
        trust = setup.trust
        if shape == "regular-file":
            trust.write_text("not a folder\n")
        elif shape == "empty-folder":
            trust.mkdir()
        elif shape == "wrong-format":
            (trust / "truststore.json").write_text('{"format": "other", "version": 1}')
        elif shape == "wrong-version":
            (trust / "truststore.json").write_text('{"format": "trust-dossier-truststore", "version": 2}')
        elif shape == "no-devices-folder":
            for file in (trust / "devices").iterdir():
                file.unlink()
            (trust / "devices").rmdir()
        else:
            (trust / "truststore.json").write_text("{")
        before = trust.read_bytes() if trust.is_file() else tree(trust)
        result = setup.collect()
        assert result.exit_code == 2, (result.output, result.exception)
        assert str(trust) in result.stderr
        assert setup.polled() == []
    assert (trust.read_bytes() if trust.is_file() else tree(trust)) == before  # nothing created or changed
    assert not setup.store.exists()


@pytest.mark.parametrize("damage", ["pool-not-json", "pool-schema", "pool-sha256", "record-names-other-device",
                                    "record-schema", "pinned-leaf-sha256", "record-is-a-folder"])
def test_damage_anywhere_the_run_would_read_is_refused_before_polling(tmp_path: Path, pki: DevicePki,
                                                                       damage: str) -> None:
    fakes = fakes_for(pki)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        root = json.loads(setup.device_file("r1").read_text())["roots"][0]
        pool = setup.trust / "pool.json"
        bad_sha = ("0" if root["sha256"][0] != "0" else "1") + root["sha256"][1:]
        if damage == "pool-not-json":
            pool.write_text('{"certificates": [')
        elif damage == "pool-schema":
            pool.write_text('{"certificates": [{"sha256": "x"}]}')
        elif damage == "pool-sha256":
            pool.write_text(json.dumps({"certificates": [{**root, "sha256": bad_sha}]}))
        elif damage == "record-names-other-device":
            setup.edit_record("r2", lambda r: r.update(device="r1"))
        elif damage == "record-schema":
            setup.edit_record("r2", lambda r: r.update(trust_pool="yes"))
        elif damage == "pinned-leaf-sha256":
            setup.edit_record("r2", lambda r: r.update(pinned_leaf={"sha256": bad_sha, "subject": "x",
                                                                     "pem": root["pem"]}))
        else:
            setup.device_file("r2").unlink()
            setup.device_file("r2").mkdir()
        before = tree(setup.trust)
        result = setup.collect()
        assert result.exit_code == 2, (result.output, result.exception)
        assert "error:" in result.stderr and str(setup.trust) in result.stderr
        assert setup.polled() == []
    assert tree(setup.trust) == before and not setup.store.exists()


def test_the_default_trust_store_missing_in_the_working_folder_creates_no_state(
        tmp_path: Path, pki: DevicePki, monkeypatch: pytest.MonkeyPatch) -> None:
    """cron in $HOME, no --store/--trust-store: the defaults state/store and state/truststore
    are relative; a missing trust store is refused and neither folder is created."""
    fakes = fakes_for(pki, 1)
    monkeypatch.delenv("DOSSIER_TRUST_STORE", raising=False)
    monkeypatch.delenv("DOSSIER_STORE", raising=False)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes, enroll=False)
        home = tmp_path / "home"
        home.mkdir()
        monkeypatch.chdir(home)
        result = CliRunner().invoke(cli, ["collect", "-i", str(setup.inventory)])
        assert result.exit_code == 2, (result.output, result.exception)
        assert "expected a trust store at state/truststore, found none" in result.stderr
        assert setup.polled() == []
    assert list(home.iterdir()) == []


def test_damage_to_a_device_not_selected_does_not_stop_the_others(tmp_path: Path, pki: DevicePki) -> None:
    fakes = fakes_for(pki)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        setup.device_file("r2").write_text("{")
        result = setup.collect("--device", "r1", "--json")
        assert result.exit_code == 0, (result.output, result.exception)
        assert [d["status"] for d in json.loads(result.stdout)["devices"]] == ["trusted"]
        assert setup.polled() == ["r1"]


def test_a_device_not_enrolled_is_polled_and_untrusted_not_a_configuration_error(tmp_path: Path,
                                                                                 pki: DevicePki) -> None:
    fakes = fakes_for(pki)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        setup.device_file("r2").unlink()
        result = setup.collect("--json")
        assert result.exit_code == 1, (result.output, result.exception)
        statuses = {d["device"]: d["status"] for d in json.loads(result.stdout)["devices"]}
        assert statuses == {"r1": "trusted", "r2": "untrusted"}


@pytest.mark.parametrize("damage", [{"enrolled_at": "yesterday"}, {"valid_from": "2020-01-01T00:00:00"}],
                         ids=["a damaged enrolled_at", "a window without time zone"])
def test_a_root_with_a_damaged_time_is_refused_before_polling(tmp_path: Path, pki: DevicePki,
                                                             damage: dict[str, str]) -> None:
    fakes = fakes_for(pki)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        setup.edit_record("r2", lambda r: r["roots"][0].update(damage))
        result = setup.collect()
        assert result.exit_code == 2, repr(result.exception)
        assert setup.polled() == []


# --- --metrics-file and --syslog ----------------------------------------------------------------


def test_metrics_and_syslog_targets_that_cannot_work_are_refused_before_polling(tmp_path: Path,
                                                                               pki: DevicePki) -> None:
    fakes = fakes_for(pki)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        (tmp_path / "plain").write_text("x")
        (tmp_path / "adir").mkdir()
        cases = [
            (["--metrics-file", str(tmp_path / "plain" / "m.prom")], "--metrics-file"),  # folder is a file
            (["--metrics-file", str(tmp_path / "adir")], "--metrics-file"),  # a folder, not a file
            (["--syslog", str(tmp_path / "adir")], "not a socket"),
            (["--syslog", "/dev/null"], "not a socket"),
            (["--syslog", "dev/log"], "HOST:PORT"),  # relative: not taken for a path
        ]
        for extra, expected in cases:
            result = setup.collect(*extra)
            assert result.exit_code == 2, (extra, result.output, result.exception)
            assert expected in result.stderr, (extra, result.stderr)
            assert "Traceback" not in result.output
        assert setup.polled() == []
    assert not setup.store.exists() and (tmp_path / "plain").read_text() == "x"


def test_a_syslog_socket_nobody_listens_on_warns_once_and_collects(tmp_path: Path, pki: DevicePki) -> None:
    """A daemon that is down (restarting, a container's leftover /dev/log) must not stop the
    collection: one warning at start and one per outage, never a traceback per alert."""
    from collector_fakes import stale_nonce_handler

    fakes = fakes_for(pki, 2)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        fakes[0].handler = fakes[1].handler = stale_nonce_handler(pki)  # untrusted: alerts are sent
        stale = tmp_path / "stale.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(stale))
        sock.close()  # the socket file stays, nobody listens
        result = setup.collect("--syslog", str(stale))
        assert "Logging error" not in result.stderr and "Traceback" not in result.stderr
        assert result.exit_code == 1, (result.output, result.exception)  # untrusted, not a config error
        assert sorted(setup.polled()) == ["r1", "r2"]
        assert result.stderr.count(f"warning: no syslog daemon listens at {stale}") == 1
        assert result.stderr.count("warning: syslog send failed") == 1


def test_a_listening_syslog_socket_and_a_relative_metrics_file_work(tmp_path: Path, pki: DevicePki,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = fakes_for(pki, 1)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        listening = tmp_path / "log.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(listening))
        try:
            monkeypatch.chdir(tmp_path)
            result = setup.collect("--syslog", str(listening), "--metrics-file", "m.prom")
        finally:
            sock.close()
        assert result.exit_code == 0, (result.output, result.exception)
    assert "dossier_" in (tmp_path / "m.prom").read_text()


# --- one device's credential ------------------------------------------------------------------


def _key_file(path: Path, passphrase: bytes | None) -> paramiko.PKey:
    key = ed25519.Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption))
    path.chmod(0o600)
    return paramiko.PKey.from_path(path, password=passphrase)


@pytest.mark.parametrize("problem", ["missing-relative-file", "unset-passphrase-env", "key-file-not-a-key",
                                     "password-file-group-readable", "password-file-is-a-folder"])
def test_an_unreadable_credential_fails_its_device_alone_and_exits_2(tmp_path: Path, pki: DevicePki,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     problem: str) -> None:
    fakes = fakes_for(pki, 3)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        monkeypatch.delenv("ADV4_UNSET", raising=False)
        if problem == "missing-relative-file":
            setup.replace_credential("r2", "{password_file: secrets/r2.pw}")
            expected = str(tmp_path / "secrets" / "r2.pw")  # resolved beside the inventory
        elif problem == "unset-passphrase-env":
            _key_file(tmp_path / "keys" / "id", b"pp")
            setup.replace_credential("r2", "{key_file: keys/id, passphrase_env: ADV4_UNSET}")
            expected = "ADV4_UNSET"
        elif problem == "key-file-not-a-key":
            (tmp_path / "keys").mkdir()
            (tmp_path / "keys" / "id").write_text("ssh-ed25519 AAAA... a public key, not a private one\n")
            setup.replace_credential("r2", "{key_file: keys/id}")
            expected = str(tmp_path / "keys" / "id")
        elif problem == "password-file-group-readable":
            (tmp_path / "pw" / "r2.password").chmod(0o640)
            expected = "chmod 600"
        else:
            (tmp_path / "pwdir").mkdir(mode=0o700)
            setup.replace_credential("r2", "{password_file: pwdir}")
            expected = str(tmp_path / "pwdir")
        monkeypatch.chdir(tmp_path / "pw")  # any working folder
        result = setup.collect("--json")
        assert result.exit_code == 2, (result.output, result.exception)
        outcomes = {d["device"]: d for d in json.loads(result.stdout)["devices"]}
        assert {n: o["status"] for n, o in outcomes.items()} == {"r1": "trusted", "r2": "failed", "r3": "trusted"}
        assert outcomes["r2"]["reason"].startswith("inventory.")
        assert expected in outcomes["r2"]["message"]
        assert setup.polled() == ["r1", "r3"]
        assert len(list(setup.store.rglob("*.envelope"))) == 2


# The fake bastion's forwarding thread may end on EOFError (collector_fakes._pump): noise only.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_jump_hosts_relative_credential_resolves_beside_the_inventory(tmp_path: Path, pki: DevicePki,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    jump = FakeDevice("bastion", dossier_handler(pki), password="jump-secret", jump=True)
    target = FakeDevice("r1", dossier_handler(pki))
    with FakeFleet([jump, target]) as fleet:
        fleet.write_inventory(tmp_path / "all.yaml", password_dir=tmp_path / "conf" / "pw")
        inventory = tmp_path / "conf" / "inventory.yaml"
        inventory.write_text(f"""\
defaults:
  jump_host:
    host: 127.0.0.1
    port: {jump.port}
    username: admin
    credential: {{password_file: pw/bastion.password}}
    host_key: "{jump.host_key_line()}"
devices:
  - name: r1
    host: 127.0.0.1
    port: {target.port}
    username: admin
    credential: {{password_file: pw/r1.password}}
    host_key: "{target.host_key_line()}"
""")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        enroll_root(tmp_path / "trust", fetch_root(load_inventory(inventory).devices[0]), source="tofu")
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "s"),
                                          "--trust-store", str(tmp_path / "trust"), "--json"])
        assert result.exit_code == 0, (result.output, result.exception)
        (tmp_path / "conf" / "pw" / "bastion.password").unlink()
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "s"),
                                          "--trust-store", str(tmp_path / "trust"), "--json"])
    assert result.exit_code == 2, (result.output, result.exception)
    outcome = json.loads(result.stdout)["devices"][0]
    assert outcome["reason"] == "inventory.invalid"
    assert str(tmp_path / "conf" / "pw" / "bastion.password") in outcome["message"]


def test_an_encrypted_key_without_passphrase_env_fails_its_device_alone(tmp_path: Path, pki: DevicePki) -> None:
    fakes = fakes_for(pki)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        fakes[1].authorized_keys = [_key_file(tmp_path / "keys" / "id", b"pp")]
        setup.replace_credential("r2", "{key_file: keys/id}")
        result = setup.collect("--json")
    assert result.exit_code == 2, repr(result.exception)
    outcomes = {d["device"]: d for d in json.loads(result.stdout)["devices"]}
    assert outcomes["r1"]["status"] == "trusted" and outcomes["r2"]["reason"].startswith("inventory.")


def test_a_passphrase_for_an_unencrypted_key_fails_its_device_alone(tmp_path: Path, pki: DevicePki,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = fakes_for(pki)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        fakes[1].authorized_keys = [_key_file(tmp_path / "keys" / "id", None)]
        monkeypatch.setenv("ADV4_PASSPHRASE", "unneeded")
        setup.replace_credential("r2", "{key_file: keys/id, passphrase_env: ADV4_PASSPHRASE}")
        result = setup.collect("--json")
    assert result.exit_code in (0, 2), repr(result.exception)
    outcomes = {d["device"]: d for d in json.loads(result.stdout)["devices"]}
    assert outcomes["r1"]["status"] == "trusted"


def test_a_password_file_that_is_not_utf8_fails_its_device_alone(tmp_path: Path, pki: DevicePki) -> None:
    fakes = fakes_for(pki)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes)
        (tmp_path / "pw" / "r2.password").write_bytes(b"\xff\xfe latin-1 secret\n")
        result = setup.collect("--json")
    assert result.exit_code == 2, repr(result.exception)
    outcomes = {d["device"]: d for d in json.loads(result.stdout)["devices"]}
    assert outcomes["r1"]["status"] == "trusted" and outcomes["r2"]["reason"].startswith("inventory.")


# --- enroll ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fingerprint", [
    "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",  # OpenSSH's base64 form
    "ab" * 31 + "a",  # 63 hex digits
    "zz" * 32,
    "   ",
    "ab" * 32 + "!",
])
def test_enroll_refuses_a_malformed_fingerprint_before_connecting(tmp_path: Path, pki: DevicePki,
                                                                  fingerprint: str) -> None:
    fakes = fakes_for(pki, 1)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes, enroll=False)
        result = CliRunner().invoke(cli, ["enroll", "-i", str(setup.inventory), "--trust-store", str(setup.trust),
                                          "--device", "r1", "--provision", "--expect-fingerprint", fingerprint])
        assert result.exit_code == 2, (result.output, result.exception)
        assert "--expect-fingerprint" in result.stderr and "fingerprint, found" in result.stderr
        assert setup.polled() == []
    assert not setup.trust.exists()


def test_enroll_accepts_colon_and_case_variants_of_the_right_fingerprint(tmp_path: Path, pki: DevicePki) -> None:
    from cryptography.hazmat.primitives import hashes

    sha1 = pki.root.fingerprint(hashes.SHA1()).hex().upper()
    fakes = fakes_for(pki, 1)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes, enroll=False)
        colons = "SHA1:" + ":".join(sha1[i:i + 2] for i in range(0, 40, 2))
        result = CliRunner().invoke(cli, ["enroll", "-i", str(setup.inventory), "--trust-store", str(setup.trust),
                                          "--device", "r1", "--expect-fingerprint", colons])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "r1: enrolled (fingerprint" in result.stdout


def test_enroll_error_lines_name_each_device_once(tmp_path: Path, pki: DevicePki) -> None:
    """A device that refuses sessions and one with a wrong password: each error line starts with
    its device's name, once (messages that already start with it are not prefixed twice)."""
    fakes = fakes_for(pki, 3)
    fakes[1].refuse_sessions = True
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes, enroll=False)
        (tmp_path / "pw" / "r3.password").write_text("wrong\n")
        result = CliRunner().invoke(cli, ["enroll", "-i", str(setup.inventory), "--trust-store", str(setup.trust),
                                          "--trust-on-first-use", "-c", "3"])
    assert result.exit_code == 1, (result.output, result.exception)
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert [line.split(":")[1].strip() for line in errors] == ["r2", "r3"], errors
    assert not any(line.startswith(("error: r2: r2:", "error: r3: r3:")) for line in errors), errors
    assert "r1: enrolled" in result.stdout


def test_enroll_names_the_device_whose_credential_cannot_be_read(tmp_path: Path, pki: DevicePki,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = fakes_for(pki, 3)
    monkeypatch.delenv("ADV4_UNSET", raising=False)
    with FakeFleet(fakes) as fleet:
        setup = Setup(tmp_path, fleet, fakes, enroll=False)
        setup.replace_credential("r2", "{password_env: ADV4_UNSET}")
        result = CliRunner().invoke(cli, ["enroll", "-i", str(setup.inventory), "--trust-store", str(setup.trust),
                                          "--trust-on-first-use", "-c", "1"])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and all("r2" in line for line in errors), errors


# --- the emulator's inventory -----------------------------------------------------------------


def test_emulator_inventory_from_a_relative_state_dir_collects_from_another_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fleet runs with a relative --state-dir in one folder; `dossier enroll` and `dossier
    collect` run in another folder (their own processes) with the inventory it wrote."""
    import subprocess
    import sys

    import yaml

    from emulator.fleet import Fleet

    root = Path(__file__).resolve().parents[2]
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(work)  # the emulator resolves its relative state dir here, for its lifetime
    with Fleet(state_dir=Path("emu/../emu/state"), devices=2, provisioned=True, files=5) as fleet:
        fleet.write_inventory(Path("fleet.yaml"))
        references = [d["credential"]["password_file"]
                      for d in yaml.safe_load((work / "fleet.yaml").read_text())["devices"]]
        assert all(os.path.isabs(r) and os.path.exists(r) for r in references), references
        env = {**os.environ, "PYTHONPATH": str(root)}

        def dossier(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "dossier_cli", *args], cwd=elsewhere, env=env,
                                  capture_output=True, text=True, timeout=120)

        inventory = str(work / "fleet.yaml")
        enrolled = dossier("enroll", "-i", inventory, "--trust-store", "trust", "--trust-on-first-use")
        assert enrolled.returncode == 0, enrolled.stderr
        collected = dossier("collect", "-i", inventory, "--store", "store", "--trust-store", "trust", "--json")
        assert collected.returncode == 0, collected.stderr
        assert [d["status"] for d in json.loads(collected.stdout)["devices"]] == ["trusted", "trusted"]
    assert (elsewhere / "store").is_dir() and not (work / "store").exists()
