"""Fixtures for verifier tests: device PKIs with keys made once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vbuilder import NOW, Device  # noqa: E402


@pytest.fixture(scope="session")
def device() -> Device:
    """A P-256 device (the fast default)."""
    return Device("p256", "p256")


@pytest.fixture(scope="session")
def rsa_device() -> Device:
    return Device("rsa2048", "rsa2048")


@pytest.fixture(scope="session")
def now():
    return NOW
