"""Collection end to end over loopback SSH against small real servers, verified for real."""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

import schemas
from collector.alerts import AlertSink, expiry_slot, render_metrics
from collector.collect import CollectOptions, Collector
from collector.enroll import enroll_root, fetch_root
from collector.inventory import load_inventory
from collector.lock import RunLock
from collector.store import Store
from fleet_setup import enroll_all
from collector_fakes import (FakeDevice, FakeFleet, data_changed_handler, dossier_handler,
                             filesystem_handler, make_pki, stale_nonce_handler)
from dossier_cli.main import cli
from verifier import TrustStore


def setup(tmp_path: Path, fakes: list[FakeDevice]) -> tuple[Path, Path, Path]:
    inventory = tmp_path / "inventory.yaml"
    return inventory, tmp_path / "store", tmp_path / "truststore"


def test_mixed_fleet_each_device_gets_its_own_verdict(tmp_path: Path, pki) -> None:
    other = make_pki("other")
    fakes = [
        FakeDevice("good", dossier_handler(pki)),
        FakeDevice("stale", dossier_handler(pki)),
        FakeDevice("tampered", dossier_handler(pki)),
        FakeDevice("badpass", dossier_handler(pki), password="right"),
        FakeDevice("refusing", dossier_handler(pki)),
        FakeDevice("unenrolled", dossier_handler(other)),
    ]
    inventory, store_dir, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        devices = load_inventory(inventory).devices
        for device in devices[:5]:
            enroll_root(trust, fetch_root(device), source="tofu")
        # The faults start after enrollment, as on a real fleet.
        fakes[1].handler = stale_nonce_handler(pki)
        fakes[2].handler = data_changed_handler(pki)
        (tmp_path / "pw" / "badpass.password").write_text("wrong\n")
        fakes[4].refuse_sessions = True
        alerts = AlertSink()
        store = Store.open(store_dir)
        collector = Collector(store, trust_store_path=trust, alerts=alerts,
                              options=CollectOptions(concurrency=4, retries=2, backoff_base_s=0.05))
        summary = collector.run(devices)
    by_name = {o.device: o for o in summary.outcomes}
    assert by_name["good"].status == "trusted"
    assert (by_name["stale"].status, by_name["stale"].reason) == ("untrusted", "nonce.mismatch")
    assert by_name["tampered"].status == "untrusted" and by_name["tampered"].reason == "signature.invalid"
    assert (by_name["badpass"].status, by_name["badpass"].reason, by_name["badpass"].attempts) == (
        "failed", "ssh.auth_failed", 1)
    assert by_name["refusing"].status == "failed" and by_name["refusing"].attempts == 3
    assert by_name["unenrolled"].status == "untrusted" and by_name["unenrolled"].reason.startswith("trust.")
    assert summary.exit_code == 1
    # Untrusted envelopes are stored too (exactly what the device said), failures are not.
    assert {d.name for d in store_dir.iterdir() if d.is_dir() and d.name != "state"} == {
        "good", "stale", "tampered", "unenrolled"}
    texts = [a.message for a in alerts.sent]
    assert any("ENVELOPE_UNTRUSTED" in t and "Device= tampered" in t for t in texts)
    assert any("COLLECT_FAILED" in t and "Device= badpass" in t and "ssh.auth_failed" in t for t in texts)
    assert not any("Device= good" in t for t in texts)


