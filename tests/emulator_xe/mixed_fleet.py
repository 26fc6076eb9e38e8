"""Trust for a mixed XR/XE emulated fleet, as an operator sets it up (shared by tests)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from collector.enroll import enroll_root, fetch_root
from collector.inventory import Device
from emulator.fleet import Fleet
from verifier import TrustStore


def trust_mixed_fleet(fleet: Fleet, devices: Iterable[Device], trust: Path) -> None:
    """XR devices: their own root, fetched and trusted on first use. XE devices: the SUDI root
    and sub-CA pinned by hand (Cisco's, on a real fleet)."""
    authority = fleet.sudi_authority()
    store = TrustStore.open(trust, create=True)
    for device in devices:
        if device.platform == "iosxr":
            enroll_root(trust, fetch_root(device), source="tofu")
        else:
            store.add_root(device.name, authority.root, source="manual")
            store.add_intermediate(device.name, authority.sub_ca)
