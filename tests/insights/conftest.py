"""Fixtures for insights tests: a one-device emulator fleet collected into a real store."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.alerts import AlertSink
from collector.collect import CollectOptions, Collector, DeviceOutcome
from collector.enroll import enroll_root, fetch_root
from collector.inventory import load_inventory
from collector.store import Store
from emulator.fleet import Fleet

ALL_ITEMS = ("packages", "reboot-history", "rollback-history", "system-integrity-snapshot",
             "system-inventory", "filesystem-inventory")
SMALL_FILES = 20  # file-system inventory size: small keeps the fleet quick to start


@dataclasses.dataclass
class Rig:
    """A running fleet, its inventory devices, a store and a collector that appraises."""

    fleet: Fleet
    devices: list[Any]
    store: Store
    trust: Path
    alerts: AlertSink
    policy: Any

    def collect(self, policy: Any = None) -> DeviceOutcome:
        options = CollectOptions(items=ALL_ITEMS, policy=policy if policy is not None else self.policy)
        collector = Collector(self.store, trust_store_path=self.trust, options=options, alerts=self.alerts)
        return collector.run(self.devices).outcomes[0]

    @property
    def device(self) -> Any:
        return self.fleet.devices[0].device


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(policy: Any, *, seed: int = 5, files: int = SMALL_FILES) -> Rig:
        fleet = Fleet(state_dir=tmp_path / "fleet", devices=1, provisioned=True, key_type="ecdsa-p256",
                      seed=seed, files=files)
        fleet.start()
        fleets.append(fleet)
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        devices = load_inventory(inventory).devices
        trust = tmp_path / "trust"
        enroll_root(trust, fetch_root(devices[0]), source="tofu")
        return Rig(fleet, devices, Store.open(tmp_path / "store"), trust, AlertSink(), policy)

    yield make
    for fleet in fleets:
        fleet.stop()


#: Browsers looked for, Debian's first (.ci/run installs `chromium`).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Set by .ci/run: there a missing browser fails the browser tests instead of skipping them.
REQUIRE_BROWSER_ENV = "DOSSIER_REQUIRE_BROWSER"
#: Headless Chromium needs these where it runs as root in a container without a GPU, and so that
#: it reaches for no network (the page is one local file) and starts in about a second.
_HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--window-size=1400,2000")
#: A page of this project renders in about a second; far longer is a hung browser.
BROWSER_TIMEOUT_S = 60


@dataclasses.dataclass
class HeadlessBrowser:
    """Headless Chromium in its own screenshot and DOM-dump modes, with a fresh profile."""

    executable: str
    profile: Path

    def _run(self, page: Path, mode: str) -> str:
        done = subprocess.run([self.executable, *_HEADLESS_FLAGS, f"--user-data-dir={self.profile}", mode,
                               page.resolve().as_uri()],
                              check=True, timeout=BROWSER_TIMEOUT_S, capture_output=True, text=True)
        return done.stdout

    def dom(self, page: Path) -> str:
        """The page's DOM as the browser rendered it (after its script ran)."""
        return self._run(page, "--dump-dom")

    def screenshot(self, page: Path, png: Path) -> Path:
        self._run(page, f"--screenshot={png}")
        return png


@pytest.fixture
def headless_browser(tmp_path: Path) -> HeadlessBrowser:
    executable = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if executable is None:
        why = f"no headless browser on this machine (looked for {', '.join(BROWSERS)})"
        if os.environ.get(REQUIRE_BROWSER_ENV):
            pytest.fail(f"{why}; ${REQUIRE_BROWSER_ENV} is set (.ci/run installs Debian's chromium)")
        pytest.skip(f"{why}; .ci/run installs Debian's chromium")
    return HeadlessBrowser(executable, tmp_path / "browser-profile")