def test_fresh_nonce_on_both_commands_and_metadata(tmp_path: Path, pki) -> None:
    fakes = [FakeDevice("r1", dossier_handler(pki)), FakeDevice("r2", dossier_handler(pki))]
    inventory, store_dir, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        enroll_all(inventory, trust)
        store = Store.open(store_dir)
        collector = Collector(store, trust_store_path=trust)
        first = collector.run(load_inventory(inventory).devices)
        second = collector.run(load_inventory(inventory).devices)
    assert first.exit_code == second.exit_code == 0
    sent = [c for fake in fakes for c in fake.commands[1:]]  # [0] was enrollment
    nonces = []
    for command in sent:
        found = re.findall(r"nonce ([0-9a-f]+)", command)
        assert len(found) == 2 and found[0] == found[1] and len(found[0]) == 32
        assert command.endswith("include-certificate")
        nonces.append(found[0])
    assert len(set(nonces)) == 4
    outcome = first.outcomes[0]
    envelope = store_dir / outcome.path
    meta = json.loads(envelope.with_name(envelope.name + ".meta.json").read_text())
    jsonschema.validate(meta, schemas.load("metadata"))
    assert meta["nonce"] == outcome.nonce and meta["device"] == "r1" and meta["host"] == "127.0.0.1"
    assert meta["bytes"] == len(envelope.read_bytes())
    assert meta["verdict"]["trusted"] is True  # the verdict at collection, in the metadata
    assert not envelope.with_name(envelope.name + ".verdict.json").exists()
    states = json.loads((store_dir / "state" / "_devices.json").read_text())
    jsonschema.validate(states, schemas.load("device-states"))
    assert states["devices"]["r1"]["last_status"] == "trusted"
    assert len(store.history("r1")) == 2


def test_filesystem_inventory_increments(tmp_path: Path, pki) -> None:
    newest = [2]
    fake = FakeDevice("fs", filesystem_handler(pki, newest))
    inventory, store_dir, trust = setup(tmp_path, [fake])
    with FakeFleet([fake]) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        text = inventory.read_text().replace("platform: iosxr", "platform: iosxr\n    items: [filesystem-inventory]")
        inventory.write_text(text)
        enroll_all(inventory, trust)
        collector = Collector(Store.open(store_dir), trust_store_path=trust)
        devices = load_inventory(inventory).devices
        assert collector.run(devices).exit_code == 0
        newest[0] = 4
        assert collector.run(devices).exit_code == 0
        assert collector.run(devices).exit_code == 0
    commands = fake.commands[1:]
    assert "filesystem-inventory-options" not in commands[0]
    assert """filesystem-inventory-options '{"0/RP0/CPU0":{"block_start":3}}'""" in commands[1]
    assert """{"block_start":5}""" in commands[2]


def test_cli_collect_json_metrics_and_exit_codes(tmp_path: Path, pki) -> None:
    fakes = [FakeDevice("r1", dossier_handler(pki)), FakeDevice("r2", dossier_handler(pki))]
    inventory, store_dir, trust = setup(tmp_path, fakes)
    syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    syslog.bind(("127.0.0.1", 0))
    syslog.settimeout(5)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        enroll_all(inventory, trust)
        metrics = tmp_path / "dossier.prom"
        args = ["collect", "-i", str(inventory), "--store", str(store_dir), "--trust-store", str(trust),
                "--json", "--metrics-file", str(metrics),
                "--syslog", f"127.0.0.1:{syslog.getsockname()[1]}"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["counts"]["trusted"] == 2
        text = metrics.read_text()
        assert 'dossier_last_verdict_trusted{device="r1"} 1' in text
        assert 'dossier_certificate_expiry_days{device="r2",certificate="leaf"}' in text
        fakes[1].handler = data_changed_handler(pki)
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1
        assert 'dossier_last_verdict_trusted{device="r2"} 0' in metrics.read_text()
        message = syslog.recv(4096).decode()
        assert "ENVELOPE_UNTRUSTED" in message and "Device= r2" in message
    status = CliRunner().invoke(cli, ["status", "--store", str(store_dir), "--json", "--trust-store", str(trust)])
    rows = {row["device"]: row for row in json.loads(status.stdout)["devices"]}
    assert status.exit_code == 1
    assert rows["r1"]["last_status"] == "trusted" and rows["r2"]["last_status"] == "untrusted"
    assert rows["r2"]["last_trusted"] is not None


def test_overlapping_run_is_refused(tmp_path: Path, pki) -> None:
    fakes = [FakeDevice("r1", dossier_handler(pki))]
    inventory, store_dir, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        Store.open(store_dir).close()
        TrustStore.open(trust, create=True)  # a configured store: the lock is what refuses
        with RunLock(store_dir / "collect.lock"):
            result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(store_dir),
                                              "--trust-store", str(trust)])
    assert result.exit_code == 1
    assert "another collection run (pid" in result.stderr and "holds" in result.stderr
    assert fakes[0].commands == []


