"""The checked-in samples, and the script that regenerates them, meet their declared verdicts."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from verifier import TrustStore, verify_envelope

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def check_folder(folder: Path) -> None:
    expected = json.loads((folder / "expected.json").read_text())
    store = TrustStore.open(folder / "trust-store")
    assert sorted(p.name.removesuffix(".envelope") for p in (folder / "envelopes").glob("*.envelope")) == sorted(expected)
    for scenario, want in expected.items():
        path = folder / "envelopes" / f"{scenario}.envelope"
        meta = json.loads(path.with_name(path.name + ".meta.json").read_text())
        received = dt.datetime.fromisoformat(meta["received"].replace("Z", "+00:00"))
        verdict = verify_envelope(path.read_bytes(), trust_store=store, device=meta["device"],
                                  expected_nonce=bytes.fromhex(meta["nonce"]), at=received)
        ids = [finding.id for finding in verdict.findings]
        assert verdict.trusted is want["trusted"], (scenario, verdict.findings)
        if want["finding"]:
            assert want["finding"] in ids, (scenario, ids)


def test_checked_in_samples_meet_their_expected_verdicts() -> None:
    check_folder(SAMPLES)


@pytest.mark.slow
def test_make_samples_regenerates_a_consistent_set(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(SAMPLES / "make_samples.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    check_folder(tmp_path)


def test_sample_inventory_loads() -> None:
    from collector.inventory import load_inventory

    inventory = load_inventory(SAMPLES / "inventory.yaml")
    assert [device.name for device in inventory.devices] == ["pe1", "pe2"]
