"""Collector: enroll devices and poll them over SSH for fresh signed dossiers.

Public API: `load_inventory`, `Store`, `collect`, `enroll` (see their modules); errors derive
from `CollectorError`.
"""

from __future__ import annotations

from importlib import import_module as _import_module
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = _metadata.version("trust-dossier")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: Where each public name lives. Imported on first use (PEP 562), so that importing one
#: submodule does not import paramiko and the rest of the collector.
_EXPORTS = {
    **dict.fromkeys(("AuthError", "CollectorError", "CommandError", "ConnectError", "DeadlineError",
                     "EnrollError", "HostKeyError", "InventoryError", "LockError", "RateLimitedError",
                     "StoreError"), "errors"),
    **dict.fromkeys(("Device", "Inventory", "load_inventory"), "inventory"),
    **dict.fromkeys(("EnvelopeRecord", "Store"), "store"),
    **dict.fromkeys(("CollectOptions", "Collector", "DeviceOutcome", "RunSummary"), "collect"),
    **dict.fromkeys(("EnrollResult", "RootCandidate", "enroll_root", "fetch_root"), "enroll"),
    "RunLock": "lock",
    "provision_device": "provision",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if name.isidentifier() and not name.startswith("_"):
            try:  # a submodule, as `import collector; collector.store` found it before
                return _import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from .collect import CollectOptions, Collector, DeviceOutcome, RunSummary
    from .enroll import EnrollResult, RootCandidate, enroll_root, fetch_root
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
    from .lock import RunLock
    from .provision import provision_device
    from .store import EnvelopeRecord, Store

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
    "provision_device",
]