def test_host_key_mismatch_is_refused_with_a_clear_message(tmp_path: Path, pki) -> None:
    fakes = [FakeDevice("r1", dossier_handler(pki))]
    inventory, store_dir, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        from collector_fakes import _ed25519

        impostor = _ed25519()
        text = inventory.read_text().replace(fakes[0].host_key.get_base64(), impostor.get_base64())
        inventory.write_text(text)
        TrustStore.open(trust, create=True)
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(store_dir),
                                          "--trust-store", str(trust), "--json"])
    assert result.exit_code == 1
    outcome = json.loads(result.stdout)["devices"][0]
    assert outcome["reason"] == "ssh.host_key" and outcome["attempts"] == 1
    assert "HOST KEY MISMATCH" in outcome["message"] and fakes[0].host_key.get_base64() in outcome["message"]
    assert fakes[0].commands == []


def test_bad_inventory_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "inv.yaml"
    bad.write_text("devices:\n  - name: r1\n    credential: {password: x}\n")
    result = CliRunner().invoke(cli, ["collect", "-i", str(bad), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert f"{bad}:3" in result.stderr


def test_run_deadline_skips_devices_not_started(tmp_path: Path, pki) -> None:
    fakes = [FakeDevice(f"r{i}", dossier_handler(pki)) for i in range(3)]
    inventory, store_dir, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        collector = Collector(Store.open(store_dir), trust_store_path=trust,
                              options=CollectOptions(run_deadline_s=1e-9))
        summary = collector.run(load_inventory(inventory).devices)
    assert [o.status for o in summary.outcomes] == ["skipped"] * 3
    assert summary.outcomes[0].reason == "run.deadline"


# --- enrollment -------------------------------------------------------------------------------


def test_enroll_with_expected_fingerprint(tmp_path: Path, pki) -> None:
    fakes = [FakeDevice("r1", dossier_handler(pki))]
    inventory, _, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        base = ["enroll", "-i", str(inventory), "--trust-store", str(trust), "--json"]
        wrong = CliRunner().invoke(cli, [*base, "--expect-fingerprint", "ab" * 32])
        assert wrong.exit_code == 1
        assert "expected root fingerprint" in json.loads(wrong.stdout)["devices"][0]["message"]
        candidate = fetch_root(load_inventory(inventory).devices[0])
        sha1 = ":".join(candidate.sha1[i:i + 2] for i in range(0, 40, 2))
        right = CliRunner().invoke(cli, [*base, "--expect-fingerprint", sha1])
        assert right.exit_code == 0, right.output
        entry = json.loads(right.stdout)["devices"][0]
        assert entry["action"] == "enrolled" and entry["source"] == "fingerprint"
        assert entry["root"]["sha256"] == candidate.sha256
        again = CliRunner().invoke(cli, [*base, "--trust-on-first-use"])
        assert json.loads(again.stdout)["devices"][0]["action"] == "already-enrolled"


def test_enroll_refuses_without_confirmation_when_not_a_terminal(tmp_path: Path, pki) -> None:
    fakes = [FakeDevice("r1", dossier_handler(pki))]
    inventory, _, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        result = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(trust)])
    assert result.exit_code == 2
    assert "--expect-fingerprint" in result.output and "--trust-on-first-use" in result.output
    assert fakes[0].commands == []


