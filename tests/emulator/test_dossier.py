"""The data dossier: ENVELOPE.md section 2 shape, schema-valid for every selector, agreeing with
the show commands, reporting mutations and failures, and refusing malformed arguments."""

from __future__ import annotations

import json
import re
from itertools import combinations

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from emulator.dossier import (
    FS_NOT_CONFIGURED,
    ITEMS,
    DossierError,
    build_dossier,
    fs_selection,
    parse_fs_options,
)
from emulator.facts import (
    DeviceFacts,
    make_facts,
    record_commit,
    record_reboot,
    set_failing_items,
    set_secure_boot,
    swap_part,
    tamper_package,
)
from emulator.fsinv import SNAPSHOT_UNIT_SECONDS, FilesystemInventory, device_inventories
from emulator.nonce import NonceError
from emulator.showtext import (
    license_udi,
    show_configuration_commit_list,
    show_install_active,
    show_inventory,
    show_platform,
    show_reboot_history,
    show_version,
    timestamp_line,
)

EPOCH = 1_790_000_000.0
NOW = EPOCH + 12 * SNAPSHOT_UNIT_SECONDS
VALIDATOR = jsonschema.Draft202012Validator(schemas.load("dossier"))


def _device(files: int = 120) -> tuple[DeviceFacts, dict[str, FilesystemInventory]]:
    facts = make_facts("pe-1", 5, platform_pid="NCS-5504", files=files)
    return facts, device_inventories(facts, now=EPOCH)


def _build(facts, fsinv, items=ITEMS, **kwargs) -> str:
    kwargs.setdefault("nonce_text", "1580")
    kwargs.setdefault("fs_options", None)
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("elapsed", 0.25)
    return build_dossier(facts, fsinv, items, **kwargs)


def _valid(text: str) -> dict:
    data = json.loads(text)
    VALIDATOR.validate(data)
    return data


@pytest.mark.parametrize(
    "items",
    [(item,) for item in ITEMS] + [ITEMS, (), ("system-inventory", "packages", "packages")],
    ids=lambda items: "+".join(items) or "none",
)
def test_every_selection_is_schema_valid_and_in_spec_order(items: tuple[str, ...]) -> None:
    facts, fsinv = _device()
    text = _build(facts, fsinv, items)
    data = _valid(text)
    expected = ["collection-start-time", "model-name", "model-revision", "nonce", "license-udi", "version",
                "platform", *[i for i in ITEMS if i in items], "collection-end-time"]
    assert list(data) == expected
    assert text.endswith("}\n") and text.count("\n") == 1
    assert text.startswith('{"collection-start-time":1790010800.0,"model-name":"http://cisco.com/ns/yang/Cisco-IOS-XR-ama"')
    assert data["collection-end-time"] == NOW + 0.25
    for item in expected[4:-1]:
        assert data[item]["result-code"] == "Success" and item in data[item]


def test_items_are_printed_in_the_seed_layout() -> None:
    facts, fsinv = _device()
    text = _build(facts, fsinv, ["reboot-history"])
    assert f'"license-udi":{{"result-code": "Success", "license-udi": "UDI: PID:NCS-5504,SN:{facts.chassis_serial}\\n"}}' in text
    assert '"version":{"result-code": "Success", "version": "Cisco IOS XR Software, Version ' in text


def test_all_combinations_of_two_selectors_validate() -> None:
    facts, fsinv = _device(files=40)
    for pair in combinations(ITEMS, 2):
        _valid(_build(facts, fsinv, pair))


def test_nonce_is_as_typed_or_absent() -> None:
    facts, fsinv = _device()
    assert _valid(_build(facts, fsinv, ["packages"], nonce_text="aBcD01"))["nonce"] == "aBcD01"
    assert "nonce" not in _valid(_build(facts, fsinv, ["packages"], nonce_text=None))


@pytest.mark.parametrize("nonce", ["", "1", "158", "zz", "15 80", "0x1580", "ab" * 65, "00", "0000"])
def test_malformed_nonce_is_refused(nonce: str) -> None:
    facts, fsinv = _device()
    with pytest.raises(NonceError) as caught:
        _build(facts, fsinv, ["packages"], nonce_text=nonce)
    assert caught.value.message.startswith("% Invalid nonce")


