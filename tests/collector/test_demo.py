"""`dossier demo`: the main job runs on the embedded fleet and every verdict is the expected one."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from dossier_cli.main import cli


def test_demo_runs_and_catches_both_faults(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    document = json.loads(result.stdout)
    assert document["as_expected"] is True
    statuses = {d["device"]: (d["status"], d["reason"]) for d in document["summary"]["devices"]}
    assert statuses["xr-0004"] == ("untrusted", "signature.invalid")
    assert statuses["xr-0005"] == ("untrusted", "nonce.mismatch")
    assert [statuses[f"xr-000{i}"][0] for i in (1, 2, 3)] == ["trusted"] * 3
    assert len(set(document["key_types"].values())) >= 3  # mixed key types
    assert len(list((out / "store").rglob("*.envelope"))) == 5
    assert (out / "metrics.prom").read_text().count("dossier_last_verdict_trusted{") == 5
    # A second run reuses the same devices and roots and adds a collection.
    again = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    assert again.exit_code == 0, again.output[-3000:]
    assert "every verdict is the expected one" in again.stdout
    assert len(list((out / "store").rglob("*.envelope"))) == 10