def test_enroll_new_root_needs_replace_and_keeps_old_window(tmp_path: Path, pki) -> None:
    fakes = [FakeDevice("r1", dossier_handler(pki))]
    inventory, store_dir, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        device = load_inventory(inventory).devices[0]
        enroll_root(trust, fetch_root(device), source="tofu")
        fakes[0].handler = dossier_handler(make_pki("rebuilt"))
        base = ["enroll", "-i", str(inventory), "--trust-store", str(trust), "--trust-on-first-use", "--json"]
        refused = CliRunner().invoke(cli, base)
        assert refused.exit_code == 1
        assert "--replace" in json.loads(refused.stdout)["devices"][0]["message"]
        replaced = CliRunner().invoke(cli, [*base, "--replace"])
        assert replaced.exit_code == 0 and json.loads(replaced.stdout)["devices"][0]["action"] == "replaced"
    from verifier import TrustStore

    entries = TrustStore.open(trust).root_entries("r1")
    assert len(entries) == 2 and entries[0].valid_until is not None and entries[1].source == "tofu"


# --- alerts and metrics -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "slot"),
    [(61, None), (60, "weekly-0"), (54, "weekly-0"), (53, "weekly-1"), (8, "weekly-7"),
     (7, "daily-7"), (1, "daily-1"), (0, "daily-0"), (-2, "expired-2")],
)
def test_expiry_schedule(days: int, slot: str | None) -> None:
    assert expiry_slot(days) == slot


def test_expiry_alert_once_per_interval_not_per_poll(pki) -> None:
    sink = AlertSink()
    state: dict = {}
    expiry = pki.leaf.not_valid_after_utc
    polls = [expiry - timedelta(days=days, hours=hours) for days in (70, 60, 59, 55, 53, 6, 5)
             for hours in (1, 5)]
    sent = [sink.expiry("r1", "leaf", pki.leaf, state, now=when) for when in polls]
    # 70: none; 60/59/55: one weekly notice; 53: the next; 6 and 5: one each (daily).
    assert sent.count(True) == 4
    assert "CERT_EXPIRING_WARNING" in sink.sent[0].message and sink.sent[0].severity == 4
    assert sink.sent[-1].message.startswith("%SECURITY-CEPKI-1-CERT_EXPIRING_ALERT : Certificate expiring WITHIN A WEEK.")
    assert "Serial Number= 0B:63" in sink.sent[-1].message and sink.sent[-1].severity == 1


def test_an_expiry_notice_syslog_refused_is_sent_again_at_the_next_poll(tmp_path: Path, pki, capsys) -> None:
    """The daemon stops between polls: the notice is not recorded as sent (one warning line,
    no traceback), and goes out once the daemon is back."""
    path = str(tmp_path / "log.sock")

    def listen() -> socket.socket:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(path)
        server.settimeout(5)
        return server

    server = listen()
    sink = AlertSink(path)
    state: dict = {}
    when = pki.leaf.not_valid_after_utc - timedelta(days=30)
    server.close()
    (tmp_path / "log.sock").unlink()  # the daemon went away
    assert sink.expiry("r1", "leaf", pki.leaf, state, now=when) is False
    assert sink.expiry("r1", "leaf", pki.leaf, state, now=when) is False
    assert sink.sent == [] and state.get("expiry_alerts") == {}
    err = capsys.readouterr().err
    assert err.count("warning: syslog send failed") == 1 and "Traceback" not in err
    server = listen()  # back
    try:
        assert sink.expiry("r1", "leaf", pki.leaf, state, now=when) is True
        assert b"CERT_EXPIRING_WARNING" in server.recv(4096)
        assert sink.expiry("r1", "leaf", pki.leaf, state, now=when) is False  # once per interval
    finally:
        server.close()
        sink.close()


def test_metrics_text_is_prometheus_textfile() -> None:
    text = render_metrics({'r"1': {"last_status": "failed", "last_poll_ts": 1.5, "days_to_expiry": {"leaf": 3}}},
                          now=datetime(2026, 1, 1, tzinfo=UTC))
    assert '# TYPE dossier_last_poll_failed gauge' in text
    assert 'dossier_last_poll_failed{device="r\\"1"} 1' in text
    assert 'dossier_certificate_expiry_days{device="r\\"1",certificate="leaf"} 3' in text
    assert "dossier_last_success_timestamp_seconds{" not in text


