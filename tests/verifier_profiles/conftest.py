"""Fixtures for the vendor-profile tests: the real Cisco samples and Cisco's public CA
certificates, read from ../shared/vectors (never copied into the project)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parent))  # vp_helpers (pyproject's pythonpath is not ours)

from vp_helpers import SUDI_ANCHOR_FILES, KGV_SIGNER_FILES  # noqa: E402


@pytest.fixture(scope="session")
def xe_dir(vectors_dir: Path) -> Path:
    path = vectors_dir / "cisco-ios-xe"
    if not path.is_dir():
        pytest.skip(f"IOS XE samples not found at {path}")
    return path


@pytest.fixture(scope="session")
def expected(xe_dir: Path) -> dict[str, dict[str, Any]]:
    return {entry["file"]: entry for entry in json.loads((xe_dir / "expected.json").read_text())}


@pytest.fixture(scope="session")
def sudi_anchors(xe_dir: Path) -> list[x509.Certificate]:
    """Cisco Root CA 2048 + ACT2 SUDI CA and Root CA 2099 + High Assurance SUDI CA."""
    return [x509.load_pem_x509_certificate((xe_dir / "certs" / name).read_bytes()) for name in SUDI_ANCHOR_FILES]


@pytest.fixture(scope="session")
def root_m2(xe_dir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((xe_dir / "certs" / "crcam2.pem").read_bytes())


@pytest.fixture(scope="session")
def kgv_signer(xe_dir: Path) -> bytes:
    return b"\n".join((xe_dir / "certs" / name).read_bytes() for name in KGV_SIGNER_FILES)
