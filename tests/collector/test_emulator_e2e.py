"""End to end against the real emulator fleet over loopback SSH: every fault ends in the right
verdict or failure reason while the other devices still succeed; SIGKILL mid-collection loses
nothing; 200 devices in one run."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from hashlib import sha256
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.collect import CollectOptions, Collector
from collector.enroll import enroll_root, fetch_root
from collector.inventory import Timeouts, load_inventory
from collector import store as store_module
from collector.store import Store
from fleet_setup import enroll_all
from dossier_cli.main import cli
from verifier import TrustStore
from emulator.faults import TPM_FAULTS, Fault
from emulator.fleet import Fleet

# Fault -> (status, reason) the collector must end in. Transport faults are failures with the
# SSH reason; content faults are stored envelopes with the verifier's finding.
EXPECTED = {
    Fault.SLOW_OUTPUT: ("failed", "ssh.timeout"),
    Fault.DROP_MID_OUTPUT: ("failed", "ssh.connection_lost"),
    Fault.AUTH_FAILURE: ("failed", "ssh.auth_failed"),
    Fault.RATE_LIMIT: ("failed", "ssh.rate_limited"),
    Fault.NOT_JSON: ("untrusted", "envelope.invalid_json"),
    Fault.WRONG_NONCE: ("untrusted", "nonce.mismatch"),
    Fault.DATA_CHANGED: ("untrusted", "signature.invalid"),
    Fault.OTHER_KEY: ("untrusted", "signature.invalid"),
    Fault.EXPIRED_LEAF: ("untrusted", "chain.leaf_expired"),
    Fault.REKEYED_LEAF: ("trusted", None),
    Fault.ROOT_REPLACED: ("untrusted", "chain.root_not_enrolled"),
    Fault.ITEMS_FAILING: ("trusted", None),
    Fault.FLOOD_STDERR: ("failed", "device.output_too_large"),
    Fault.TIMESTAMP_IN_DATA: ("trusted", None),
}
#: The command deadline of the SLOW_OUTPUT device: below its delay, so it times out.
SLOW_DEADLINE_S = 1.0
#: Every other device's: never reached by a device that answers, so that on a loaded machine no
#: fault ends in a timeout instead of its own reason (FLOOD_STDERR must end at the size limit).
DEADLINE_S = 60.0
PARAMS = {Fault.SLOW_OUTPUT: {"delay": 3.0},
          Fault.ITEMS_FAILING: {"items": ["packages"], "result": "Timeout"},
          Fault.FLOOD_STDERR: {"seconds": DEADLINE_S}}
SMALL_FILES = 20  # file-system inventory size: small keeps fleets quick to start


@pytest.mark.parametrize("storing", ["syncfs batches", "a fsync each"])
def test_every_fault_ends_in_its_verdict_and_the_rest_succeed(tmp_path: Path, storing: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if storing == "a fsync each":  # a file system without syncfs: the batch stored one by one
        monkeypatch.setattr(store_module._BatchSync, "usable", classmethod(lambda cls, root: False))
    # The first batch takes its time, so that the outputs behind it are finished together: each
    # must get its own verdict, whichever way it is stored.
    batches: list[int] = []
    real_finish_many = Collector._finish_many

    def finish_many(self: Collector, batch: list) -> list:
        if not batches:
            time.sleep(0.5)
        batches.append(len(batch))
        return real_finish_many(self, batch)

    monkeypatch.setattr(Collector, "_finish_many", finish_many)
    # IOS XE only: test_adv_hostile_fleet.py; TPM faults touch the NETCONF evidence, not the dossier.
    faults = [f for f in Fault if f is not Fault.MALFORMED_SAN and f not in TPM_FAULTS]
    assert set(faults) == set(EXPECTED), "a new emulator fault needs an expectation here"
    count = len(faults) + 2
    with Fleet(state_dir=tmp_path / "fleet", devices=count, provisioned=True,
               key_type="ecdsa-p256", seed=4, files=SMALL_FILES) as fleet:
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        trust = tmp_path / "truststore"
        devices = enroll_all(inventory, trust)
        faulty = dict(zip([d.name for d in devices[1:-1]], faults))
        for name, fault in faulty.items():
            fleet.set_fault(name, fault, **PARAMS.get(fault, {}))
        # A command deadline shorter than SLOW_OUTPUT's delay for its device only.
        devices = [dataclasses.replace(d, timeouts=Timeouts(
                       connect=5, auth=5, command=SLOW_DEADLINE_S if faulty.get(d.name) is Fault.SLOW_OUTPUT
                       else DEADLINE_S, device=DEADLINE_S)) for d in devices]
        collector = Collector(Store.open(tmp_path / "store"), trust_store_path=trust,
                              options=CollectOptions(concurrency=8, retries=1, backoff_base_s=0.05))
        summary = collector.run(devices)
    outcomes = {o.device: o for o in summary.outcomes}
    for name, fault in faulty.items():
        outcome = outcomes[name]
        assert (outcome.status, outcome.reason) == EXPECTED[fault], (fault, outcome.message)
    assert outcomes[devices[0].name].status == "trusted"
    assert outcomes[devices[-1].name].status == "trusted"
    assert outcomes[next(n for n, f in faulty.items() if f is Fault.AUTH_FAILURE)].attempts == 1
    assert outcomes[next(n for n, f in faulty.items() if f is Fault.RATE_LIMIT)].attempts == 2
    rekeyed = outcomes[next(n for n, f in faulty.items() if f is Fault.REKEYED_LEAF)]
    assert "chain.leaf_rotated" in [f["id"] for f in rekeyed.findings]
    assert summary.exit_code == 1
    assert max(batches) > 1, batches


def test_host_key_mismatch_against_the_emulator(tmp_path: Path) -> None:
    with Fleet(state_dir=tmp_path / "a", devices=1, provisioned=True, files=SMALL_FILES, seed=1) as first, \
         Fleet(state_dir=tmp_path / "b", devices=1, provisioned=True, files=SMALL_FILES, seed=2) as second:
        inventory = tmp_path / "inventory.yaml"
        first.write_inventory(inventory)
        # Point the inventory at the second device: same name, other host key.
        text = inventory.read_text().replace(f"port: {first.devices[0].port}", f"port: {second.devices[0].port}")
        inventory.write_text(text.replace(f"]:{first.devices[0].port} ", f"]:{second.devices[0].port} "))
        TrustStore.open(tmp_path / "t", create=True)
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "s"),
                                          "--trust-store", str(tmp_path / "t"), "--json"])
    assert result.exit_code == 1
    outcome = json.loads(result.stdout)["devices"][0]
    assert outcome["reason"] == "ssh.host_key" and "HOST KEY MISMATCH" in outcome["message"]
    assert f"127.0.0.1]:{second.devices[0].port}" in outcome["message"]


SERVE_FLEET = """
import sys, threading
from pathlib import Path
from emulator.fleet import Fleet
from emulator.faults import TPM_FAULTS, Fault
state, inventory, slow = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "slow"
with Fleet(state_dir=state, devices=6, provisioned=True, files=20, seed=9) as fleet:
    fleet.write_inventory(inventory)
    if slow:
        for device in fleet.devices:
            fleet.set_fault(device.name, Fault.SLOW_OUTPUT, delay=30.0)
    print("ready", flush=True)
    sys.stdin.read()
