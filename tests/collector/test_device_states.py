"""Device states in one file (`state/_devices.json`): Store.states / read_state / write_states,
legacy one-file-per-device states, damaged files, and what Collector.run reads and writes,
against the real emulator over loopback SSH."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector import collect, polling
from collector.collect import CollectOptions, Collector, DeviceOutcome
from collector.errors import StoreError
from collector.inventory import Device
from collector.polling import PolledOutput, PollStrategy
from collector.store import DEVICE_STATES_FORMAT, DEVICE_STATES_NAME, Store
from collector.verifying import Checked
from fleet_setup import enroll_all
from emulator.fleet import Fleet

FS_NODE = "0/RP0/CPU0"
FS_ITEMS = ("filesystem-inventory", "packages")


@dataclass(frozen=True)
class Rig:
    devices: list[Device]
    trust: Path


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """Three emulated IOS XR devices, listening for the whole module, roots enrolled."""
    tmp = tmp_path_factory.mktemp("states")
    with Fleet(state_dir=tmp / "fleet", devices=3, provisioned=True, key_type="ecdsa-p256",
               seed=31, files=20) as fleet:
        fleet.write_inventory(tmp / "inventory.yaml")
        devices = enroll_all(tmp / "inventory.yaml", tmp / "truststore")
        yield Rig(devices, tmp / "truststore")


def collector_for(store: Store, rig: Rig, **options: object) -> Collector:
    return Collector(store, trust_store_path=rig.trust,
                     options=CollectOptions(concurrency=3, retries=0, backoff_base_s=0.01, **options))  # type: ignore[arg-type]


def combined(store_dir: Path) -> dict:
    return json.loads((store_dir / "state" / DEVICE_STATES_NAME).read_text())


def commands(store_dir: Path, device: str) -> list[str]:
    metas = sorted((store_dir / device).glob("*.meta.json"))
    return [json.loads(p.read_text())["command"] for p in metas]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a run writes one file ------------------------------------------------------------------

def test_a_run_writes_one_combined_file_with_every_polled_device(tmp_path: Path, rig: Rig) -> None:
    store_dir = tmp_path / "store"
    unreachable = dataclasses.replace(rig.devices[0], name="xr-gone", port=closed_port())
    devices = [*rig.devices, unreachable]
    summary = collector_for(Store.open(store_dir), rig).run(devices)
    statuses = {o.device: o.status for o in summary.outcomes}
    assert statuses == {**{d.name: "trusted" for d in rig.devices}, "xr-gone": "failed"}

    assert sorted(p.name for p in (store_dir / "state").iterdir()) == [DEVICE_STATES_NAME]
    document = combined(store_dir)
    assert document["format"] == DEVICE_STATES_FORMAT == "trust-dossier/device-states/1"
    assert set(document) == {"format", "devices"}
    states = document["devices"]
    assert sorted(states) == sorted(d.name for d in devices)
    for outcome in summary.outcomes:
        state = states[outcome.device]
        assert (state["device"], state["last_status"], state["last_reason"]) == (
            outcome.device, outcome.status, outcome.reason)
        assert state["host"] == "127.0.0.1" and isinstance(state["last_poll_ts"], float)
    for device in rig.devices:
        assert (store_dir / states[device.name]["last_path"]).is_file()
        assert "last_success_ts" in states[device.name]
    assert "last_success_ts" not in states["xr-gone"] and "last_path" not in states["xr-gone"]

    store = Store.open(store_dir)
    assert store.states() == states
    assert store.read_state("xr-0002") == states["xr-0002"]
    assert store.read_state("xr-never-polled") == {}


def test_a_second_run_carries_the_states_and_updates_them(tmp_path: Path, rig: Rig) -> None:
    store_dir = tmp_path / "store"
    first = collector_for(Store.open(store_dir), rig, items=FS_ITEMS).run(rig.devices[:2])
    assert first.exit_code == 0
    after_first = combined(store_dir)["devices"]
    assert all(after_first[d.name]["filesystem_blocks"] == {FS_NODE: 0} for d in rig.devices[:2])
    # A new collector (the next cron run) reads the file: the increments continue.
    second = collector_for(Store.open(store_dir), rig, items=FS_ITEMS).run(rig.devices[1:])
    assert second.exit_code == 0
    after_second = combined(store_dir)["devices"]
    assert sorted(after_second) == [d.name for d in rig.devices]  # xr-0001 kept, not polled
    assert after_second["xr-0001"] == after_first["xr-0001"]
    assert after_second["xr-0002"]["last_poll_ts"] >= after_first["xr-0002"]["last_poll_ts"]
    assert "filesystem-inventory-options" in commands(store_dir, "xr-0002")[-1]
    assert "filesystem-inventory-options" not in commands(store_dir, "xr-0003")[-1]


@dataclass(frozen=True)
class CountingPoll:
    """A strategy of its own (the platform's around it) keeping its own state key: the loop
    reaches it through `PollStrategy.remember` and nothing else."""

    inner: PollStrategy
    seen: int

    def poll_once(self, device: Device, *, deadline: float) -> list[PolledOutput]:
        return self.inner.poll_once(device, deadline=deadline)

    def remember(self, output: PolledOutput, checked: Checked, state: dict[str, Any]) -> None:
        self.inner.remember(output, checked, state)
        state["counting"] = {"seen": self.seen + 1, "last": output.kind, "trusted": checked.trusted}


def test_each_strategy_keeps_its_own_state_through_the_polling_interface(
        tmp_path: Path, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    def counting(*args: Any, state: Any, **kwargs: Any) -> PollStrategy:
        seen = state.get("counting", {}).get("seen", 0)
        return CountingPoll(polling.strategy_for(*args, state=state, **kwargs), seen)

    monkeypatch.setattr(collect, "strategy_for", counting)
    store_dir = tmp_path / "store"
    for _ in range(2):
        assert collector_for(Store.open(store_dir), rig, items=FS_ITEMS).run(rig.devices[:1]).exit_code == 0
    state = combined(store_dir)["devices"][rig.devices[0].name]
    assert state["counting"] == {"seen": 2, "last": "xr-dossier", "trusted": True}
    assert state["filesystem_blocks"] == {FS_NODE: 0}  # the dossier strategy's, as before
    assert "filesystem-inventory-options" in commands(store_dir, rig.devices[0].name)[-1]


def test_states_are_written_during_a_run_once_the_interval_has_passed(
        tmp_path: Path, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    store_dir = tmp_path / "store"
    seen: list[set[str] | None] = []

    def look(outcome: DeviceOutcome) -> None:
        path = store_dir / "state" / DEVICE_STATES_NAME
        seen.append(set(json.loads(path.read_text())["devices"]) if path.exists() else None)

    # Configuration, not a mock: the interval set to "always" and to "never during this run".
    monkeypatch.setattr(collect, "STATES_WRITE_INTERVAL_S", 0.0)
    summary = Collector(Store.open(store_dir), trust_store_path=rig.trust, on_outcome=look,
                        options=CollectOptions(concurrency=1)).run(rig.devices)
    assert summary.exit_code == 0
    # Each outcome is reported after its state was recorded, so the file already has it.
    names = [d.name for d in rig.devices]
    assert seen == [set(names[:i + 1]) for i in range(len(names))]

    seen.clear()
    other = tmp_path / "other"
    monkeypatch.setattr(collect, "STATES_WRITE_INTERVAL_S", 3600.0)
    store_dir = other
    summary = Collector(Store.open(other), trust_store_path=rig.trust, on_outcome=look,
                        options=CollectOptions(concurrency=1)).run(rig.devices)
    assert summary.exit_code == 0
    assert seen == [None, None, None]  # nothing written mid-run...
    assert sorted(combined(other)["devices"]) == names  # ...and everything at its end


def test_a_single_poll_writes_the_states(tmp_path: Path, rig: Rig) -> None:
    store_dir = tmp_path / "store"
    outcome = collector_for(Store.open(store_dir), rig).poll(rig.devices[0])
    assert outcome.status == "trusted"
    assert sorted(combined(store_dir)["devices"]) == ["xr-0001"]


# --- legacy per-device files ---------------------------------------------------------------------

def test_a_legacy_state_file_is_read_and_carried_into_the_combined_file(tmp_path: Path, rig: Rig) -> None:
    store_dir = tmp_path / "store"
    state_dir = store_dir / "state"
    state_dir.mkdir(parents=True)
    legacy = {"device": "xr-0001", "filesystem_blocks": {FS_NODE: 0}, "custom": "kept",
              "last_status": "trusted"}
    (state_dir / "xr-0001.json").write_text(json.dumps(legacy))
    retired = {"device": "xr-retired", "last_status": "failed"}
    (state_dir / "xr-retired.json").write_text(json.dumps(retired))
    before = {p.name: p.read_bytes() for p in state_dir.iterdir()}
    assert Store.open(store_dir).read_state("xr-0001") == legacy

    summary = collector_for(Store.open(store_dir), rig, items=FS_ITEMS).run(rig.devices[:2])
    assert summary.exit_code == 0
    # The legacy increments were used: only blocks after 0 were asked for, of xr-0001 only.
    assert f"filesystem-inventory-options '{{\"{FS_NODE}\":{{\"block_start\":1}}}}'" in commands(store_dir, "xr-0001")[0]
    assert "filesystem-inventory-options" not in commands(store_dir, "xr-0002")[0]
    states = combined(store_dir)["devices"]
    assert sorted(states) == ["xr-0001", "xr-0002", "xr-retired"]
    assert states["xr-0001"]["custom"] == "kept" and states["xr-0001"]["filesystem_blocks"] == {FS_NODE: 0}
    assert states["xr-0001"]["last_poll_ts"] > 0
    assert states["xr-retired"] == retired
    # No per-device file was written (the legacy ones are left as they were).
    assert {p.name: p.read_bytes() for p in state_dir.iterdir() if p.name != DEVICE_STATES_NAME} == before


def test_the_combined_file_overrides_legacy_files(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    state_dir = tmp_path / "store" / "state"
    state_dir.mkdir()
    (state_dir / "xr-0001.json").write_text('{"from": "legacy"}')
    (state_dir / "xr-0002.json").write_text('{"from": "legacy"}')
    (state_dir / "not a device.json").write_text("ignored: not a device name")
    store.write_states({"xr-0001": {"from": "combined"}, "xr-0003": {"from": "combined"}})
    assert store.states() == {"xr-0001": {"from": "combined"}, "xr-0002": {"from": "legacy"},
                              "xr-0003": {"from": "combined"}}
    assert store.read_state("xr-0001") == {"from": "combined"}
    assert store.read_state("xr-0002") == {"from": "legacy"}
    document = json.loads((state_dir / DEVICE_STATES_NAME).read_text())
    assert document == {"format": DEVICE_STATES_FORMAT,
                        "devices": {"xr-0001": {"from": "combined"}, "xr-0003": {"from": "combined"}}}
    # write_states replaces the whole set.
    store.write_states({"xr-0004": {"n": 1}})
    assert store.states() == {"xr-0001": {"from": "legacy"}, "xr-0002": {"from": "legacy"}, "xr-0004": {"n": 1}}


def test_no_state_directory_means_no_states(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    assert store.states() == {} and store.read_state("xr-0001") == {}


# --- damage ----------------------------------------------------------------------------------------

DAMAGED = {
    "bad JSON": b'{"format": "trust-dossier/device-states/1", "devices": {',
    "empty": b"",
    "not an object": b"[]",
    "wrong format": json.dumps({"format": "trust-dossier/device-states/2", "devices": {}}).encode(),
    "no format": json.dumps({"devices": {}}).encode(),
    "devices not an object": json.dumps({"format": DEVICE_STATES_FORMAT, "devices": []}).encode(),
    "a device state not an object": json.dumps(
        {"format": DEVICE_STATES_FORMAT, "devices": {"xr-0001": "trusted"}}).encode(),
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_combined_file_is_reported_naming_it(tmp_path: Path, content: bytes) -> None:
    store = Store.open(tmp_path / "store")
    path = tmp_path / "store" / "state" / DEVICE_STATES_NAME
    path.parent.mkdir()
    path.write_bytes(content)
    for read in (store.states, lambda: store.read_state("xr-0001")):
        with pytest.raises(StoreError) as caught:
            read()
        assert str(path) in str(caught.value)


@pytest.mark.parametrize("content", [DAMAGED["bad JSON"], DAMAGED["wrong format"], DAMAGED["devices not an object"]],
                         ids=["bad JSON", "wrong format", "devices not an object"])
def test_a_run_over_a_damaged_combined_file_succeeds_and_replaces_it(
        tmp_path: Path, rig: Rig, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="collector.collect")
    store_dir = tmp_path / "store"
    path = store_dir / "state" / DEVICE_STATES_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    summary = collector_for(Store.open(store_dir), rig).run(rig.devices)
    assert {o.device: o.status for o in summary.outcomes} == {d.name: "trusted" for d in rig.devices}
    assert summary.exit_code == 0
    assert any(str(path) in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    document = combined(store_dir)
    assert document["format"] == DEVICE_STATES_FORMAT
    assert sorted(document["devices"]) == [d.name for d in rig.devices]  # started afresh
    assert Store.open(store_dir).states() == document["devices"]


def test_a_damaged_legacy_file_does_not_make_every_later_run_forget_the_states(tmp_path: Path, rig: Rig) -> None:
    store_dir = tmp_path / "store"
    (store_dir / "state").mkdir(parents=True)
    (store_dir / "state" / "xr-0001.json").write_bytes(b"")
    first = collector_for(Store.open(store_dir), rig, items=FS_ITEMS).run(rig.devices[1:2])
    assert first.exit_code == 0
    assert combined(store_dir)["devices"]["xr-0002"]["filesystem_blocks"] == {FS_NODE: 0}
    # The next run (a new process: a new Collector) should continue xr-0002's increments.
    second = collector_for(Store.open(store_dir), rig, items=FS_ITEMS).run(rig.devices[1:2])
    assert second.exit_code == 0
    assert "filesystem-inventory-options" in commands(store_dir, "xr-0002")[-1]


# --- names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "state", "../escape", "a/b", "_devices", ".hidden", "-dash",
                                  "with space", "x" * 64, "caf\u00e9"])
def test_write_states_refuses_invalid_device_names(tmp_path: Path, name: str) -> None:
    store = Store.open(tmp_path / "store")
    store.write_states({"xr-0001": {"n": 1}})
    path = tmp_path / "store" / "state" / DEVICE_STATES_NAME
    before = path.read_bytes()
    with pytest.raises(StoreError, match="invalid device name"):
        store.write_states({"xr-0002": {"n": 2}, name: {"n": 3}})
    assert path.read_bytes() == before  # nothing written
    assert sorted(p.name for p in path.parent.iterdir()) == [DEVICE_STATES_NAME]
    with pytest.raises(StoreError, match="invalid device name"):
        store.read_state(name)


def test_status_and_the_report_warn_about_a_damaged_state_file_and_go_on(
        tmp_path: Path, rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    from click.testing import CliRunner

    from dossier_cli.main import cli

    store_dir = tmp_path / "store"
    assert collector_for(Store.open(store_dir), rig).run(rig.devices[:1]).exit_code == 0
    (store_dir / "state" / DEVICE_STATES_NAME).write_bytes(b"{not json")
    with caplog.at_level(logging.WARNING):
        status = CliRunner().invoke(cli, ["status", "--store", str(store_dir), "--json",
                                            "--trust-store", str(rig.trust)])
        report = CliRunner().invoke(cli, ["report", "--store", str(store_dir), "--trust-store", str(rig.trust),
                                          "--json"])
    assert status.exit_code == 0, status.output
    assert [row["device"] for row in json.loads(status.stdout)["devices"]] == [rig.devices[0].name]  # the index
    assert report.exit_code == 0, report.output
    assert any(DEVICE_STATES_NAME in r.getMessage() for r in caplog.records)


def test_entries_a_store_cannot_hold_are_skipped_with_a_warning_and_the_run_goes_on(
        tmp_path: Path, rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    store_dir = tmp_path / "store"
    path = store_dir / "state" / DEVICE_STATES_NAME
    path.parent.mkdir(parents=True)
    first = rig.devices[0].name
    path.write_text(json.dumps({"format": DEVICE_STATES_FORMAT, "devices": {
        "old box": {"last_status": "trusted"}, "state": {}, first: "not an object",
        rig.devices[1].name: {"filesystem_blocks": {"0/RP0/CPU0": "seven"}}}}))  # hand-edited
    with pytest.raises(StoreError, match="'old box'"):
        Store.open(store_dir).states()
    caplog.set_level(logging.WARNING, logger="collector.collect")
    for _ in range(2):  # and the next run reads what this one wrote
        summary = collector_for(Store.open(store_dir), rig, items=FS_ITEMS).run(rig.devices)
        assert summary.exit_code == 0, [(o.device, o.reason, o.message) for o in summary.outcomes]
    assert any("'old box'" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert sorted(combined(store_dir)["devices"]) == sorted(d.name for d in rig.devices)
    assert not (store_dir / "index.dirty").exists()


def test_a_state_file_that_cannot_be_written_does_not_stop_the_run(
        tmp_path: Path, rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    store_dir = tmp_path / "store"
    (store_dir / "state" / DEVICE_STATES_NAME).mkdir(parents=True)  # in the way of the file
    caplog.set_level(logging.WARNING, logger="collector.collect")
    summary = collector_for(Store.open(store_dir), rig).run(rig.devices)
    assert summary.exit_code == 0
    assert {o.status for o in summary.outcomes} == {"trusted"}
    assert any("cannot write the device states" in r.getMessage() for r in caplog.records)
    assert not (store_dir / "index.dirty").exists()
