"""Fixtures for service tests: a small emulated fleet collected twice into a real store (one
device tampered, one unreachable on the second poll), and the service app over it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.collect import CollectOptions, Collector
from collector.store import Store
from fleet_setup import enroll_all
from emulator.faults import Fault
from emulator.fleet import Fleet

sys.path.insert(0, str(Path(__file__).parent))

from service_rig import ITEMS, TAMPERED, UNREACHABLE, Collected, make_app  # noqa: E402


@pytest.fixture(scope="session")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collected]:
    root = tmp_path_factory.mktemp("service")
    fleet = Fleet(state_dir=root / "fleet", devices=3, provisioned=True, key_type="ecdsa-p256", seed=7, files=12)
    fleet.start()
    try:
        inventory = root / "inventory.yaml"
        fleet.write_inventory(inventory)
        trust = root / "trust"
        devices = enroll_all(inventory, trust)
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


@pytest.fixture(scope="session")
def app(collected: Collected) -> Any:
    return make_app(collected)


@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client