"""


def _serve(tmp_path: Path, slow: bool) -> tuple[subprocess.Popen[str], Path]:
    inventory = tmp_path / f"inventory-{slow}.yaml"
    process = subprocess.Popen([sys.executable, "-c", SERVE_FLEET, str(tmp_path / "fleet"), str(inventory),
                                "slow" if slow else "fast"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process, inventory


def test_sigkill_mid_collection_loses_nothing_and_the_index_rebuilds(tmp_path: Path) -> None:
    store_dir, trust = tmp_path / "store", tmp_path / "truststore"
    # (1) a first, complete collection: these envelopes must survive the crash untouched.
    server, inventory = _serve(tmp_path, slow=False)
    try:
        result = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(trust),
                                          "--trust-on-first-use", "--json"])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(store_dir),
                                          "--trust-store", str(trust), "--json"])
        assert result.exit_code == 0, result.output
    finally:
        server.communicate("")
    before = {p: sha256(p.read_bytes()).hexdigest() for p in store_dir.rglob("*.envelope")}
    assert len(before) == 6
    # (2) the same fleet, now slow: the collector is killed while every device is mid-output.
    server, inventory = _serve(tmp_path, slow=True)
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        collector = subprocess.Popen(
            [sys.executable, "-m", "dossier_cli", "collect", "-i", str(inventory), "--store", str(store_dir),
             "--trust-store", str(trust), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env)
        deadline = time.monotonic() + 20
        while not (store_dir / "index.dirty").exists():  # the run has started writing
            assert time.monotonic() < deadline and collector.poll() is None
            time.sleep(0.02)
        time.sleep(1.0)  # sessions are open and output is trickling in
        collector.send_signal(signal.SIGKILL)
        collector.wait(10)
    finally:
        server.communicate("")
    after = {p: sha256(p.read_bytes()).hexdigest() for p in store_dir.rglob("*.envelope")}
    assert after == before, "no partial envelope, no lost or changed earlier envelope"
    # (3) the next run finds the dirty index and rebuilds it; reindex gives the same answer.
    store = Store.open(store_dir)
    assert store.dirty
    assert store.recover() == 6
    assert not list(store_dir.rglob("*.tmp"))
    assert len(store.latest()) == 6 and all(r.trusted for r in store.latest().values())
    result = CliRunner().invoke(cli, ["store", "reindex", "--store", str(store_dir), "--json",
                                      "--trust-store", str(trust)])
    assert result.exit_code == 0 and json.loads(result.stdout)["envelopes"] == 6


def test_a_second_sigint_aborts_at_once_and_keeps_what_is_stored(tmp_path: Path) -> None:
    store_dir, trust = tmp_path / "store", tmp_path / "truststore"
    server, inventory = _serve(tmp_path, slow=False)
    try:
        assert CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(trust),
                                        "--trust-on-first-use"]).exit_code == 0
        assert CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(store_dir),
                                        "--trust-store", str(trust), "--quiet"]).exit_code == 0
    finally:
        server.communicate("")
    before = {p: sha256(p.read_bytes()).hexdigest() for p in store_dir.rglob("*.envelope")}
    # Every device now takes 30 s: a first Ctrl-C would wait for them; a second must not.
    server, inventory = _serve(tmp_path, slow=True)
    try:
        collector = subprocess.Popen(
            [sys.executable, "-m", "dossier_cli", "collect", "-i", str(inventory), "--store", str(store_dir),
             "--trust-store", str(trust), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True)
        deadline = time.monotonic() + 20
        while not (store_dir / "index.dirty").exists():  # the run has started
            assert time.monotonic() < deadline and collector.poll() is None
            time.sleep(0.02)
        time.sleep(1.0)  # sessions are open and output is trickling in
        collector.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert collector.poll() is None, "the first Ctrl-C lets in-flight devices finish"
        begin = time.monotonic()
        collector.send_signal(signal.SIGINT)
        _, stderr = collector.communicate(timeout=10)
        took = time.monotonic() - begin
    finally:
        server.communicate("")
    assert collector.returncode == 130 and took < 5, (collector.returncode, took, stderr)
    assert "Ctrl-C again aborts at once" in stderr and "received SIGINT again: aborting now" in stderr
    assert {p: sha256(p.read_bytes()).hexdigest() for p in store_dir.rglob("*.envelope")} == before
    store = Store.open(store_dir)
    assert store.dirty, "left as a crash leaves it: the next run rebuilds the index"
    assert store.recover() == 6


@pytest.mark.slow
def test_two_hundred_devices_in_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(state_dir=tmp_path / "fleet", devices=200, provisioned=True, key_type="ecdsa-p256",
                  seed=3, files=5)
    with monkeypatch.context() as patch:
        # Building 200 device states fsyncs ~25 files each (~45 s here); the fleet's durability
        # is not under test, so skip those fsyncs while it starts. The collector's are real.
        patch.setattr(os, "fsync", lambda fd: None)
        fleet.start()
    try:
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        trust = tmp_path / "truststore"
        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", lambda fd: None)  # the trust store's durability: not under test
            result = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(trust),
                                              "--trust-on-first-use", "--json"])
        assert result.exit_code == 0, result.output[-2000:]
        begin = time.monotonic()
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "store"),
                                          "--trust-store", str(trust), "--concurrency", "32", "--json"])
        elapsed = time.monotonic() - begin
    finally:
        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", lambda fd: None)
            fleet.stop()
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"trusted": 200, "untrusted": 0, "failed": 0, "skipped": 0}, elapsed
    assert result.exit_code == 0
    assert len({d["nonce"] for d in summary["devices"]}) == 200


def test_enroll_provision_sets_up_an_unprovisioned_device(tmp_path: Path) -> None:
    with Fleet(state_dir=tmp_path / "fleet", devices=1, provisioned=False, files=SMALL_FILES, seed=5) as fleet:
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        trust = tmp_path / "truststore"
        base = ["enroll", "-i", str(inventory), "--trust-store", str(trust), "--trust-on-first-use",
                "--json", "--provision", "--provision-key-type", "rsa2048"]
        # Without provisioning, the device cannot sign: enrollment says so and stores nothing.
        plain = CliRunner().invoke(cli, base[:-3])
        assert plain.exit_code == 1
        assert json.loads(plain.stdout)["devices"][0]["action"] == "failed"
        first = CliRunner().invoke(cli, base)
        assert first.exit_code == 0, first.output
        entry = json.loads(first.stdout)["devices"][0]
        assert entry["action"] == "enrolled"
        assert any("crypto ca enroll system-trustpoint" in change for change in entry["provisioned"])
        assert any("rsa key system-root-key (2048)" in change for change in entry["provisioned"])
        second = CliRunner().invoke(cli, base)
        entry = json.loads(second.stdout)["devices"][0]
        assert (entry["action"], entry["provisioned"]) == ("already-enrolled", [])
        collected = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "store"),
                                             "--trust-store", str(trust), "--json"])
    assert collected.exit_code == 0, collected.output


def test_filesystem_inventory_increments_against_the_emulator(tmp_path: Path) -> None:
    with Fleet(state_dir=tmp_path / "fleet", devices=1, provisioned=True, files=SMALL_FILES, seed=2) as fleet:
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        device = dataclasses.replace(load_inventory(inventory).devices[0], items=("filesystem-inventory",))
        enroll_root(tmp_path / "trust", fetch_root(device), source="tofu")
        collector = Collector(Store.open(tmp_path / "store"), trust_store_path=tmp_path / "trust")
        seen: list[list[int]] = []
        for _ in range(3):
            outcome = collector.run([device]).outcomes[0]
            assert outcome.status == "trusted", outcome.message
            raw = (tmp_path / "store" / outcome.path).read_text()
            data = json.loads(json.loads(raw[raw.index("{"):])["signed-envelope"]["data"])
            snapshots = data["filesystem-inventory"]["filesystem-inventory"]["0/RP0/CPU0"]["snapshots"]
            seen.append([s["snapshot-block-no"] for s in snapshots])
            fleet.devices[0].device.advance_clock(2 * 3600)  # two new snapshot blocks come due
    # Each poll asks only for blocks newer than the last one collected: no block twice, none lost.
    flat = [block for blocks in seen for block in blocks]
    assert flat == sorted(set(flat)) and flat[0] == 0 and len(seen[1]) >= 1 and len(seen[2]) >= 1
    assert flat == list(range(flat[-1] + 1))
