"""File-system inventory: full snapshot, consistent increments, device clock, restart, scale."""

from __future__ import annotations

import base64
import json

import pytest

from emulator.facts import make_facts
from emulator.fsinv import (
    MAX_BLOCKS,
    SNAPSHOT_UNIT_SECONDS,
    FilesystemInventory,
    FsInventoryError,
    device_inventories,
)

EPOCH = 1_790_000_000.0
NODE = "0/RP0/CPU0"


def _inventory(files: int = 400, interval: int = 2, **kwargs) -> FilesystemInventory:
    facts = make_facts("xr-0001", 11, files=files)
    return FilesystemInventory.for_facts(facts, NODE, now=EPOCH, snapshot_interval=interval, **kwargs)


def _without_kind(record: dict) -> tuple:
    return (record["name"], json.dumps(record["meta"]), json.dumps(record["digest"]),
            record["package-kind"], record["package-name"])


def test_block_zero_is_a_full_snapshot_of_every_file() -> None:
    facts = make_facts("xr-0001", 11, files=400)
    inventory = FilesystemInventory.for_facts(facts, NODE, now=EPOCH)
    (block,) = inventory.blocks()
    assert (block["snapshot-block-no"], block["snap-time"], block["snapshot-type"]) == (0, EPOCH, "full")
    names = [f["name"] for f in block["files"]]
    assert len(names) == len(set(names)) == 400
    assert {f["change-kind"] for f in block["files"]} == {"created"}
    rpm_names = {p.full_name for p in facts.packages}
    kinds = {f["package-kind"] for f in block["files"]}
    assert kinds == {"rpm", "anonymous"}
    for record in block["files"]:
        if record["package-kind"] == "rpm":
            assert record["package-name"] in rpm_names
            assert record["name"].startswith(("/opt/cisco/XR/packages/", "/pkg/"))
        else:
            assert record["package-name"] == ""
        assert len(base64.b64decode(record["digest"]["digest-value"], validate=True)) == 32
    assert any(n.startswith("/harddisk:/") for n in names) and any(n.startswith("/etc/") for n in names)


def test_sha512_digests_are_64_bytes() -> None:
    (block,) = _inventory(files=50, digest_algorithm="SHA512").blocks()
    assert all(len(base64.b64decode(f["digest"]["digest-value"])) == 64 for f in block["files"])
    assert {f["digest"]["algorithm"] for f in block["files"]} == {"SHA512"}


def test_snapshots_follow_the_device_clock() -> None:
    inventory = _inventory(interval=2)
    period = 2 * SNAPSHOT_UNIT_SECONDS
    assert inventory.advance_to(EPOCH - 1) == 0
    assert inventory.advance_to(EPOCH + period - 0.001) == 0
    assert inventory.advance_to(EPOCH + 10 * period) == 10
    assert inventory.advance_to(EPOCH + 10 * period) == 0  # idempotent
    blocks = inventory.blocks()
    assert [b["snapshot-block-no"] for b in blocks] == list(range(11))
    assert [b["snap-time"] for b in blocks] == [EPOCH + n * period for n in range(11)]
    assert [b["snapshot-type"] for b in blocks] == ["full"] + ["incremental"] * 10
    for before, block in zip(blocks, blocks[1:]):
        for record in block["files"]:
            if record["change-kind"] != "deleted":
                assert before["snap-time"] <= record["meta"]["ctime"] <= block["snap-time"]


def test_applying_increments_to_the_full_snapshot_gives_the_current_files() -> None:
    inventory = _inventory(files=300, interval=1)
    inventory.advance_to(EPOCH + 200 * SNAPSHOT_UNIT_SECONDS)
    blocks = inventory.blocks()
    state = {f["name"]: f for f in blocks[0]["files"]}
    kinds = set()
    for block in blocks[1:]:
        names = [f["name"] for f in block["files"]]
        assert len(names) == len(set(names)), "a file appears once per block"
        for record in block["files"]:
            kinds.add(record["change-kind"])
            if record["change-kind"] == "created":
                assert record["name"] not in state
                state[record["name"]] = record
            elif record["change-kind"] == "deleted":
                assert state.pop(record["name"])["meta"]["inode"] == record["meta"]["inode"]
            else:
                assert record["name"] in state
                state[record["name"]] = record
    assert kinds == {"created", "contents-modified", "deleted", "meta-data-modified"}
    current = inventory.current_files()
    assert set(state) == set(current)
    rendered = {f["name"]: f for f in json.loads(inventory.render_blocks(0, 1))[0]["files"]}
    assert len(rendered) == 300
    # the current state expressed as records matches the replayed one, field for field
    for name, record in state.items():
        (path, uid, gid, inode, size, mode, atime, mtime, ctime, digest, _, pkind, pname) = current[name]
        assert record["meta"] == {"uid": uid, "gid": gid, "inode": inode, "size": size, "mode": mode,
                                  "atime": atime, "mtime": mtime, "ctime": ctime}
        assert (record["digest"]["digest-value"], record["package-kind"], record["package-name"]) == (
            digest, pkind, pname)