def test_collection_through_a_jump_host(tmp_path: Path, pki) -> None:
    jump = FakeDevice("bastion", dossier_handler(pki), password="jump-secret", jump=True)
    target = FakeDevice("r1", dossier_handler(pki))
    with FakeFleet([jump, target]) as fleet:
        fleet.write_inventory(tmp_path / "both.yaml", password_dir=tmp_path / "pw")
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(f"""\
defaults:
  jump_host:
    host: 127.0.0.1
    port: {jump.port}
    username: admin
    credential: {{password_file: {tmp_path / "pw" / "bastion.password"}}}
    host_key: "{jump.host_key_line()}"
devices:
  - name: r1
    host: 127.0.0.1
    port: {target.port}
    username: admin
    credential: {{password_file: {tmp_path / "pw" / "r1.password"}}}
    host_key: "{target.host_key_line()}"
""")
        device = load_inventory(inventory).devices[0]
        assert device.jump_host is not None and device.jump_host.port == jump.port
        enroll_root(tmp_path / "trust", fetch_root(device), source="tofu")
        summary = Collector(Store.open(tmp_path / "store"), trust_store_path=tmp_path / "trust").run([device])
        assert summary.outcomes[0].status == "trusted", summary.outcomes[0].message
        assert jump.forwards == [("127.0.0.1", target.port)] * 2 and jump.commands == []
        # A wrong pin on the jump host is refused like any other host key.
        from collector_fakes import _ed25519

        text = inventory.read_text().replace(jump.host_key.get_base64(), _ed25519().get_base64())
        inventory.write_text(text)
        bad = Collector(Store.open(tmp_path / "store"), trust_store_path=tmp_path / "trust").run(
            load_inventory(inventory).devices)
    assert bad.outcomes[0].reason == "ssh.host_key" and "HOST KEY MISMATCH" in bad.outcomes[0].message


def test_interval_loop_finishes_in_flight_work_on_sigterm(tmp_path: Path, pki) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    def slow_dossier(command: str, channel) -> None:
        time.sleep(1.0)
        dossier_handler(pki)(command, channel)

    fake = FakeDevice("r1", slow_dossier)
    inventory, store_dir, trust = setup(tmp_path, [fake])
    with FakeFleet([fake]) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        enroll_all(inventory, trust)
        process = subprocess.Popen(
            [sys.executable, "-m", "dossier_cli", "collect", "-i", str(inventory), "--store", str(store_dir),
             "--trust-store", str(trust), "--interval", "1", "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 30
            while len(fake.commands) < 3:  # enrollment, first poll, second poll (in flight now)
                assert time.monotonic() < deadline and process.poll() is None, process.stderr.read() if process.poll() is not None else "timeout"
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert "SIGTERM" in err and "finishing in-flight" in err
    assert len(list(store_dir.rglob("*.envelope"))) == 2  # the in-flight poll was finished and stored
    assert len(fake.commands) == 3  # and no new poll started after the signal
    assert err.count("status=trusted") == 2


@pytest.mark.parametrize(("answer", "code", "action"), [("y\n", 0, "enrolled"), ("n\n", 1, "declined")])
def test_enroll_interactive_confirmation(tmp_path: Path, pki, monkeypatch: pytest.MonkeyPatch,
                                         answer: str, code: int, action: str) -> None:
    import collector.cli

    monkeypatch.setattr(collector.cli, "_stdin_is_terminal", lambda: True)
    fakes = [FakeDevice("r1", dossier_handler(pki))]
    inventory, _, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        result = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(trust)], input=answer)
    assert result.exit_code == code, result.output
    assert "SHA1 Fingerprint" in result.output and "SHA256 Fingerprint" in result.output
    assert "Validity End" in result.output and "Do you accept this certificate for r1?" in result.output
    from verifier import TrustStore

    entries = TrustStore.open(trust, create=True).root_entries("r1")
    if action == "enrolled":
        assert [e.source for e in entries] == ["interactive"]
    else:
        assert entries == [] and "r1: not enrolled" in result.output


