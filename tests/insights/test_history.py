"""Histories built on the real emulator: each change to a device shows up as its drift finding
id and moves the appraisal status as the policy says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collector.alerts import render_metrics
from collector.insights import AppraisalPolicy, Status, StoredVerdicts, replay
from emulator import facts as device_facts
from emulator.faults import Fault

HOUR = 3600


def _policy(device: Any) -> AppraisalPolicy:
    facts = device.facts
    users = sorted({c.user_id for c in facts.commits})
    return AppraisalPolicy.from_document({
        "format": "trust-dossier/policy/1",
        "name": "history-test",
        "rules": {
            "software-versions": {"level": "enforce", "allowed": [facts.xr_version]},
            "package-integrity": {"level": "enforce"},
            "unexplained-file-changes": {"level": "enforce"},
            "secure-boot": {"level": "enforce"},
            "boot-measurements": {"level": "warn"},
            "hardware-changes": {"level": "warn"},
            "reboots": {"level": "warn", "max": 0, "period-days": 1},
            "commit-users": {"level": "enforce", "allowed": users},
            "certificates": {"level": "enforce"},
            "forbidden-packages": {"level": "skip", "packages": ["none"]},
        },
    })


def _mutate(rig: Any, change: Any, *, advance: bool) -> None:
    device = rig.device
    with device.lock:
        change(device)
        device.save()
    if advance:
        device.advance_clock(HOUR + 60)  # the next snapshot block comes due


def test_every_change_is_a_finding_with_the_right_status(rig_factory: Any, tmp_path: Path) -> None:
    rig = rig_factory(None)
    rig.policy = _policy(rig.device)
    facts = rig.device.facts
    node = facts.active_node
    package = next(p for p in facts.packages if p is not facts.boot_package)
    other = next(p for p in facts.packages if p is not facts.boot_package and p is not package)
    # With a small inventory only the boot package owns files; it is not the one upgraded.
    victim = rig.device.fsinv[node].files_of_package(facts.boot_package.full_name)[0]
    part = next(e.name for e in facts.inventory if e.name.startswith("0/FT"))

    steps: list[tuple[str, Any, set[str], Status]] = [
        ("baseline", None, set(), Status.AFFIRMING),
        ("leaf re-keyed", lambda d: rig.fleet.set_fault(rig.devices[0].name, Fault.REKEYED_LEAF),
         {"drift.cert.leaf_rekeyed"}, Status.AFFIRMING),
        ("upgrade", lambda d: device_facts.upgrade_package(d.facts, package.name, "99.1.0"),
         {"drift.package.version_changed"}, Status.AFFIRMING),
        ("tamper file", lambda d: d.fsinv[node].tamper_file(victim, d.clock.timestamp()),
         {"drift.file.modified"}, Status.CONTRAINDICATED),
        ("reboot", lambda d: device_facts.record_reboot(d.facts, cause_code="0x2000063",
                                                        reason="Cause: User initiated reload",
                                                        now=d.clock.timestamp()),
         {"drift.reboot.new"}, Status.WARNING),
        ("commit", lambda d: device_facts.record_commit(d.facts, user="mallory", now=d.clock.timestamp()),
         {"drift.config.commit"}, Status.CONTRAINDICATED),
        ("swap part", lambda d: device_facts.swap_part(d.facts, part),
         {"drift.hardware.part_swapped"}, Status.WARNING),
        ("tamper package", lambda d: device_facts.tamper_package(d.facts, other.name),
         {"drift.package.runtime_mismatch", "drift.boot.ima_aggregate_changed"}, Status.CONTRAINDICATED),
        ("secure boot off", lambda d: device_facts.set_secure_boot(d.facts, False),
         {"drift.boot.secure_boot_changed", "drift.boot.pcr_changed"}, Status.CONTRAINDICATED),
        ("root replaced", lambda d: rig.fleet.set_fault(rig.devices[0].name, Fault.ROOT_REPLACED),
         {"drift.cert.root_changed"}, Status.CONTRAINDICATED),
    ]
    seen: list[tuple[str, set[str], str]] = []
    for name, change, _, _ in steps:
        if change is not None:
            # Certificates are issued at the device's time: re-key before its clock runs ahead
            # of the collector's, or the new leaf would not be valid yet when verified.
            _mutate(rig, change, advance=name != "leaf re-keyed")
        outcome = rig.collect()
        seen.append((name, outcome.status, outcome.appraisal))
        assert outcome.status == ("untrusted" if name == "root replaced" else "trusted"), (name, outcome.message)
    history = list(replay(rig.store, StoredVerdicts(rig.store, rig.trust), rig.devices[0].name))
    assert len(history) == len(steps)
    for (name, _, expected_ids, expected_status), step, (_, status, appraisal) in zip(steps, history, seen):
        drift_ids = {str(f.id) for f in step.drift}
        assert expected_ids <= drift_ids, (name, drift_ids)
        assert appraisal["status"] == str(expected_status), (name, appraisal, status)
        stored = rig.store.appraisal(step.record)
        assert stored is not None and stored["status"] == str(expected_status)
        assert set(expected_ids) <= set(stored["drift_counts"]), name
    # Specific appraisal ids behind the statuses.
    by_name = {name: rig.store.appraisal(step.record) for (name, *_), step in zip(steps, history)}

    def ids(name: str) -> set[str]:
        return {f["id"] for f in by_name[name]["findings"]}

    assert "appraisal.file.unexplained_change" in ids("tamper file")
    assert "appraisal.boot.reboots_over_limit" in ids("reboot")
    assert "appraisal.config.user_not_allowed" in ids("commit")
    assert "appraisal.hardware.changed" in ids("swap part")
    assert "appraisal.package.runtime_mismatch" in ids("tamper package")
    assert "appraisal.boot.secure_boot_disabled" in ids("secure boot off")
    assert "appraisal.identity.untrusted" in ids("root replaced")
    assert by_name["root replaced"]["trust_vector"]["instance-identity"] == "contraindicated"
    assert by_name["baseline"]["skipped_rules"] == ["forbidden-packages"]
    # Degradation alerts: each time the device went from affirming to worse.
    degraded = [a.message for a in rig.alerts.sent if "TRUST_DEGRADED" in a.message]
    assert len(degraded) == 1, degraded  # only the tampered file left affirming; later steps start worse
    assert "affirming -> contraindicated" in degraded[0]
    metrics = render_metrics(rig.store.states())
    assert 'dossier_appraisal_status{device="xr-0001"} 2' in metrics
    assert 'dossier_appraisal_degradations_total{device="xr-0001"} 1' in metrics


def test_file_state_cache_gives_the_same_drift_as_a_replay(rig_factory: Any) -> None:
    from collector.insights import appraise_record

    rig = rig_factory(None)
    rig.policy = _policy(rig.device)
    node = rig.device.facts.active_node
    victim = rig.device.fsinv[node].files_of_package(rig.device.facts.boot_package.full_name)[1]
    rig.collect()
    _mutate(rig, lambda d: d.fsinv[node].tamper_file(victim, d.clock.timestamp()), advance=True)
    rig.collect()
    newest = rig.store.history(rig.devices[0].name)[0]
    cached = rig.store.appraisal(newest)
    state_file = rig.store.root / "state" / f"{rig.devices[0].name}.files-state"
    assert state_file.exists()
    state_file.unlink()
    replayed = appraise_record(rig.store, StoredVerdicts(rig.store, rig.trust), newest, rig.policy).to_json()
    assert replayed["drift_counts"] == cached["drift_counts"]
    assert victim in {f["subject"] for f in replayed["drift"] if f["id"] == "drift.file.modified"}
    assert replayed["status"] == cached["status"] == "contraindicated"