def test_render_is_byte_identical_to_json_dumps_of_blocks() -> None:
    inventory = _inventory()
    inventory.advance_to(EPOCH + 30 * 2 * SNAPSHOT_UNIT_SECONDS)
    assert inventory.render_blocks() == json.dumps(inventory.blocks())
    assert inventory.render_blocks(5, 3) == json.dumps(inventory.blocks(5, 3))


@pytest.mark.parametrize(
    ("start", "count", "expected"),
    [(0, 1, [0]), (5, None, list(range(5, 11))), (9, 5, [9, 10]), (11, None, []), (50, 2, [])],
)
def test_block_ranges(start: int, count: int | None, expected: list[int]) -> None:
    inventory = _inventory()
    inventory.advance_to(EPOCH + 10 * 2 * SNAPSHOT_UNIT_SECONDS)
    assert [b["snapshot-block-no"] for b in inventory.blocks(start, count)] == expected


@pytest.mark.parametrize(("start", "count"), [(-1, None), ("0", None), (True, None), (0, 0), (0, -3), (0, 1.5)])
def test_bad_block_ranges_are_refused(start, count) -> None:
    with pytest.raises(FsInventoryError, match="% Invalid"):
        _inventory().blocks(start, count)


@pytest.mark.parametrize("interval", [0, 97, -1, 2.0, "2", True])
def test_snapshot_interval_is_1_to_96(interval) -> None:
    with pytest.raises(FsInventoryError, match="1-96"):
        _inventory(interval=interval)


def test_interval_change_spaces_later_blocks_by_the_new_interval() -> None:
    inventory = _inventory(interval=1)
    inventory.advance_to(EPOCH + 4 * SNAPSHOT_UNIT_SECONDS)  # blocks 0-4
    inventory.set_snapshot_interval(4, EPOCH + 4 * SNAPSHOT_UNIT_SECONDS + 10)
    inventory.advance_to(EPOCH + 20 * SNAPSHOT_UNIT_SECONDS)
    times = [b["snap-time"] for b in inventory.blocks()]
    gaps = [(b - a) / SNAPSHOT_UNIT_SECONDS for a, b in zip(times, times[1:])]
    assert gaps == [1, 1, 1, 1, 4, 4, 4, 4]


def test_tampered_file_shows_in_the_next_block_with_a_new_digest() -> None:
    inventory = _inventory(interval=1)
    inventory.advance_to(EPOCH + 3 * SNAPSHOT_UNIT_SECONDS)
    target = next(f for f in inventory.blocks(0, 1)[0]["files"] if f["package-kind"] == "rpm")
    block_no = inventory.tamper_file(target["name"], EPOCH + 3 * SNAPSHOT_UNIT_SECONDS + 5)
    assert block_no == 4
    inventory.advance_to(EPOCH + 4 * SNAPSHOT_UNIT_SECONDS)
    (changed,) = [f for f in inventory.blocks(4, 1)[0]["files"] if f["name"] == target["name"]]
    assert changed["change-kind"] == "contents-modified"
    assert changed["digest"]["digest-value"] != target["digest"]["digest-value"]
    assert (changed["package-kind"], changed["package-name"]) == ("rpm", target["package-name"])
    assert changed["meta"]["size"] == target["meta"]["size"]


def test_tampering_a_missing_file_is_refused() -> None:
    with pytest.raises(FsInventoryError, match="not found on node 0/RP0/CPU0"):
        _inventory().tamper_file("/no/such/file", EPOCH)


