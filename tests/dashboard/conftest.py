"""One emulated fleet of 20 routers on the same release and platform, collected twice into a
real store with faults between the two rounds: what the consensus and dashboard tests read."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from collector.collect import CollectOptions, Collector
from collector.insights import AppraisalPolicy
from collector.store import Store
from fleet_setup import enroll_all
from emulator import facts as device_facts
from emulator.faults import Fault
from emulator.fleet import Fleet

DEVICES = 20
FILES = 20  # file-system inventory size: small keeps the fleet quick to start
NODE = "0/RP0/CPU0"
ITEMS = ("packages", "reboot-history", "rollback-history", "system-integrity-snapshot", "system-inventory",
         "filesystem-inventory")
POLICY = {
    "format": "trust-dossier/policy/1",
    "name": "dashboard-test",
    "rules": {
        "package-integrity": {"level": "enforce"},
        "certificates": {"level": "enforce"},
        "unexplained-file-changes": {"level": "warn"},
    },
}
from dashboard_fleet import HOSTILE_USER  # noqa: E402


@dataclasses.dataclass
class CollectedFleet:
    store: Path
    trust: Path
    #: Between the two rounds: every device was trusted then.
    before_faults: dt.datetime
    odd_device: str  # one package file changed behind the installer's back
    odd_file: str
    untrusted_device: str  # data altered after signing
    unreachable_device: str  # authentication fails
    hostile_device: str  # a commit by HOSTILE_USER
    devices: list[str]


def _same_software(fleet: Fleet) -> None:
    """Give every device the first one's release and packages (the emulator draws them per
    device), so that the fleet is one consensus group."""
    template = fleet.devices[0].device.facts
    for emulated in fleet.devices[1:]:
        device = emulated.device
        with device.lock:
            device.facts.xr_version = template.xr_version
            device.facts.packages[:] = copy.deepcopy(template.packages)
            device.save()


@pytest.fixture(scope="session")
def collected_fleet(tmp_path_factory: pytest.TempPathFactory) -> CollectedFleet:
    tmp = tmp_path_factory.mktemp("dashboard-fleet")
    with Fleet(state_dir=tmp / "fleet", devices=DEVICES, provisioned=True, key_type="ecdsa-p256",
               seed=20, files=FILES) as fleet:
        _same_software(fleet)
        inventory = tmp / "inventory.yaml"
        fleet.write_inventory(inventory)
        trust = tmp / "trust"
        devices = enroll_all(inventory, trust)
        store = Store.open(tmp / "store")
        options = CollectOptions(items=ITEMS, concurrency=8, policy=AppraisalPolicy.from_document(POLICY))
        collector = Collector(store, trust_store_path=trust, options=options)
        collector.run(devices)
        time.sleep(1.1)  # the "as of" moment falls strictly between the two rounds' seconds
        before_faults = dt.datetime.now(dt.UTC).replace(microsecond=0)
        time.sleep(1.1)

        names = [emulated.name for emulated in fleet.devices]
        odd, untrusted, unreachable, hostile = fleet.devices[6], names[2], names[10], fleet.devices[4]
        with odd.device.lock:
            inventory_of_node = odd.device.fsinv[NODE]
            odd_file = inventory_of_node.files_of_package(template_package(odd.device))[0]
            inventory_of_node.tamper_file(odd_file, odd.device.clock.timestamp())
            odd.device.save()
        with hostile.device.lock:
            device_facts.record_commit(hostile.device.facts, user=HOSTILE_USER, comment="\u202etxt.exe",
                                       now=hostile.device.clock.timestamp())
            hostile.device.save()
        for emulated in fleet.devices:
            emulated.device.advance_clock(3600)  # the next snapshot blocks come due (the tamper's too)
        fleet.set_fault(untrusted, Fault.DATA_CHANGED)
        fleet.set_fault(unreachable, Fault.AUTH_FAILURE)
        collector.run(devices)
        store.close()
    return CollectedFleet(tmp / "store", trust, before_faults, odd.name, odd_file, untrusted, unreachable,
                          hostile.name, names)


def template_package(device: object) -> str:
    """The full name of the boot image package (the one with most files)."""
    return device.facts.packages[0].full_name  # type: ignore[attr-defined]
