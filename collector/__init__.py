"""Collector: enroll devices and poll them over SSH for fresh signed dossiers.

Public API: `load_inventory`, `Store`, `collect`, `enroll` (see their modules); errors derive
from `CollectorError`.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from .errors import (
    AuthError,
    CollectorError,
    CommandError,
    ConnectError,
    DeadlineError,
    EnrollError,
    HostKeyError,
    InventoryError,
    LockError,
    RateLimitedError,
    StoreError,
)
from .inventory import Device, Inventory, load_inventory
from .store import EnvelopeRecord, Store

try:
    __version__ = _metadata.version("trust-dossier")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "AuthError",
    "CollectorError",
    "CommandError",
    "ConnectError",
    "DeadlineError",
    "Device",
    "EnrollError",
    "EnvelopeRecord",
    "HostKeyError",
    "Inventory",
    "InventoryError",
    "LockError",
    "RateLimitedError",
    "Store",
    "StoreError",
    "__version__",
    "load_inventory",
]
