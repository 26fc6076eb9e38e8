"""The store: exact bytes, metadata, never overwrite, index rebuilt from files, pruning."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

import schemas
from collector.errors import StoreError
from collector import store as store_module
from collector.storage import durable
from collector.store import Store, write_file_atomically

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def save(store: Store, device: str = "xr-0001", *, at: datetime = T0, nonce: str = "00112233" * 4,
         output: bytes = b"Sun Oct 20 13:07:24.136 UTC\n{\"signed-envelope\": {}}\n"):
    return store.save(device=device, host="127.0.0.1", nonce_hex=nonce, output=output,
                      started=at - timedelta(seconds=1), received=at, duration_s=1.0)


def test_envelope_is_stored_byte_for_byte_with_valid_metadata(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    output = b"Sun Oct 20 13:07:24.136 UTC\r\n{\"a\": \"\\u00e9\"}\n\x00tail"
    record = save(store, output=output)
    path = store.root / record.path
    assert path.read_bytes() == output
    meta = json.loads(path.with_name(path.name + ".meta.json").read_text())
    jsonschema.validate(meta, schemas.load("metadata"))
    assert meta["device"] == "xr-0001" and meta["nonce"] == "00112233" * 4
    assert meta["bytes"] == len(output) and meta["received"].startswith("2026-01-01T12:00:00")
    assert not list(store.root.rglob("*.tmp"))


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"original")
    with pytest.raises(StoreError, match="never overwrites"):
        write_file_atomically(target, b"new")
    assert target.read_bytes() == b"original"
    assert not list(tmp_path.glob(".*.tmp"))
    store = Store.open(tmp_path / "store")
    save(store)
    with pytest.raises(StoreError):
        save(store)  # same device, time and nonce prefix: same name


@pytest.fixture(params=["unnamed", "named"])
def temp_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with Linux's unnamed temporary files (O_TMPFILE) and with named ones (the
    fallback where the file system or the platform has no O_TMPFILE)."""
    if request.param == "named":
        monkeypatch.setattr(durable, "_O_TMPFILE", None)
    elif durable._O_TMPFILE is None:
        pytest.skip("no O_TMPFILE on this platform")
    return request.param


def test_atomic_write_never_overwrites_and_leaves_no_temporary(tmp_path: Path, temp_kind: str) -> None:
    target = tmp_path / "envelope"
    write_file_atomically(target, b"first", sync_dir=False)
    assert target.read_bytes() == b"first" and (target.stat().st_mode & 0o777) == 0o644
    with pytest.raises(StoreError, match="never overwrites") as caught:
        write_file_atomically(target, b"second")
    assert isinstance(caught.value.__cause__, FileExistsError)
    assert target.read_bytes() == b"first"
    write_file_atomically(target, b"replaced", replace=True, sync=False)
    assert target.read_bytes() == b"replaced"
    big = bytes(range(256)) * 40_000  # several writes' worth
    write_file_atomically(tmp_path / "big", big)
    assert (tmp_path / "big").read_bytes() == big
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "envelope"]
    with pytest.raises(FileNotFoundError):
        write_file_atomically(tmp_path / "missing-dir" / "f", b"x")


