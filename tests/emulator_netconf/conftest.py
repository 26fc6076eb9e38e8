"""One small fleet with NETCONF agents for every test here (session-scoped: start it once)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from emulator.device import hash_secret
from emulator.fleet import Fleet
from emulator.tpm.swtpm import swtpm_available
from nc_helpers import VIEWER, VIEWER_PASSWORD


@pytest.fixture(scope="session")
def nc_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two IOS XR devices with `netconf-yang agent ssh`: xr-0001's TPM is the built-in model,
    xr-0002's a real swtpm (when installed); xr-0001 also has a user in the built-in `operator`
    group (reads system state, not crypto: attestation is denied)."""
    with Fleet(state_dir=tmp_path_factory.mktemp("nc-fleet"), devices=2, files=200, seed=11,
               netconf=True, swtpm=("xr-0002",) if swtpm_available() else ()) as fleet:
        device = fleet["xr-0001"].device
        user = device.running.set(f"username {VIEWER}", f"username {VIEWER}", submode=True)
        user.set("group operator", "group operator")
        user.set(f"secret 10 {hash_secret(VIEWER_PASSWORD)}", "secret")
        yield fleet


@pytest.fixture()
def faulty(nc_fleet: Fleet) -> Iterator[str]:
    """xr-0002, with every fault a test sets on it cleared afterwards."""
    yield "xr-0002"
    nc_fleet.clear_faults("xr-0002")


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    return tmp_path
