"""Constants shared by the vendor-profile tests (imported by name: conftest puts this folder on
sys.path, as tests/emulator_xe does)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

XE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "cisco-ios-xe"
SUDI_ANCHOR_FILES = ("crca2048.pem", "ACT2SUDICA.pem", "crca2099.pem", "hasudi.pem")
KGV_SIGNER_FILES = ("Known_Good_Values_PROD.pem", "innerspace.cer")
# inside every sample certificate's window (README: "Validation time and chain-building pitfalls")
AT = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
