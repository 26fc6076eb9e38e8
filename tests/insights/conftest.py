"""Fixtures for insights tests: a one-device emulator fleet collected into a real store."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.alerts import AlertSink
from collector.collect import CollectOptions, Collector, DeviceOutcome
from collector.enroll import enroll_root, fetch_root
from collector.inventory import load_inventory
from collector.store import Store
from emulator.fleet import Fleet

ALL_ITEMS = ("packages", "reboot-history", "rollback-history", "system-integrity-snapshot",
             "system-inventory", "filesystem-inventory")
SMALL_FILES = 20  # file-system inventory size: small keeps the fleet quick to start


@dataclasses.dataclass
class Rig:
    """A running fleet, its inventory devices, a store and a collector that appraises."""

    fleet: Fleet
    devices: list[Any]
    store: Store
    trust: Path
    alerts: AlertSink
    policy: Any

    def collect(self, policy: Any = None) -> DeviceOutcome:
        options = CollectOptions(items=ALL_ITEMS, policy=policy if policy is not None else self.policy)
        collector = Collector(self.store, trust_store_path=self.trust, options=options, alerts=self.alerts)
        return collector.run(self.devices).outcomes[0]

    @property
    def device(self) -> Any:
        return self.fleet.devices[0].device


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(policy: Any, *, seed: int = 5, files: int = SMALL_FILES) -> Rig:
        fleet = Fleet(state_dir=tmp_path / "fleet", devices=1, provisioned=True, key_type="ecdsa-p256",
                      seed=seed, files=files)
        fleet.start()
        fleets.append(fleet)
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        devices = load_inventory(inventory).devices
        trust = tmp_path / "trust"
        enroll_root(trust, fetch_root(devices[0]), source="tofu")
        return Rig(fleet, devices, Store.open(tmp_path / "store"), trust, AlertSink(), policy)

    yield make
    for fleet in fleets:
        fleet.stop()