def test_unknown_item_is_refused() -> None:
    facts, fsinv = _device()
    with pytest.raises(DossierError, match="% Invalid item 'bananas': expected one of packages"):
        _build(facts, fsinv, ["packages", "bananas"])


def test_failing_items_report_their_result_code_without_payload() -> None:
    facts, fsinv = _device()
    set_failing_items(facts, {"reboot-history": "Failed: timeout collecting data"})
    data = _valid(_build(facts, fsinv, failing_items={"platform": "Failed: sysdb unreachable",
                                                      "filesystem-inventory": "Failed: busy"}))
    assert data["reboot-history"] == {"result-code": "Failed: timeout collecting data"}
    assert data["platform"] == {"result-code": "Failed: sysdb unreachable"}
    assert data["filesystem-inventory"] == {"result-code": "Failed: busy"}
    assert data["packages"]["result-code"] == "Success"


def test_bad_failing_items_are_refused() -> None:
    facts, fsinv = _device()
    with pytest.raises(DossierError, match="Success"):
        _build(facts, fsinv, failing_items={"packages": "Success"})


def test_filesystem_inventory_not_configured() -> None:
    facts, _ = _device()
    data = _valid(_build(facts, None, ["filesystem-inventory"]))
    assert data["filesystem-inventory"] == {"result-code": FS_NOT_CONFIGURED}


def _blocks(data: dict) -> dict[str, list[int]]:
    payload = data["filesystem-inventory"]["filesystem-inventory"]
    return {node: [s["snapshot-block-no"] for s in v["snapshots"]] for node, v in payload.items()}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (None, {"0/RP0/CPU0": list(range(13))}),  # the local node, every block
        ({"0/RP0/CPU0": {"block_start": 0, "count": 1}}, {"0/RP0/CPU0": [0]}),  # seed examples
        ({"0/RP0/CPU0": {"block_start": 5}}, {"0/RP0/CPU0": list(range(5, 13))}),
        ({"0/RP1/CPU0": {"block_start": 0}}, {"0/RP1/CPU0": list(range(13))}),
        ({"0/RP1/CPU0": {}}, {"0/RP1/CPU0": list(range(13))}),
        ({"0/RP0/CPU0": {"block_start": 12}, "0/RP1/CPU0": {"block_start": 10, "count": 2}},
         {"0/RP0/CPU0": [12], "0/RP1/CPU0": [10, 11]}),
        ({"0/RP0/CPU0": {"block_start": 13}}, {"0/RP0/CPU0": []}),  # nothing new yet
    ],
)
def test_filesystem_inventory_options_choose_nodes_and_blocks(options, expected) -> None:
    facts, fsinv = _device()
    data = _valid(_build(facts, fsinv, ["filesystem-inventory"], fs_options=options))
    assert _blocks(data) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "at least one node"),
        ({"0/RP3/CPU0": {"block_start": 0}}, "% Invalid node '0/RP3/CPU0' in filesystem-inventory-options: expected one of 0/RP0/CPU0, 0/RP1/CPU0"),
        ({"0/0/CPU0": {"block_start": 0}}, "Invalid node '0/0/CPU0'"),
        ({"0/RP0/CPU0": {"block_start": -1}}, "% Invalid block_start -1 for 0/RP0/CPU0: expected an integer 0 or more"),
        ({"0/RP0/CPU0": {"block_start": "5"}}, "Invalid block_start '5'"),
        ({"0/RP0/CPU0": {"block_start": 1.5}}, "Invalid block_start 1.5"),
        ({"0/RP0/CPU0": {"block_start": True}}, "Invalid block_start True"),
        ({"0/RP0/CPU0": {"count": 0}}, "% Invalid count 0"),
        ({"0/RP0/CPU0": {"count": None, "block_start": 0}}, None),  # explicit null count = all
        ({"0/RP0/CPU0": {"start": 0}}, "unknown key 'start', expected only block_start and count"),
        ({"0/RP0/CPU0": 5}, "expected an object like"),
        ({"0/RP0/CPU0": [0, 1]}, "expected an object like"),
        (["0/RP0/CPU0"], "expected a JSON object"),
    ],
)
def test_malformed_filesystem_inventory_options_are_refused(options, message) -> None:
    facts, fsinv = _device()
    if message is None:
        _valid(_build(facts, fsinv, ["filesystem-inventory"], fs_options=options))
        return
    with pytest.raises(DossierError) as caught:
        _build(facts, fsinv, ["filesystem-inventory"], fs_options=options)
    assert caught.value.message.startswith("% Invalid")
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "not JSON"), ("[1]", "expected a JSON object keyed by node, found list"),
     ("'{}'", "not JSON"), ("{" + " " * 5000 + "}", "at most")],
)
def test_parse_fs_options_refuses_what_is_not_an_object(text: str, message: str) -> None:
    with pytest.raises(DossierError, match=message):
        parse_fs_options(text)


