"""A fleet's trust set up for a test: the inventory loaded and each device's root enrolled.

Tests across tests/collector, insights, service, dashboard and adversarial start a fleet (the
emulator's or the fakes'), write its inventory and trust each device's root on first use, the
premise of a test that collects from the fleet it just started."""

from __future__ import annotations

from pathlib import Path

from collector.enroll import enroll_root, fetch_root
from collector.inventory import Device, load_inventory

__all__ = ["enroll_all"]


def enroll_all(inventory: Path, trust: Path) -> list[Device]:
    """Load `inventory` and enroll each device's root into the trust store `trust` (trust on
    first use: fetched from the device). Returns the inventory's devices."""
    devices = list(load_inventory(inventory).devices)
    for device in devices:
        enroll_root(trust, fetch_root(device), source="tofu")
    return devices
