"""Fixtures for service tests: a small emulated fleet collected twice into a real store (one
device tampered, one unreachable on the second poll), and the service app over it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sys

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from collector.collect import CollectOptions, Collector
from collector.enroll import enroll_root, fetch_root
from collector.inventory import load_inventory
from collector.store import Store
from emulator.faults import Fault
from emulator.fleet import Fleet  # noqa: E402

from service_rig import GOOD, ITEMS, TAMPERED, UNREACHABLE  # noqa: E402


@dataclasses.dataclass
class Collected:
    """A store with two collections of a three-device fleet, and where its trust store is."""

    store_dir: Path
    trust: Path
    inventory: Path
    fleet: Fleet


@pytest.fixture(scope="session")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collected]:
    root = tmp_path_factory.mktemp("service")
    fleet = Fleet(state_dir=root / "fleet", devices=3, provisioned=True, key_type="ecdsa-p256", seed=7, files=12)
    fleet.start()
    try:
        inventory = root / "inventory.yaml"
        fleet.write_inventory(inventory)
        devices = load_inventory(inventory).devices
        trust = root / "trust"
        for device in devices:
            enroll_root(trust, fetch_root(device), source="tofu")
        store = Store.open(root / "store")
        options = CollectOptions(items=ITEMS, retries=0)
        Collector(store, trust_store_path=trust, options=options).run(devices)
        fleet.set_fault(TAMPERED, Fault.DATA_CHANGED)
        fleet.set_fault(UNREACHABLE, Fault.AUTH_FAILURE)
        Collector(store, trust_store_path=trust, options=options).run(devices)
        store.close()
        yield Collected(root / "store", trust, inventory, fleet)
    finally:
        fleet.stop()


def make_app(collected: Collected, **settings: Any) -> Any:
    from collector.service.app import create_app
    from collector.service.settings import ServiceSettings

    return create_app(ServiceSettings(store=collected.store_dir, trust_store=collected.trust,
                                      inventory=collected.inventory, **settings), start_collector=False)


@pytest.fixture(scope="session")
def app(collected: Collected) -> Any:
    return make_app(collected)


@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client