def test_parse_fs_options_reads_the_seed_example() -> None:
    assert parse_fs_options('{"0/RP0/CPU0": {"block_start": 0, "count": 1}}') == {
        "0/RP0/CPU0": {"block_start": 0, "count": 1}}


def test_the_dossier_agrees_with_the_show_commands() -> None:
    facts, fsinv = _device()
    data = _valid(_build(facts, fsinv))
    assert data["version"]["version"] == show_version(facts, now=NOW)
    assert data["platform"]["platform"] == show_platform(facts)
    assert data["license-udi"]["license-udi"] == license_udi(facts)
    assert f"Version {facts.xr_version}" in data["version"]["version"]
    installed = show_install_active(facts)
    for pkg in data["packages"]["packages"]:
        assert f"        {pkg['name']}-{pkg['version']}" in installed
    assert installed.count(f"Active Packages: {len(data['packages']['packages'])}\n") == len(facts.nodes)
    inventory = show_inventory(facts)
    for entry in data["system-inventory"]["system-inventory"]:
        assert f'NAME: "{entry["name"]}", DESCR: "{entry["descr"]}"' in inventory
        assert re.search(rf"PID: {re.escape(entry['pid'])} *, VID: {entry['vid']}, SN: {entry['sn']}", inventory)
    commit_rows = show_configuration_commit_list(facts).splitlines()[2:]
    commits = data["rollback-history"]["rollback-history"]
    assert len(commit_rows) == len(commits)
    for row, commit in zip(commit_rows, commits):
        assert (commit["label"] or commit["commit-id"]) in row and row.endswith(commit["time"])
    for node, reboots in data["reboot-history"]["reboot-history"].items():
        rows = show_reboot_history(facts, node).splitlines()[1:]
        assert len(rows) == len(reboots)
        for row, reboot in zip(rows, reboots):
            assert row.startswith(f"{reboot['no']:02d}") and reboot["time"] in row and reboot["cause-code"] in row
            assert row.endswith(reboot["reason"])
    assert set(data["system-integrity-snapshot"]["system-integrity-snapshot"]) == set(facts.nodes)


