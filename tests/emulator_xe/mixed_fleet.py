"""Trust for a mixed XR/XE emulated fleet, as an operator sets it up (shared by tests)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from collector.enroll import enroll_identity, enroll_root, fetch_root, fetch_sudi
from collector.inventory import Device
from emulator.fleet import Fleet
from verifier import TrustStore


def trust_mixed_fleet(fleet: Fleet, devices: Iterable[Device], trust: Path) -> None:
    """XR devices: their own root, fetched and trusted on first use. XE devices: the SUDI root
    and sub-CA pinned by hand (Cisco's, on a real fleet), then the device's own SUDI identity
    fetched and trusted on first use."""
    authority = fleet.sudi_authority()
    store = TrustStore.open(trust, create=True)
    for device in devices:
        if device.platform == "iosxr":
            enroll_root(trust, fetch_root(device), source="tofu")
        else:
            store.add_root(device.name, authority.root, source="manual")
            store.add_intermediate(device.name, authority.sub_ca)
            enroll_identity(trust, fetch_sudi(device, trust_store_path=trust), source="tofu")
