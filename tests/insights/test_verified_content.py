"""Insights take their content only from what verification returns (issue 16, item 2).

Reproduced first: an envelope whose signed data starts with the device's timestamp line was
trusted by the verifier (which returns its dossier), but insights read the envelope again with
plain json.loads, saw "no trusted dossier", and the appraisal said contraindicated. And IOS XE
polls were never appraised.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from collector.collect import CollectOptions, Collector
from collector.insights import AppraisalPolicy
from collector.inventory import load_inventory
from collector.store import Store
from dossier_cli.main import cli
from emulator.faults import Fault
from emulator.fleet import Fleet
from mixed_fleet import trust_mixed_fleet

POLICY = {"format": "trust-dossier/policy/1", "name": "verified-content",
          "rules": {"secure-boot": {"level": "enforce"}, "boot-measurements": {"level": "enforce"}}}


def test_a_dossier_signed_after_the_timestamp_line_is_appraised_and_reported(rig_factory: Any,
                                                                            tmp_path: Path) -> None:
    rig = rig_factory(AppraisalPolicy.from_document(POLICY))
    rig.fleet.set_fault(rig.devices[0].name, Fault.TIMESTAMP_IN_DATA)
    first = rig.collect()
    second = rig.collect()
    assert first.status == second.status == "trusted", (second.reason, second.message)
    stored = sorted((rig.store.root / rig.devices[0].name).glob("*.envelope"))
    text = stored[-1].read_text()
    data = json.loads(text[text.index("{"):])["signed-envelope"]["data"]
    assert not data.startswith("{")  # the timestamp line is signed with the dossier
    assert second.appraisal is not None and second.appraisal["status"] == "affirming", second.appraisal
    report = CliRunner().invoke(cli, ["report", "--store", str(rig.store.root), "--trust-store", str(rig.trust),
                                      "--json"])
    assert report.exit_code == 0, report.output
    (device,) = json.loads(report.stdout)["devices"]
    assert device["status"] == "affirming"
    assert all("drift.content.not_compared" not in step["changes"] for step in device["timeline"])
    drift = CliRunner().invoke(cli, ["diff", "--store", str(rig.store.root), "--device", rig.devices[0].name,
                                     "--trust-store", str(rig.trust), "--json"])
    assert drift.exit_code == 0, drift.output
    assert "drift.content.not_compared" not in {f["id"] for f in json.loads(drift.stdout)["findings"]}


def test_ios_xe_polls_are_appraised_from_their_verified_measurements(tmp_path: Path) -> None:
    with Fleet(state_dir=tmp_path / "fleet", devices=1, platform="iosxe", files=20) as fleet:
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        (device,) = load_inventory(inventory).devices
        trust = tmp_path / "truststore"
        trust_mixed_fleet(fleet, [device], trust)
        store = Store.open(tmp_path / "store")
        collector = Collector(store, trust_store_path=trust,
                              options=CollectOptions(policy=AppraisalPolicy.from_document(POLICY)))
        baseline = collector.run([device]).outcomes[0]
        emulated = fleet.devices[0].device
        identity = emulated.xe_identity()
        with emulated.lock:  # the boot loader measures differently, the release did not change
            identity.facts = dataclasses.replace(identity.facts, boot_loader_hash="AB" * (len(
                identity.facts.boot_loader_hash) // 2))
        changed = collector.run([device]).outcomes[0]
    assert baseline.status == changed.status == "trusted", (changed.reason, changed.message)
    assert baseline.appraisal["status"] == "affirming", baseline.appraisal
    assert changed.appraisal["status"] == "contraindicated", changed.appraisal
    result = CliRunner().invoke(cli, ["appraise", "--store", str(tmp_path / "store"), "--trust-store", str(trust),
                                      "--policy", str(_policy_file(tmp_path)), "--json"])
    (appraised,) = json.loads(result.stdout)["appraisals"]
    assert appraised["status"] == "contraindicated"
    assert "appraisal.boot.pcr_unexplained_change" in {f["id"] for f in appraised["findings"]}
    assert "secure-boot (not in IOS XE evidence)" in appraised["skipped_rules"]


def _policy_file(folder: Path) -> Path:
    import yaml

    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY))
    return path
