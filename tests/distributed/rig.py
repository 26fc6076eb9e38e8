"""A distributed collection rig: an emulated fleet, its inventory and trust store, a configuration,
and `dossier worker` / `dossier schedule` as real processes (shared by tests and bench/distributed.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import yaml

ROOT = Path(__file__).resolve().parents[2]
#: Worker heartbeat period in the rig: a killed worker is silent after three of them.
RIG_HEARTBEAT_S = 0.5
#: Redelivery of a dead worker's chunk after this; longer than any chunk of the rig takes.
RIG_VISIBILITY_S = 5.0


def start_fleet(state_dir: Path, devices: int, *, seed: int = 11) -> Any:
    """An emulated fleet of `devices` provisioned IOS XR routers (small file systems), started
    without the fsyncs of building their state (not under test)."""
    from functools import cache

    from emulator.fleet import Fleet
    from emulator.pki import keys

    fleet = Fleet(state_dir=state_dir, devices=devices, provisioned=True, key_type="ecdsa-p256", seed=seed, files=5)
    # Each device's boot-time RSA key (generated on start, ~0.1 s each) signs nothing collected
    # here: one key per size for the fleet.
    with mock.patch.object(os, "fsync", lambda fd: None), mock.patch.object(keys, "_rsa_key", cache(keys._rsa_key)):
        fleet.start()
    return fleet


def stop_fleet(fleet: Any) -> None:
    with mock.patch.object(os, "fsync", lambda fd: None):
        fleet.stop()


def write_inventory(path: Path, entries: list[dict[str, Any]], groups: dict[str, list[str]] | None = None) -> Path:
    """The inventory of `entries`, each device in the group that lists it."""
    member = {name: group for group, names in (groups or {}).items() for name in names}
    devices = [{**entry, **({"groups": [member[entry["name"]]]} if entry["name"] in member else {})}
               for entry in entries]
    document: dict[str, Any] = {"devices": devices}
    if groups:
        document["groups"] = {group: {} for group in groups}
    path.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    return path


def enroll(inventory: Path, trust: Path) -> None:
    from click.testing import CliRunner

    from dossier_cli.main import cli

    with mock.patch.object(os, "fsync", lambda fd: None):
        result = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(trust),
                                          "--trust-on-first-use", "--json"])
    assert result.exit_code == 0, result.output[-2000:]


def write_config(path: Path, *, broker_url: str, dsn: str, store: Path, trust: Path, inventory: Path,
                 **more: Any) -> Path:
    document = {"broker_url": broker_url, "database_dsn": dsn, "store": str(store), "trust_store": str(trust),
                "inventory": str(inventory), "heartbeat_s": RIG_HEARTBEAT_S, "visibility_timeout_s": RIG_VISIBILITY_S,
                **more}
    path.write_text(yaml.safe_dump(document), "utf-8")
    return path


@dataclass
class Processes:
    """Worker and scheduler processes started by the rig, stopped at the end."""

    config: Path
    logs: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT)}

    def worker(self, name: str, *queues: str, concurrency: int = 8) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "dossier_cli", "worker", "--config", str(self.config), "--name", name,
                "--concurrency", str(concurrency), *[arg for queue in queues for arg in ("--queue", queue)]]
        handle = open(self.logs / f"{name}.log", "wb")
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=self._env(), cwd=ROOT)
        self.started[name] = process
        return process

    def schedule_once(self) -> str:
        """Run `dossier schedule --once`; the run id it started."""
        done = subprocess.run([sys.executable, "-m", "dossier_cli", "schedule", "--config", str(self.config),
                               "--once"], capture_output=True, text=True, env=self._env(), cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        line = next(line for line in done.stdout.splitlines() if line.startswith("run "))
        return line.split()[1].rstrip(":")

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text("utf-8", "replace")

    def stop(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.started.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def processes(config: Path, logs: Path) -> Iterator[Processes]:
    logs.mkdir(parents=True, exist_ok=True)
    started = Processes(config, logs)
    try:
        yield started
    finally:
        started.stop()


def wait_for(condition: Any, timeout: float, what: str, *, every: float = 0.1) -> Any:
    """Poll `condition()` until it returns something true; its value. Fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {what} within {timeout} s, found it not so")
        time.sleep(every)
