"""Fixtures for the IOS XE personality tests: XE and mixed fleets on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from emulator.fleet import Fleet

@pytest.fixture(scope="session")
def xe_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Four IOS XE devices, one per emulated platform layout (seed picks it: index mod 4).
    One per worker (RSA-2048 SUDI keys); a test that sets a fault clears it before it ends."""
    with Fleet(state_dir=tmp_path_factory.mktemp("xe"), devices=4, platform="iosxe", files=50) as running:
        yield running


@pytest.fixture(scope="session")
def xe_anchors(xe_fleet: Fleet) -> tuple[bytes, bytes]:
    """DER of the fleet's emulated SUDI root and sub-CA: what a verifier pins."""
    from cryptography.hazmat.primitives.serialization import Encoding

    authority = xe_fleet.sudi_authority()
    return authority.root.public_bytes(Encoding.DER), authority.sub_ca.public_bytes(Encoding.DER)


@pytest.fixture(scope="session")
def cisco_xe_dir(vectors_dir: Path) -> Path:
    path = vectors_dir / "cisco-ios-xe"
    if not path.is_dir():
        pytest.skip(f"IOS XE samples not found at {path}")
    return path
