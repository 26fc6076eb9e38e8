"""Nothing goes quiet unnoticed: devices no worker attempted for too long, workers that stopped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..inventory import load_inventory
from .config import SILENT_HEARTBEATS, STALE_INTERVALS, DistributedConfig

__all__ = ["Quiet", "check_quiet", "find_quiet"]


@dataclass(frozen=True)
class Quiet:
    """Devices not attempted for more than STALE_INTERVALS intervals (name -> last attempt,
    None: never), workers silent for more than SILENT_HEARTBEATS beats (name -> last beat), and
    every device's last attempt."""

    not_attempted: dict[str, datetime | None]
    silent_workers: dict[str, datetime]
    attempts: dict[str, datetime | None]


def find_quiet(config: DistributedConfig, coordination: Any) -> Quiet:
    devices = [device.name for device in load_inventory(config.inventory).devices]
    attempts = coordination.attempts()
    stale = coordination.stale_devices(devices, intervals=STALE_INTERVALS, interval_s=config.interval_s)
    silent = {beat.worker: beat.beat for beat in coordination.silent_workers(beats=SILENT_HEARTBEATS)}
    return Quiet(stale, silent, {device: attempts[device].attempted if device in attempts else None
                                 for device in devices})


def check_quiet(config: DistributedConfig, coordination: Any, alerts: Any, metrics_file: Path | None) -> Quiet:
    """Alert on (and write metrics of) what went quiet. A device never attempted is named only
    once the fleet's first run is more than STALE_INTERVALS intervals old: a new fleet is not late."""
    from ..alerts import write_metrics

    quiet = find_quiet(config, coordination)
    ever_attempted = any(moment is not None for moment in quiet.attempts.values())
    for device, last in sorted(quiet.not_attempted.items()):
        if last is not None or ever_attempted:
            alerts.not_attempted(device, last, STALE_INTERVALS)
    for worker, beat in sorted(quiet.silent_workers.items()):
        alerts.worker_silent(worker, beat)
    if metrics_file is not None:
        write_metrics(metrics_file, {}, attempts=quiet.attempts, not_attempted=quiet.not_attempted,
                      silent_workers=quiet.silent_workers)
    return quiet
