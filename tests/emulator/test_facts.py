"""Device facts: deterministic per device, realistic, persistent, and mutable like a router."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.facts import (
    CAUSE_USER_RELOAD,
    FIRST_COMMIT_ID,
    PLATFORM_PIDS,
    REBOOT_HISTORY_LIMIT,
    ContentError,
    DeviceFacts,
    FactsError,
    make_facts,
    node_integrity,
    record_commit,
    record_reboot,
    set_failing_items,
    set_secure_boot,
    swap_part,
    tamper_package,
    upgrade_package,
    xr_time,
)
from emulator.showtext import license_udi, show_version

NOW = 1_790_000_000.0
SERIAL = re.compile(r"^[A-Z]{3}\d{4}[A-Z0-9]{4}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def test_same_device_same_facts() -> None:
    assert make_facts("xr-0001", 7) == make_facts("xr-0001", 7)


@pytest.mark.parametrize(("hostname", "seed"), [("xr-0002", 7), ("xr-0001", 8)])
def test_other_device_other_facts(hostname: str, seed: int) -> None:
    mine, other = make_facts("xr-0001", 7), make_facts(hostname, seed)
    assert mine.chassis_serial != other.chassis_serial
    assert [c.time for c in mine.commits] != [c.time for c in other.commits]


@pytest.mark.parametrize("seed", range(5))
def test_facts_look_like_an_xr7_router(seed: int) -> None:
    facts = make_facts("xr-0001", seed)
    assert re.fullmatch(r"7\.\d\.\d", facts.xr_version)
    assert 40 <= len(facts.packages) <= 80
    assert len({p.name for p in facts.packages}) == len(facts.packages)
    release = "r" + facts.xr_version.replace(".", "")
    for pkg in facts.packages[1:]:
        assert re.fullmatch(r"ncs5500-[a-z0-9-]+", pkg.name), pkg.name
        assert re.fullmatch(rf"\d\.\d\.\d\.\d-{release}", pkg.version), pkg.version
        assert re.fullmatch(rf"{pkg.name}-\d\.\d\.\d\.\d-{release}\.x86_64", pkg.full_name)
    for pkg in facts.packages:
        assert SHA256_HEX.match(pkg.install_fingerprint)
        assert pkg.install_fingerprint == pkg.runtime_fingerprint
    assert SERIAL.match(facts.chassis_serial)
    assert facts.nodes == ["0/RP0/CPU0"]
    names = [e.name for e in facts.inventory]
    assert names[0] == "Rack 0" and "0/RP0/CPU0" in names
    assert any(n.startswith("0/FT") for n in names) and any(n.startswith("0/PM") for n in names)
    assert all(SERIAL.match(e.sn) and re.fullmatch(r"V0\d", e.vid) for e in facts.inventory)
    ids = [int(c.commit_id) for c in facts.commits]
    assert ids == list(range(FIRST_COMMIT_ID, FIRST_COMMIT_ID + len(ids))) and len(ids) >= 5
    assert all(re.fullmatch(r"vty\d:node0_RP0_CPU0", c.line) for c in facts.commits)
    labels = [c.label for c in facts.commits if c.label]
    assert len(labels) == len(set(labels))
    history = facts.reboots["0/RP0/CPU0"]
    assert [r.no for r in history] == list(range(1, len(history) + 1))
    assert [r.time for r in history] == sorted(r.time for r in history)


def test_modular_chassis_has_two_rps_and_line_cards() -> None:
    facts = make_facts("pe-1", 3, platform_pid="NCS-5504")
    assert facts.nodes[:2] == ["0/RP0/CPU0", "0/RP1/CPU0"]
    assert facts.rp_nodes == ["0/RP0/CPU0", "0/RP1/CPU0"]
    assert "0/0/CPU0" in facts.nodes
    assert set(facts.reboots) == set(facts.nodes) == set(facts.secure_boot)
    serials = [e.sn for e in facts.inventory]
    assert len(set(serials)) == len(serials)  # modular: every card has its own serial


def test_integrity_has_pcrs_0_to_9() -> None:
    entry = node_integrity(make_facts("xr-0001", 1), "0/RP0/CPU0")
    assert entry["secure-boot-status"] == "Enabled"
    assert [p["index"] for p in entry["pcrs"]] == list(range(10))
    assert all(SHA256_HEX.match(p["value"]) and p["algorithm"] == "sha256" for p in entry["pcrs"])
    assert SHA256_HEX.match(entry["ima-aggregate"])


def _mutated() -> DeviceFacts:
    facts = make_facts("xr-0009", 4, platform_pid="NCS-5504", failing_items={"packages": "Failed: timeout"})
    record_reboot(facts, cause_code=CAUSE_USER_RELOAD[0], reason=CAUSE_USER_RELOAD[1], now=NOW)
    record_commit(facts, user="cisco", client="CLI", line="vty0:node0_RP0_CPU0", label="lab", comment="c", now=NOW)
    upgrade_package(facts, facts.packages[3].name, "9.9.9.9-r999")
    tamper_package(facts, facts.packages[5].name)
    swap_part(facts, "0/FT1")
    set_secure_boot(facts, False, node="0/RP1/CPU0")
    return facts


def test_round_trip_through_json_gives_the_same_device() -> None:
    facts = _mutated()
    again = DeviceFacts.from_dict(json.loads(json.dumps(facts.to_dict())))
    assert again == facts
    assert again.to_dict() == facts.to_dict()


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("packages"),
        lambda d: d.update(format=99),
        lambda d: d.update(platform_pid="NCS-9999"),
        lambda d: d["packages"][0].update(colour="red"),
    ],
)
def test_damaged_saved_facts_are_refused_clearly(damage) -> None:
    data = make_facts("xr-0001", 1).to_dict()
    damage(data)
    with pytest.raises(FactsError) as caught:
        DeviceFacts.from_dict(data)
    assert caught.value.message.startswith("% ")


def test_record_reboot_adds_to_every_node_and_resets_uptime() -> None:
    facts = make_facts("pe-1", 3, platform_pid="NCS-5504")
    before = {node: len(h) for node, h in facts.reboots.items()}
    record_reboot(facts, cause_code="0x2000063", reason="Cause: User initiated reload", now=NOW)
    for node, history in facts.reboots.items():
        assert len(history) == before[node] + 1
        assert history[-1].no == len(history) and history[-1].time == NOW
        assert history[-1].cause_code == "0x2000063"
    assert "System uptime is 2 hours 5 minutes" in show_version(facts, now=NOW + 2 * 3600 + 300)


def test_reboot_history_is_bounded_and_renumbered() -> None:
    facts = make_facts("xr-0001", 1)
    for i in range(REBOOT_HISTORY_LIMIT + 5):
        record_reboot(facts, cause_code="0x1", reason=f"r{i}", now=NOW + i * 60, nodes=["0/RP0/CPU0"])
    history = facts.reboots["0/RP0/CPU0"]
    assert len(history) == REBOOT_HISTORY_LIMIT
    assert [r.no for r in history] == list(range(1, REBOOT_HISTORY_LIMIT + 1))
    assert history[-1].reason == f"r{REBOOT_HISTORY_LIMIT + 4}"


def test_record_commit_hands_out_increasing_ids() -> None:
    facts = make_facts("xr-0001", 1)
    last = int(facts.commits[-1].commit_id)
    first = record_commit(facts, user="admin", client="CLI", line="vty1:node0_RP0_CPU0", label="", comment="", now=NOW)
    second = record_commit(facts, user="admin", client="CLI", line="vty1:node0_RP0_CPU0", label="x", comment="", now=NOW + 1)
    assert (int(first), int(second)) == (last + 1, last + 2)
    assert len(first) == 10
    with pytest.raises(FactsError, match="already used"):
        record_commit(facts, user="admin", label="x", now=NOW + 2)


def test_upgrade_changes_version_and_both_fingerprints() -> None:
    facts = make_facts("xr-0001", 1)
    pkg = facts.packages[4]
    old = pkg.install_fingerprint
    upgrade_package(facts, pkg.name, "3.0.0.0-r999")
    assert pkg.version == "3.0.0.0-r999"
    assert pkg.install_fingerprint == pkg.runtime_fingerprint != old


def test_upgrading_the_boot_image_changes_the_release() -> None:
    facts = make_facts("xr-0001", 1)
    upgrade_package(facts, "ncs5500-xr", "7.9.1")
    assert facts.xr_version == "7.9.1"
    assert "Version 7.9.1" in show_version(facts, now=NOW)


def test_tampered_package_runtime_differs_and_ima_follows() -> None:
    facts = make_facts("xr-0001", 1)
    aggregate = node_integrity(facts, "0/RP0/CPU0")["ima-aggregate"]
    pkg = facts.packages[2]
    tamper_package(facts, pkg.name)
    assert SHA256_HEX.match(pkg.runtime_fingerprint)
    assert pkg.runtime_fingerprint != pkg.install_fingerprint
    assert node_integrity(facts, "0/RP0/CPU0")["ima-aggregate"] != aggregate


def test_swapping_the_chassis_changes_the_udi() -> None:
    facts = make_facts("xr-0001", 1)
    old = license_udi(facts)
    new_serial = swap_part(facts, "Rack 0")
    assert SERIAL.match(new_serial)
    assert license_udi(facts) == f"UDI: PID:NCS-55A1-24H,SN:{new_serial}\n" != old


def test_secure_boot_off_shows_and_moves_pcr7() -> None:
    facts = make_facts("xr-0001", 1)
    before = node_integrity(facts, "0/RP0/CPU0")
    set_secure_boot(facts, False)
    after = node_integrity(facts, "0/RP0/CPU0")
    assert after["secure-boot-status"] == "Disabled"
    changed = [p["index"] for p, q in zip(before["pcrs"], after["pcrs"]) if p["value"] != q["value"]]
    assert changed == [7]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda f: upgrade_package(f, "ncs5500-nope", "1.0"), "not active"),
        (lambda f: tamper_package(f, "nope"), "not active"),
        (lambda f: swap_part(f, "0/FT9"), "not found"),
        (lambda f: set_secure_boot(f, False, node="0/RP7/CPU0"), "not found"),
        (lambda f: record_reboot(f, cause_code="0x1", reason="r", now=NOW, nodes=["0/9/CPU0"]), "not found"),
        (lambda f: set_failing_items(f, {"bananas": "Failed"}), "Unknown dossier item"),
        (lambda f: set_failing_items(f, {"packages": "Success"}), "other than 'Success'"),
        (lambda f: set_failing_items(f, {"packages": ""}), "non-empty"),
        (lambda f: node_integrity(f, "0/RP1/CPU0"), "not found"),
    ],
)
def test_mutations_refuse_what_the_device_lacks(call, expected: str) -> None:
    with pytest.raises(FactsError, match=expected) as caught:
        call(make_facts("xr-0001", 1))
    assert isinstance(caught.value, ContentError) and caught.value.message.startswith("% ")


def test_unknown_platform_lists_the_known_ones() -> None:
    with pytest.raises(FactsError, match="NCS-55A1-24H"):
        make_facts("xr-0001", 1, platform_pid="ASR-9999")


def test_xr_time_pads_the_day_like_ios_xr() -> None:
    assert xr_time(1610039762) == "Thu Jan  7 17:16:02 2021"


@settings(max_examples=25, deadline=None)
@given(
    hostname=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    seed=st.integers(0, 2**32),
    platform=st.sampled_from(PLATFORM_PIDS),
)
def test_any_device_round_trips_and_is_reproducible(hostname: str, seed: int, platform: str) -> None:
    facts = make_facts(hostname, seed, platform_pid=platform, files=10)
    assert DeviceFacts.from_dict(json.loads(json.dumps(facts.to_dict()))) == facts
    assert make_facts(hostname, seed, platform_pid=platform, files=10) == facts
