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
from .collect import CollectOptions, Collector, DeviceOutcome, RunSummary, new_nonce
from .enroll import EnrollResult, RootCandidate, enroll_root, fetch_root
from .lock import RunLock
from .provision import provision_device

try:
    __version__ = _metadata.version("trust-dossier")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "AuthError",
    "CollectOptions",
    "Collector",
    "CollectorError",
    "CommandError",
    "ConnectError",
    "DeadlineError",
    "Device",
    "DeviceOutcome",
    "EnrollError",
    "EnrollResult",
    "EnvelopeRecord",
    "HostKeyError",
    "Inventory",
    "InventoryError",
    "LockError",
    "RateLimitedError",
    "RootCandidate",
    "RunLock",
    "RunSummary",
    "Store",
    "StoreError",
    "__version__",
    "enroll_root",
    "fetch_root",
    "load_inventory",
    "new_nonce",
    "provision_device",
]
