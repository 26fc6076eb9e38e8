"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = PROJECT_ROOT.parent / "shared"
VECTORS = SHARED / "vectors"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """`../shared/vectors`, or skip with the reason when this checkout has no shared/ beside it."""
    if not VECTORS.is_dir():
        pytest.skip(f"external test vectors not found at {VECTORS}")
    return VECTORS
