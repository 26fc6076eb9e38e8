"""Fixtures for emulator tests: fleets on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from emulator.fleet import Fleet
from scep_ca import ScepCa, ScepServer

# The challenge password the loopback SCEP CA expects.
SCEP_CHALLENGE = "enroll-me-7"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two provisioned devices (ECDSA P-256), small file inventories."""
    with Fleet(state_dir=tmp_path_factory.mktemp("fleet"), devices=2, provisioned=True,
               key_type="ecdsa-p256", files=200, seed=7) as running:
        yield running


@pytest.fixture()
def blank_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """One device that is not provisioned: no keys, no trustpoint."""
    with Fleet(state_dir=tmp_path / "state", devices=1, files=100) as running:
        yield running


@pytest.fixture()
def scep_ca() -> Iterator[tuple[ScepCa, str]]:
    """A loopback SCEP CA (tests/emulator/scep_ca.py) and its URL."""
    ca = ScepCa(challenge_password=SCEP_CHALLENGE)
    with ScepServer(ca) as url:
        yield ca, url