def test_mutations_appear_in_the_dossier() -> None:
    facts, fsinv = _device()
    before = _valid(_build(facts, fsinv))
    record_reboot(facts, cause_code="0x2000063", reason="Cause: User initiated reload", now=NOW - 60)
    commit_id = record_commit(facts, user="lab", client="CLI", line="vty0:node0_RP0_CPU0",
                              label="drift", comment="test", now=NOW - 30)
    tamper_package(facts, "ncs5500-bgp")
    new_fan = swap_part(facts, "0/FT1")
    set_secure_boot(facts, False, node="0/RP1/CPU0")
    target = next(f["name"] for f in fsinv["0/RP0/CPU0"].blocks(0, 1)[0]["files"] if f["package-kind"] == "rpm")
    due = fsinv["0/RP0/CPU0"].tamper_file(target, NOW)
    later = NOW + SNAPSHOT_UNIT_SECONDS
    after = _valid(_build(facts, fsinv, now=later, fs_options={"0/RP0/CPU0": {"block_start": due}}))

    rp0 = after["reboot-history"]["reboot-history"]["0/RP0/CPU0"]
    assert len(rp0) == len(before["reboot-history"]["reboot-history"]["0/RP0/CPU0"]) + 1
    assert rp0[-1]["cause-code"] == "0x2000063"
    assert "System uptime is 16 minutes" in after["version"]["version"]
    newest = after["rollback-history"]["rollback-history"][0]
    assert (newest["commit-id"], newest["user-id"], newest["label"], newest["comment"]) == (commit_id, "lab", "drift", "test")
    bgp = next(p for p in after["packages"]["packages"] if p["name"] == "ncs5500-bgp")
    assert bgp["runtime-fingerprint"] != bgp["install-fingerprint"]
    assert {"name": "0/FT1", "sn": new_fan}.items() <= next(
        e for e in after["system-inventory"]["system-inventory"] if e["name"] == "0/FT1").items()
    integrity = after["system-integrity-snapshot"]["system-integrity-snapshot"]
    assert (integrity["0/RP0/CPU0"]["secure-boot-status"], integrity["0/RP1/CPU0"]["secure-boot-status"]) == (
        "Enabled", "Disabled")
    (snapshot,) = after["filesystem-inventory"]["filesystem-inventory"]["0/RP0/CPU0"]["snapshots"]
    assert snapshot["snapshot-block-no"] == due
    assert any(f["name"] == target and f["change-kind"] == "contents-modified" for f in snapshot["files"])


def test_same_device_same_dossier_even_after_restart() -> None:
    facts, fsinv = _device()
    first = _build(facts, fsinv)
    facts_again = DeviceFacts.from_dict(json.loads(json.dumps(facts.to_dict())))
    fsinv_again = {n: FilesystemInventory.from_dict(json.loads(json.dumps(i.to_dict()))) for n, i in fsinv.items()}
    assert _build(facts_again, fsinv_again) == first
    other_facts, other_fsinv = make_facts("pe-2", 5, platform_pid="NCS-5504", files=120), None
    assert _build(other_facts, other_fsinv) != first


def test_collection_end_time_is_measured_when_not_given() -> None:
    facts, fsinv = _device()
    data = json.loads(build_dossier(facts, fsinv, ["packages"], nonce_text=None, fs_options=None, now=NOW))
    assert NOW <= data["collection-end-time"] < NOW + 5


def test_large_inventory_dossier_builds() -> None:
    facts = make_facts("xr-big", 1, files=20_000)
    fsinv = device_inventories(facts, now=EPOCH)
    text = _build(facts, fsinv, ["filesystem-inventory"])
    data = json.loads(text)
    (node,) = data["filesystem-inventory"]["filesystem-inventory"].values()
    assert len(node["snapshots"][0]["files"]) == 20_000
    assert len(node["snapshots"]) == 13
    assert len(text) > 5_000_000


def test_timestamp_line_looks_like_ios_xr() -> None:
    assert timestamp_line(1571576844.136) == "Sun Oct 20 13:07:24.136 UTC\n"


def test_options_are_checked_even_when_the_feature_is_off() -> None:
    facts, _ = _device()
    with pytest.raises(DossierError, match="Invalid node"):
        _build(facts, None, ["filesystem-inventory"], fs_options={"0/RP7/CPU0": {}})


NODES = ["0/RP0/CPU0", "0/RP1/CPU0"]
_specs = st.fixed_dictionaries(
    {}, optional={"block_start": st.integers(0, 10**6), "count": st.integers(1, 10**6)}
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(NODES), _specs, min_size=1))
def test_valid_options_round_trip_through_the_command_line_text(options) -> None:
    parsed = parse_fs_options(json.dumps(options))
    selection = fs_selection(parsed, NODES, NODES[0])
    assert selection == {n: (s.get("block_start", 0), s.get("count")) for n, s in options.items()}


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
                    max_leaves=8))
def test_any_json_options_are_accepted_or_refused_with_a_percent_line(options) -> None:
    try:
        fs_selection(parse_fs_options(json.dumps(options)), NODES, NODES[0])
    except DossierError as exc:
        assert exc.message.startswith("% Invalid")
