"""What the service tests share (imported by name: `conftest` is ambiguous across test folders):
the devices of the collected fleet and what each went through, and the app over it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from emulator.fleet import Fleet

ITEMS = ("packages", "reboot-history", "system-inventory", "filesystem-inventory")
#: Trusted twice; tampered (data changed after signing) on the second poll; unreachable then.
GOOD, TAMPERED, UNREACHABLE = "xr-0001", "xr-0002", "xr-0003"


@dataclasses.dataclass
class Collected:
    """A store with two collections of a three-device fleet, and where its trust store is."""

    store_dir: Path
    trust: Path
    inventory: Path
    fleet: Fleet


def make_app(collected: Collected, **settings: Any) -> Any:
    from collector.service.app import create_app
    from collector.service.settings import ServiceSettings

    return create_app(ServiceSettings(store=collected.store_dir, trust_store=collected.trust,
                                      inventory=collected.inventory, **settings), start_collector=False)
