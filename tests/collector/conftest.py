"""Fixtures for collector tests: real files, a real loopback SSH server, real keys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from collector_fakes import DevicePki, make_pki  # noqa: E402


@pytest.fixture(scope="session")
def pki() -> DevicePki:
    """One ECDSA P-256 root + leaf, shared: key generation is the slow part."""
    return make_pki("xr-test")