def test_restart_gives_identical_output() -> None:
    inventory = _inventory(interval=1)
    inventory.advance_to(EPOCH + 40 * SNAPSHOT_UNIT_SECONDS)
    inventory.tamper_file("/harddisk:/config_backup_1.cfg", EPOCH + 40 * SNAPSHOT_UNIT_SECONDS + 1)
    inventory.set_snapshot_interval(3, EPOCH + 41 * SNAPSHOT_UNIT_SECONDS)
    inventory.advance_to(EPOCH + 60 * SNAPSHOT_UNIT_SECONDS)
    saved = json.loads(json.dumps(inventory.to_dict()))
    assert "files" in saved and not any(isinstance(v, list) and len(v) > 100 for v in saved.values())
    again = FilesystemInventory.from_dict(saved)
    assert again.block_count == inventory.block_count
    assert again.render_blocks() == inventory.render_blocks()
    later = EPOCH + 90 * SNAPSHOT_UNIT_SECONDS
    inventory.advance_to(later)
    again.advance_to(later)
    assert again.render_blocks(40) == inventory.render_blocks(40)


def test_same_device_same_inventory_other_device_other_digests() -> None:
    one, two = _inventory(), _inventory()
    one.advance_to(EPOCH + 7200)
    two.advance_to(EPOCH + 7200)
    assert one.render_blocks() == two.render_blocks()
    other = FilesystemInventory.for_facts(make_facts("xr-0002", 11, files=400), NODE, now=EPOCH)
    assert other.render_blocks() != one.render_blocks(0, 1)


def test_rps_of_one_device_share_package_digests_not_inodes() -> None:
    facts = make_facts("pe-1", 3, platform_pid="NCS-5504", files=300)
    inventories = device_inventories(facts, now=EPOCH)
    assert list(inventories) == ["0/RP0/CPU0", "0/RP1/CPU0"]
    rp0, rp1 = (inv.blocks()[0]["files"] for inv in inventories.values())
    rpm0 = {f["name"]: f for f in rp0 if f["package-kind"] == "rpm"}
    rpm1 = {f["name"]: f for f in rp1 if f["package-kind"] == "rpm"}
    assert rpm0.keys() == rpm1.keys()
    assert all(rpm0[n]["digest"] == rpm1[n]["digest"] for n in rpm0)
    assert any(rpm0[n]["meta"]["inode"] != rpm1[n]["meta"]["inode"] for n in rpm0)


@pytest.mark.parametrize(
    "damage",
    [lambda d: d.pop("segments"), lambda d: d.update(format=0), lambda d: d.update(segments=[["x", 1, 1]])],
)
def test_damaged_saved_inventory_is_refused(damage) -> None:
    data = _inventory().to_dict()
    damage(data)
    with pytest.raises(FsInventoryError, match="% "):
        FilesystemInventory.from_dict(data)


def test_unknown_node_or_digest_is_refused() -> None:
    facts = make_facts("xr-0001", 1, files=10)
    with pytest.raises(FsInventoryError, match="0/RP1/CPU0 not found"):
        FilesystemInventory.for_facts(facts, "0/RP1/CPU0", now=EPOCH)
    with pytest.raises(FsInventoryError, match="SHA256"):
        FilesystemInventory.for_facts(facts, NODE, now=EPOCH, digest_algorithm="MD5")


def test_twenty_thousand_files_build() -> None:
    inventory = _inventory(files=20_000)
    inventory.advance_to(EPOCH + 3 * 2 * SNAPSHOT_UNIT_SECONDS)
    text = inventory.render_blocks()
    snapshots = json.loads(text)
    assert len(snapshots[0]["files"]) == 20_000
    assert len(text) > 5_000_000
    assert [s["snapshot-block-no"] for s in snapshots] == [0, 1, 2, 3]


def test_files_of_a_package_can_be_tampered() -> None:
    facts = make_facts("xr-0001", 11, files=400)
    inventory = FilesystemInventory.for_facts(facts, NODE, now=EPOCH)
    bgp = facts.package("ncs5500-bgp").full_name
    paths = inventory.files_of_package(bgp)
    assert paths and all(p.startswith(f"/opt/cisco/XR/packages/{bgp.removesuffix('.x86_64')}/") for p in paths)
    assert inventory.tamper_file(paths[0], EPOCH + 1) == 1
    with pytest.raises(FsInventoryError, match="not in the file-system inventory"):
        inventory.files_of_package("ncs5500-nope-1.0.0.0-r000.x86_64")


@pytest.mark.parametrize("now", [float("inf"), float("nan"), EPOCH + (MAX_BLOCKS + 1) * SNAPSHOT_UNIT_SECONDS])
def test_a_runaway_clock_is_refused_not_followed(now: float) -> None:
    inventory = _inventory(interval=1)
    with pytest.raises(FsInventoryError, match="% "):
        inventory.advance_to(now)
    assert inventory.block_count == 1