def test_cli_progress_table_prune_and_reindex(tmp_path: Path, pki) -> None:
    fakes = [FakeDevice("r1", dossier_handler(pki)), FakeDevice("r2", dossier_handler(pki))]
    inventory, store_dir, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        enroll_all(inventory, trust)
        args = ["collect", "-i", str(inventory), "--store", str(store_dir), "--trust-store", str(trust)]
        for _ in range(3):
            result = CliRunner().invoke(cli, [*args, "--progress"])
            assert result.exit_code == 0, result.output
        assert "2 trusted, 0 untrusted, 0 failed" in result.stdout
        only = CliRunner().invoke(cli, [*args, "--device", "r2", "--json"])
        assert [d["device"] for d in json.loads(only.stdout)["devices"]] == ["r2"]
    dry = CliRunner().invoke(cli, ["store", "prune", "--store", str(store_dir), "--keep-last", "1", "--dry-run", "--json"])
    assert dry.exit_code == 0 and len(json.loads(dry.stdout)["deleted"]) == 5  # r1: 2 of 3, r2: 3 of 4
    assert len(list(store_dir.rglob("*.envelope"))) == 7
    pruned = CliRunner().invoke(cli, ["store", "prune", "--store", str(store_dir), "--keep-last", "1"])
    assert pruned.exit_code == 0 and "deleted 5 envelopes" in pruned.stdout
    assert len(list(store_dir.rglob("*.envelope"))) == 2
    assert CliRunner().invoke(cli, ["store", "prune", "--store", str(store_dir)]).exit_code == 2
    reindexed = CliRunner().invoke(cli, ["store", "reindex", "--store", str(store_dir), "--trust-store", str(trust)])
    assert reindexed.exit_code == 0 and "indexed 2 envelopes" in reindexed.stdout
    status = CliRunner().invoke(cli, ["status", "--store", str(store_dir), "--trust-store", str(trust)])
    assert status.exit_code == 0 and "r1" in status.stdout and "trusted" in status.stdout
    missing = CliRunner().invoke(cli, ["status", "--store", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "dossier collect --store" in missing.stderr


def test_store_history_lists_a_device_newest_first(tmp_path: Path, pki) -> None:
    fakes = [FakeDevice("r1", dossier_handler(pki))]
    inventory, store_dir, trust = setup(tmp_path, fakes)
    with FakeFleet(fakes) as fleet:
        fleet.write_inventory(inventory, password_dir=tmp_path / "pw")
        enroll_all(inventory, trust)
        args = ["collect", "-i", str(inventory), "--store", str(store_dir), "--trust-store", str(trust), "--json"]
        assert CliRunner().invoke(cli, args).exit_code == 0
        fakes[0].handler = data_changed_handler(pki)
        assert CliRunner().invoke(cli, args).exit_code == 1
    result = CliRunner().invoke(cli, ["store", "history", "r1", "--store", str(store_dir), "--json"])
    assert result.exit_code == 0, result.output
    envelopes = json.loads(result.stdout)["envelopes"]
    assert [e["trusted"] for e in envelopes] == [False, True]
    assert envelopes[0]["reasons"] == ["signature.invalid"]
    table = CliRunner().invoke(cli, ["store", "history", "r1", "--store", str(store_dir)])
    assert table.exit_code == 0 and "untrusted" in table.stdout
    assert CliRunner().invoke(cli, ["store", "history", "nope", "--store", str(store_dir)]).exit_code == 2


def test_backoff_grows_exponentially_with_equal_jitter(tmp_path: Path) -> None:
    """Half of each delay is fixed, half random; the ceiling doubles per attempt up to the max."""
    import random

    collector = Collector(Store.open(tmp_path / "store"), trust_store_path=None,
                          options=CollectOptions(backoff_base_s=0.5, backoff_max_s=8.0), rng=random.Random(7))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (9, 8.0)]:
        delays = [collector._backoff(attempt) for _ in range(400)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        # jittered: spread over the random half, not one value (devices do not retry in step)
        assert max(delays) - min(delays) > 0.4 * ceiling / 2
