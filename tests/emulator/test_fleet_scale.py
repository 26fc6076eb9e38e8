"""A thousand devices in one process, and the inventory the fleet writes for the collector."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import jsonschema
import pytest
import yaml

import schemas
from emu_ssh import run, strip_timestamp
from emulator.fleet import Fleet, FleetError


@pytest.mark.slow
def test_a_thousand_devices_in_one_process(tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())  # (other tests' threads may end meanwhile)
    with Fleet(state_dir=tmp_path / "state", devices=1000, files=50) as fleet:
        assert len({entry.port for entry in fleet.devices}) == 1000
        # One accept thread and one PKI expiry alert timer thread, each for all the devices.
        started = set(threading.enumerate()) - threads_before
        assert sorted(thread.name for thread in started) == ["emulator-accept", "pki-expiry-alerts"]
        for entry in random.Random(3).sample(fleet.devices, 5):
            assert "Cisco IOS XR" in strip_timestamp(run(entry, "show version"))
        fleet.write_inventory(tmp_path / "inventory.yaml")
    data = yaml.safe_load((tmp_path / "inventory.yaml").read_text())
    assert len(data["devices"]) == 1000


def test_inventory_validates_and_loads_in_the_collector(tmp_path: Path) -> None:
    from collector.inventory import load_inventory

    with Fleet(state_dir=tmp_path / "state", devices=3, files=50) as fleet:
        fleet.write_inventory(tmp_path / "inventory.yaml")
    data = yaml.safe_load((tmp_path / "inventory.yaml").read_text())
    jsonschema.validate(data, schemas.load("inventory"))
    inventory = load_inventory(tmp_path / "inventory.yaml")
    assert [device.name for device in inventory.devices] == ["xr-0001", "xr-0002", "xr-0003"]


def test_bad_fleet_options_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="unknown key type 'rsa1024'"):
        Fleet(state_dir=tmp_path, devices=1, key_type="rsa1024")
    with pytest.raises(FleetError, match="at least one device"):
        Fleet(state_dir=tmp_path, devices=0)
    with Fleet(state_dir=tmp_path / "a", devices=1, files=50) as first:
        taken = first.devices[0].port
        with pytest.raises(FleetError, match=f"cannot listen on 127.0.0.1:{taken}"):
            Fleet(state_dir=tmp_path / "b", devices=1, base_port=taken, files=50).start()
