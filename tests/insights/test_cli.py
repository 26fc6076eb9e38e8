"""`dossier diff`, `dossier appraise`, `dossier collect --policy` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from click.testing import CliRunner

import schemas
from dossier_cli.main import cli
from emulator import facts as device_facts

POLICY_YAML = """\
format: trust-dossier/policy/1
name: cli-test
rules:
  secure-boot: {level: enforce}
  hardware-changes: {level: warn}
"""


def _history(rig: Any) -> list[Path]:
    """Three collections: baseline, a swapped part (+ a new file block), secure boot off."""
    rig.collect()
    device = rig.device
    with device.lock:
        device_facts.swap_part(device.facts, device.facts.inventory[-1].name)
        device.save()
    device.advance_clock(3700)
    rig.collect()
    with device.lock:
        device_facts.set_secure_boot(device.facts, False)
        device.save()
    rig.collect()
    return sorted((rig.store.root / rig.devices[0].name).glob("*.envelope"))


def test_diff_appraise_and_collect_policy(rig_factory: Any, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY_YAML)
    rig = rig_factory(None)
    envelopes = _history(rig)
    store, name = str(rig.store.root), rig.devices[0].name
    runner = CliRunner()

    # Two envelope files, verified with the trust store (their .meta.json gives nonce and device).
    both = runner.invoke(cli, ["diff", str(envelopes[0]), str(envelopes[1]), "--trust-store", str(rig.trust), "--json"])
    assert both.exit_code == 0, both.output
    ids = {f["id"] for f in json.loads(both.stdout)["findings"]}
    assert "drift.hardware.part_swapped" in ids and "drift.input.unverified" not in ids
    # Without a trust store nothing is compared: content only ever comes from a verification.
    loose = runner.invoke(cli, ["diff", str(envelopes[0]), str(envelopes[1]), "--trust-store",
                                str(tmp_path / "none"), "--json"])
    assert loose.exit_code == 2 and "trust store" in loose.output
    trust = ["--trust-store", str(rig.trust)]
    # From the store: secure boot turned off is an error-severity change: exit 1.
    last = runner.invoke(cli, ["diff", "--store", store, "--device", name, *trust, "--json"])
    assert last.exit_code == 1, last.output
    assert "drift.boot.secure_boot_changed" in {f["id"] for f in json.loads(last.stdout)["findings"]}
    whole = runner.invoke(cli, ["diff", "--store", store, "--device", name, "--from", "0", "--to", "-1", *trust,
                                "--json"])
    ids = {f["id"] for f in json.loads(whole.stdout)["findings"]}
    assert {"drift.hardware.part_swapped", "drift.boot.secure_boot_changed"} <= ids
    table = runner.invoke(cli, ["diff", "--store", store, "--device", name, *trust])
    assert "change(s)" in table.output
    bad_ref = runner.invoke(cli, ["diff", "--store", store, "--device", name, "--from", "7", *trust])
    assert bad_ref.exit_code == 2 and "expected a position between -3 and 2" in bad_ref.output
    assert runner.invoke(cli, ["diff", str(envelopes[0])]).exit_code == 2

    # Appraise the whole history afterwards, then status shows the newest.
    appraised = runner.invoke(cli, ["appraise", "--store", store, "--policy", str(policy_file), "--history", *trust,
                                    "--json"])
    assert appraised.exit_code == 1, appraised.output
    results = json.loads(appraised.stdout)["appraisals"]
    assert [r["status"] for r in results] == ["affirming", "warning", "contraindicated"]
    for result in results:
        jsonschema.validate(result, schemas.load("appraisal"))
    status = runner.invoke(cli, ["status", "--store", store, "--json", "--trust-store", str(rig.trust)])
    assert json.loads(status.stdout)["devices"][0]["appraisal"] == "contraindicated"

    # collect --policy with an empty policy: a usage error, nothing collected.
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    inventory = tmp_path / "inventory.yaml"
    refused = runner.invoke(cli, ["collect", "-i", str(inventory), "--store", store, "--trust-store",
                                  str(rig.trust), "--policy", str(empty)])
    assert refused.exit_code == 2 and "empty policy" in refused.output
    collected = runner.invoke(cli, ["collect", "-i", str(inventory), "--store", store, "--trust-store",
                                    str(rig.trust), "--policy", str(policy_file), "--json"])
    outcome = json.loads(collected.stdout)["devices"][0]
    assert outcome["status"] == "trusted" and outcome["appraisal"]["status"] == "contraindicated"
    assert outcome["appraisal"]["trust_vector"]["boot"] == "contraindicated"
    assert len(list((rig.store.root / name).glob("*.appraisal.json"))) == 4


def test_degradation_goes_to_syslog_and_metrics_and_survives_reindex(rig_factory: Any, tmp_path: Path) -> None:
    import socket

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY_YAML)
    rig = rig_factory(None)
    store, inventory = str(rig.store.root), str(tmp_path / "inventory.yaml")
    base = ["collect", "-i", inventory, "--store", store, "--trust-store", str(rig.trust), "--policy",
            str(policy_file), "--metrics-file", str(tmp_path / "dossier.prom")]
    runner = CliRunner()
    assert runner.invoke(cli, base).exit_code == 0
    with rig.device.lock:
        device_facts.set_secure_boot(rig.device.facts, False)
        rig.device.save()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(10)
        port = listener.getsockname()[1]
        result = runner.invoke(cli, base + ["--syslog", f"127.0.0.1:{port}"])
        assert result.exit_code == 0, result.output  # collected and trusted; the appraisal is worse
        message = listener.recv(4096).decode()
    assert "%DOSSIER-3-TRUST_DEGRADED" in message and "affirming -> contraindicated" in message
    assert "appraisal.boot.secure_boot_disabled" in message
    metrics = (tmp_path / "dossier.prom").read_text()
    assert 'dossier_appraisal_status{device="xr-0001"} 2' in metrics
    # The index is rebuildable from the files, appraisals included.
    (rig.store.root / "index.sqlite").unlink()
    assert runner.invoke(cli, ["store", "reindex", "--store", store, "--trust-store", str(rig.trust)]).exit_code == 0
    status = json.loads(runner.invoke(cli, ["status", "--store", store, "--json", "--trust-store", str(rig.trust)]).stdout)
    assert status["devices"][0]["appraisal"] == "contraindicated"