def test_unnamed_temporaries_fall_back_when_linking_from_proc_fails(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No /proc (a container without it): the first write notices, and every write from then on
    uses named temporaries; nothing is lost or left behind."""
    if durable._O_TMPFILE is None:
        pytest.skip("no O_TMPFILE on this platform")
    real_link = os.link

    def link(src: str, dst: object, **kwargs: object) -> None:
        if str(src).startswith("/proc/self/fd/"):
            raise FileNotFoundError(2, "No such file or directory", src)
        real_link(src, dst, **kwargs)

    monkeypatch.setattr(store_module.os, "link", link)
    monkeypatch.setattr(durable, "_O_TMPFILE", durable._O_TMPFILE)  # restored afterwards
    write_file_atomically(tmp_path / "a", b"one")
    assert durable._O_TMPFILE is None
    write_file_atomically(tmp_path / "b", b"two")
    assert (tmp_path / "a").read_bytes() == b"one" and (tmp_path / "b").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_latest_and_history(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    for hours in range(3):
        save(store, at=T0 + timedelta(hours=hours), nonce=f"{hours:02x}" * 16)
    save(store, "xr-0002")
    latest = store.latest()
    assert set(latest) == {"xr-0001", "xr-0002"}
    assert latest["xr-0001"].received.startswith("2026-01-01T14")
    assert [r.nonce[:2] for r in store.history("xr-0001")] == ["02", "01", "00"]


def test_reindex_rebuilds_from_files_and_removes_temp_leftovers(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    first = save(store)
    second = save(store, at=T0 + timedelta(hours=1), nonce="ff" * 16)
    store.save_verdict(second, {"trusted": True, "findings": [], "days_to_expiry": {"leaf": 30, "root": 300}},
                       trusted=True, reasons=[], days_leaf=30, days_root=300)
    store.close()
    (store.root / "index.sqlite").write_bytes(b"garbage, not sqlite")
    leftover = store.root / "xr-0001" / ".half.envelope.abc.tmp"
    leftover.write_bytes(b"{\"signed")
    orphan = store.root / "xr-0001" / "20260101T130000.000000Z-deadbeef.envelope"
    orphan.write_bytes(b"bytes without metadata")
    fresh = Store(store.root)
    with pytest.raises(StoreError, match="reindex"):
        fresh.latest()
    assert fresh.reindex() == 3
    assert not leftover.exists()
    history = {r.path: r for r in fresh.history("xr-0001")}
    assert history[second.path].trusted is True and history[second.path].days_leaf == 30
    assert history[first.path].trusted is None
    assert history[str(orphan.relative_to(store.root))].meta_missing


def test_dirty_marker_triggers_recovery(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    store.mark_dirty()
    record = save(store)
    # A crash after the files were written but before the index row: simulate by deleting it.
    store._connection().execute("DELETE FROM envelopes")
    assert store.latest() == {}
    assert store.recover() == 1
    assert store.latest()["xr-0001"].path == record.path
    assert store.recover() is None


def test_dirty_marker_marks_and_clears(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    marker = store.root / "index.dirty"
    store.mark_dirty()
    assert store.dirty and marker.read_bytes() == b"a collection run is writing\n"
    store.mark_dirty()  # marked twice (a run after one cut short): still one marker
    store.mark_clean()
    assert not store.dirty
    # A marker a run cut short left still means dirty; the next run clears it.
    marker.write_bytes(b"a collection run is writing\n")
    assert store.dirty
    store.mark_dirty()
    assert store.dirty
    assert store.recover() == 0 and not store.dirty


def test_prune_keeps_newest_trusted_and_limits(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    records = [save(store, at=T0 + timedelta(days=day), nonce=f"{day:02x}" * 16) for day in range(6)]
    store.save_verdict(records[1], {"trusted": True}, trusted=True, reasons=[], days_leaf=None, days_root=None)
    for record in records[2:]:
        store.save_verdict(record, {"trusted": False}, trusted=False, reasons=["signature.invalid"],
                           days_leaf=None, days_root=None)
    now = T0 + timedelta(days=10)
    doomed = store.prune(keep_days=5.5, keep_last=2, now=now, dry_run=True)
    assert [r.path for r in doomed] == [records[3].path, records[2].path, records[0].path]
    assert (store.root / records[0].path).exists()
    store.prune(keep_days=5.5, keep_last=2, now=now)
    kept = {r.path for r in store.history("xr-0001")}
    assert kept == {records[5].path, records[4].path, records[1].path}
    assert not (store.root / records[0].path).exists()
    assert not (store.root / (records[0].path + ".meta.json")).exists()
    with pytest.raises(StoreError, match="refusing"):
        store.prune(keep_days=None, keep_last=None)


def test_batched_index_rows_are_seen_by_readers_and_written_at_the_end(tmp_path: Path) -> None:
    """Within `batched_index` rows are held back and written a batch at a time; a reader sees
    every envelope saved so far all the same, and nothing is lost at the end of the block."""
    store = Store.open(tmp_path / "store")
    other = Store.open(tmp_path / "store")  # another connection: sees only what is written
    with store.batched_index(rows=3):
        for hours in range(2):
            save(store, at=T0 + timedelta(hours=hours), nonce=f"{hours:02x}" * 16)
        assert other.history("xr-0001") == []  # held back: not written yet
        assert [r.nonce[:2] for r in store.history("xr-0001")] == ["01", "00"]  # a read writes them first
        for hours in range(2, 6):
            save(store, at=T0 + timedelta(hours=hours), nonce=f"{hours:02x}" * 16)
        assert len(other.history("xr-0001")) == 5  # a full batch (3) was written by itself
    assert len(other.history("xr-0001")) == 6  # and the rest at the end of the block
    store.close()
    other.close()


# --- the verdict at collection, in the metadata -------------------------------------------------

VERDICT_JSON = {"trusted": False, "findings": [{"id": "nonce.mismatch", "severity": "error", "message": "m"}],
                "days_to_expiry": {"leaf": 30, "root": 300}}


def test_check_runs_between_the_envelope_and_its_metadata_and_its_verdict_goes_into_both(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    seen: list[tuple[bool, bool]] = []

    def check(record: store_module.EnvelopeRecord) -> store_module.StoredVerdict:
        envelope = tmp_path / "s" / record.path
        seen.append((envelope.exists(), envelope.with_name(envelope.name + ".meta.json").exists()))
        return store_module.StoredVerdict(VERDICT_JSON, False, ["nonce.mismatch"], 30, 300)

    record = store.save(device="xr-0001", host="h", nonce_hex="00" * 16, output=b"{}", started=T0,
                        received=T0, duration_s=0.1, check=check)
    assert seen == [(True, False)]  # stored first, metadata after
    envelope = tmp_path / "s" / record.path
    meta = json.loads(envelope.with_name(envelope.name + ".meta.json").read_text())
    jsonschema.validate(meta, schemas.load("metadata"))
    assert meta["verdict"] == VERDICT_JSON and store.verdict(record) == VERDICT_JSON
    assert not envelope.with_name(envelope.name + ".verdict.json").exists()
    summary = (False, ["nonce.mismatch"], 30, 300)
    indexed = store.latest()["xr-0001"]
    assert (indexed.trusted, indexed.reasons, indexed.days_leaf, indexed.days_root) == summary
    store.reindex()  # from the metadata file
    indexed = store.latest()["xr-0001"]
    assert (indexed.trusted, indexed.reasons, indexed.days_leaf, indexed.days_root) == summary


def test_a_check_that_raises_leaves_the_envelope_its_metadata_and_its_index_row(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")

    def check(record: store_module.EnvelopeRecord) -> None:
        raise RuntimeError("verifier bug")

    with pytest.raises(RuntimeError, match="verifier bug"):
        store.save(device="xr-0001", host="h", nonce_hex="00" * 16, output=b"{}", started=T0,
                   received=T0, duration_s=0.1, check=check)
    record = store.latest()["xr-0001"]
    assert record.trusted is None and not record.meta_missing
    meta = json.loads((tmp_path / "s" / (record.path + ".meta.json")).read_text())
    assert "verdict" not in meta and store.verdict(record) is None


def test_a_verdict_file_of_an_older_store_is_still_read(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    record = save(store)
    store.save_verdict(record, VERDICT_JSON, trusted=False, reasons=["nonce.mismatch"], days_leaf=30,
                       days_root=300)  # the separate file (signed-command outputs, older stores)
    assert store.verdict(record) == VERDICT_JSON
    store.reindex()
    assert store.latest()["xr-0001"].reasons == ["nonce.mismatch"]


# --- names made durable in the background --------------------------------------------------------

@pytest.fixture(params=["syncfs", "folders"])
def sync_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with stores that make names durable with syncfs (where the file system
    allows) and with a fsync per folder (elsewhere)."""
    if request.param == "folders":
        monkeypatch.setattr(store_module._BatchSync, "usable", classmethod(lambda cls, root: False))
    elif not store_module._BatchSync.usable(Path(os.environ.get("TMPDIR", "/tmp"))):
        pytest.skip("no syncfs for the temporary folder's file system here")
    return request.param


def failing_syncfs(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the store's syncfs report a write-back failure (then each folder is fsynced)."""
    if store._batch is not None:
        monkeypatch.setattr(store._batch, "_syncfs", lambda fd: -1)


def test_sync_returns_once_the_names_are_synced_and_reports_a_failure(
        tmp_path: Path, sync_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path / "s")
    records = [save(store, device=f"xr-{i:04d}") for i in range(1, 6)]  # five folders
    store.sync()
    assert all((tmp_path / "s" / r.path).exists() for r in records)
    failing_syncfs(store, monkeypatch)  # syncfs cannot vouch for anything: each folder then
    store._names.add(tmp_path / "s" / "gone")  # a folder that cannot be opened any more
    with pytest.raises(StoreError, match="cannot make the names of stored files durable"):
        store.sync()
    store.sync()  # reported once; later names go on being synced
    save(store, device="xr-0009")
    store.close()  # waits too


def test_directories_are_synced_each_and_every_failure_is_reported(tmp_path: Path) -> None:
    folders = set()
    for i in range(3):
        (tmp_path / f"d{i}").mkdir()
        folders.add(tmp_path / f"d{i}")
    store_module._sync_directories(folders)
    with pytest.raises(FileNotFoundError):
        store_module._sync_directories(folders | {tmp_path / "missing"})  # the others still synced
    with pytest.raises(ValueError):
        store_module._sync_directories({Path("bad\0name")})


def test_names_are_synced_even_when_no_thread_can_be_started(tmp_path: Path, sync_kind: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    store = Store.open(tmp_path / "s")
    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", refuse)
        record = save(store)
        store.sync()  # the waiting thread syncs them itself instead of waiting forever
    assert (tmp_path / "s" / record.path).exists()
    store.close()


def test_a_failure_that_is_not_an_os_error_does_not_stop_the_syncing(
        tmp_path: Path, sync_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path / "s")
    failing_syncfs(store, monkeypatch)
    store._names.add(Path("bad\0name"))  # os.open raises ValueError
    with pytest.raises(StoreError, match="cannot make the names"):
        store.sync()
    save(store)
    store.sync()  # the next names are synced again
    store.close()


def test_an_envelope_whose_metadata_cannot_be_written_still_gets_its_name_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path / "s")
    handed: list[Path] = []
    real_add = store._names.add
    monkeypatch.setattr(store._names, "add", lambda d: (handed.append(d), real_add(d)))
    real_write = store_module.write_file_atomically

    def full_disk(path: Path, data: bytes, **kw: object) -> None:
        if str(path).endswith(".meta.json"):
            raise OSError(28, "No space left on device")
        real_write(path, data, **kw)

    monkeypatch.setattr(store_module, "write_file_atomically", full_disk)
    with pytest.raises(StoreError, match=r"\.meta\.json: No space left"):
        save(store)
    assert tmp_path / "s" / "xr-0001" in handed
    store.sync()


# --- several envelopes at once (the collector's batches) ----------------------------------------

def entry(device: str = "xr-0001", *, nonce: str = "00112233" * 4, output: bytes = b"{}\n") -> dict:
    return {"device": device, "host": "127.0.0.1", "nonce_hex": nonce, "output": output,
            "started": T0 - timedelta(seconds=1), "received": T0, "duration_s": 1.0, "extra": {"port": 22}}


def verdict(trusted: bool) -> store_module.StoredVerdict:
    verdict_json = {**VERDICT_JSON, "trusted": trusted, "findings": [] if trusted else VERDICT_JSON["findings"]}
    return store_module.StoredVerdict(verdict_json, trusted, [] if trusted else ["nonce.mismatch"], 30, 300)


@pytest.mark.parametrize("kind", ["syncfs", "one by one", "named temporaries"])
def test_save_many_stores_each_envelope_with_its_verdict_and_indexes_it(
        tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if kind != "syncfs":
        monkeypatch.setattr(store_module._BatchSync, "usable", classmethod(lambda cls, root: False))
    if kind == "named temporaries":
        monkeypatch.setattr(durable, "_O_TMPFILE", None)
    store = Store.open(tmp_path / "s")
    assert (store._batch is not None) == (kind == "syncfs" and store_module._BatchSync.usable(tmp_path))
    seen: list = []

    def check(records: list) -> list:
        seen.append(records)
        assert len(records) == 3  # the batch's shape, one by one too: None for the others
        for position, record in enumerate(records):
            if record is not None:
                assert record.device == f"xr-{position:04d}"
                # Every envelope is stored (named, complete) before it is verified.
                assert (store.root / record.path).read_bytes() == b"{\"n\": %d}" % position
        return [verdict(position != 1) if record is not None else None for position, record in enumerate(records)]

    entries = [entry(f"xr-{i:04d}", output=b"{\"n\": %d}" % i) for i in range(3)]
    records = store.save_many(entries, check=check)
    assert len(seen) == (1 if kind == "syncfs" else 3)  # one call for the batch (else one each)
    assert [r.trusted for r in records] == [True, False, True]
    for i, record in enumerate(records):
        meta = json.loads((store.root / (record.path + ".meta.json")).read_text())
        jsonschema.validate(meta, schemas.load("metadata"))
        assert meta["verdict"]["trusted"] == (i != 1) and meta["device"] == f"xr-{i:04d}"
    assert {d: r.trusted for d, r in store.latest().items()} == {"xr-0000": True, "xr-0001": False, "xr-0002": True}
    store.sync()
    store.close()
    assert not list(store.root.rglob("*.tmp"))


def test_save_many_syncs_once_per_step_not_once_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path / "s")
    if store._batch is None:
        pytest.skip("no syncfs for this file system here")
    calls: list[str] = []
    real_syncfs = store._batch._syncfs
    monkeypatch.setattr(store._batch, "_syncfs", lambda fd: (calls.append("syncfs"), real_syncfs(fd))[1])
    monkeypatch.setattr(store_module.os, "fsync", lambda fd: calls.append("fsync"))
    store.save_many([entry(f"xr-{i:04d}") for i in range(8)],
                    check=lambda records: [verdict(True)] * len(records))
    assert calls == ["syncfs", "syncfs"]  # the envelopes, then their metadata
    store.sync()  # the names: one more
    assert calls == ["syncfs"] * 3


def test_save_many_fsyncs_each_file_when_syncfs_reports_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path / "s")
    if store._batch is None:
        pytest.skip("no syncfs for this file system here")
    failing_syncfs(store, monkeypatch)
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        if len(synced) == 2:  # the second envelope's data could not be written
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(store_module.os, "fsync", fsync)
    results = store.save_many([entry(f"xr-{i:04d}") for i in range(3)],
                              check=lambda records: [verdict(True) if r else None for r in records])
    assert isinstance(results[1], StoreError) and "Input/output error" in str(results[1])
    assert "xr-0001" in str(results[1])
    assert not (store.root / "xr-0001").exists() or not list((store.root / "xr-0001").iterdir())  # never named
    assert [type(r).__name__ for r in results] == ["EnvelopeRecord", "StoreError", "EnvelopeRecord"]
    assert set(store.latest()) == {"xr-0000", "xr-0002"}


def test_save_many_keeps_what_was_stored_when_one_envelope_exists_already(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    first = store.save_many([entry("xr-0001", output=b"original")])[0]
    results = store.save_many([entry("xr-0001", output=b"again"), entry("xr-0002")])
    assert isinstance(results[0], StoreError) and "never overwrites" in str(results[0])
    assert (store.root / first.path).read_bytes() == b"original"
    assert results[1].device == "xr-0002" and (store.root / results[1].path).exists()


def test_save_many_writes_the_metadata_and_raises_when_the_check_fails(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")

    def check(records: list) -> list:
        raise RuntimeError("verifier bug")

    with pytest.raises(RuntimeError, match="verifier bug"):
        store.save_many([entry("xr-0001"), entry("xr-0002")], check=check)
    latest = store.latest()
    assert set(latest) == {"xr-0001", "xr-0002"}
    assert all(r.trusted is None and not r.meta_missing for r in latest.values())


def test_save_many_reports_a_bad_device_name_for_its_entry_only(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    results = store.save_many([entry("../escape"), entry("xr-0002")])
    assert isinstance(results[0], StoreError) and "invalid device name '../escape'" in str(results[0])
    assert results[1].device == "xr-0002"


def test_after_one_syncfs_failure_every_file_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write-back error is reported once: a later syncfs that returns 0 proves nothing."""
    store = Store.open(tmp_path / "s")
    if store._batch is None:
        pytest.skip("no syncfs for this file system here")
    real_syncfs = store._batch._syncfs
    outcomes = iter([-1])
    monkeypatch.setattr(store._batch, "_syncfs", lambda fd: next(outcomes, None) or real_syncfs(fd))
    fsynced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(store_module.os, "fsync", lambda fd: (fsynced.append(fd), real_fsync(fd))[1])
    store.save_many([entry("xr-0001")])
    assert len(fsynced) == 2  # the envelope, then its metadata
    store.save_many([entry("xr-0002")])
    assert len(fsynced) == 4  # still one each, though syncfs would now say 0
    store.sync()
    assert set(store.latest()) == {"xr-0001", "xr-0002"}


def test_a_device_folder_on_another_file_system_gets_its_own_fsyncs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """syncfs covers the store's file system only: a device folder linked to another disk has
    each of its files and its folder fsynced."""
    import tempfile

    store = Store.open(tmp_path / "s")
    if store._batch is None or not Path("/dev/shm").is_dir():
        pytest.skip("no syncfs here, or no second file system to link to")
    elsewhere = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        if os.stat(elsewhere).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same file system here")
        (tmp_path / "s" / "xr-0002").symlink_to(elsewhere)
        fsynced: list[str] = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
            real_fsync(fd)

        monkeypatch.setattr(store_module.os, "fsync", fsync)
        records = store.save_many([entry("xr-0001"), entry("xr-0002")],
                                  check=lambda records: [verdict(True) if r else None for r in records])
        assert [r.device for r in records] == ["xr-0001", "xr-0002"]
        mine = [path for path in fsynced if path.startswith(str(elsewhere))]
        assert len(mine) == 4  # the envelope, the metadata (each once unnamed), the folder twice
        assert not [path for path in fsynced if "xr-0001" in path]  # the store's own: by syncfs
        assert (elsewhere / Path(records[1].path).name).exists()
    finally:
        import shutil

        shutil.rmtree(elsewhere, ignore_errors=True)


def test_save_many_refuses_a_check_that_returns_too_few_verdicts(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    with pytest.raises(ValueError, match=r"expected one verdict per entry \(2\), found 1"):
        store.save_many([entry("xr-0001"), entry("xr-0002")], check=lambda records: [verdict(True)])
    latest = store.latest()
    assert set(latest) == {"xr-0001", "xr-0002"} and all(r.trusted is None for r in latest.values())
    store.sync()


def test_a_device_folder_must_be_a_folder(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    (store.root / "xr-0001").write_bytes(b"not a folder")
    with pytest.raises(StoreError, match="xr-0001: expected a folder there, found a file"):
        save(store)
    (store.root / "xr-0002").symlink_to(tmp_path / "nowhere")  # dangling: no folder either
    with pytest.raises(StoreError, match="xr-0002: expected a folder there, found a file"):
        save(store, "xr-0002")
    (tmp_path / "elsewhere").mkdir()
    (store.root / "xr-0003").symlink_to(tmp_path / "elsewhere")  # a symlink to a folder is one
    record = save(store, "xr-0003")
    assert (tmp_path / "elsewhere" / record.path.split("/", 1)[1]).exists()
