"""Adversarial tests of a damaged or full store: a sidecar file edited, truncated or replaced by
someone with write access to the store (or cut short by a crash) is listed as damaged, never a
crash of `reindex` or of the recovery that starts `dossier collect`; a full disk is named as
such, keeps the dirty marker, and `dossier store reindex` reports it without a traceback."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from collector import store as store_module
from collector.errors import DiskFullError
from collector.sidecars import DAMAGE_INVALID, DAMAGE_UNREADABLE, MAX_SIDECAR_BYTES, DamagedFile
from collector.store import DIRTY_MARKER, INDEX_NAME, EnvelopeRecord, Store, StoredVerdict
from dossier_cli.main import cli
from emulator.fleet import Fleet

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RECEIVED = "2026-01-01T12:00:00.000000Z"
VERDICT = {"trusted": True, "findings": [{"id": "expiry.leaf_soon", "severity": "warning", "message": "m"}],
           "days_to_expiry": {"leaf": 30, "root": 300}}
APPRAISAL = {"status": "affirming", "trust_vector": {"boot": "affirming"}, "findings": []}


def stored(root: Path) -> tuple[Store, EnvelopeRecord]:
    """A store holding one envelope with its metadata (verdict inside) and an appraisal."""
    store = Store.open(root)
    record = store.save(device="r1", host="h", nonce_hex="ab" * 16, output=b"envelope bytes", started=T0,
                        received=T0, duration_s=0.5, check=lambda record: StoredVerdict(VERDICT, True, [], 30, 300))
    store.save_appraisal(record, APPRAISAL)
    return store, record


def files(root: Path) -> dict[str, bytes]:
    """Every stored file but the index and the marker's source, by name."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith((INDEX_NAME, ".index."))}


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name]


def edit_meta(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))
    return damage


def write(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def folder_instead(path: Path) -> None:
    path.unlink()
    path.mkdir()


def pipe_instead(path: Path) -> None:
    """A named pipe: a plain open() of it waits for a writer forever."""
    import os

    path.unlink()
    os.mkfifo(path)


def separate_verdict(verdict: Any) -> Callable[[Path], None]:
    """The verdict moved out of the metadata into its own file (as older stores keep it)."""
    def damage(path: Path) -> None:
        meta_path = Path(str(path).replace(".verdict.json", ".meta.json"))
        meta = json.loads(meta_path.read_text())
        del meta["verdict"]
        meta_path.write_text(json.dumps(meta))
        path.write_bytes(verdict if isinstance(verdict, bytes) else json.dumps(verdict).encode())
    return damage


# (file damaged, how, the report's id, what it expected, what it found, the record as indexed)
SHAPES = {
    "received missing": (".meta.json", edit_meta(lambda m: m.pop("received")), DAMAGE_INVALID,
                         "'received' to be present", "nothing", {"received": RECEIVED, "trusted": True}),
    "received null": (".meta.json", edit_meta(lambda m: m.update(received=None)), DAMAGE_INVALID,
                      "received: a value of type string", "null", {"received": RECEIVED, "trusted": True}),
    "received not a time": (".meta.json", edit_meta(lambda m: m.update(received="yesterday")), DAMAGE_INVALID,
                            "received: an ISO-8601 time", '"yesterday"', {"received": RECEIVED}),
    "device not text": (".meta.json", edit_meta(lambda m: m.update(device=5)), DAMAGE_INVALID,
                        "device: a value of type string", "5", {"device": "r1", "nonce": "ab" * 16}),
    "nonce not hex": (".meta.json", edit_meta(lambda m: m.update(nonce="zz")), DAMAGE_INVALID,
                      "nonce: text matching", '"zz"', {"nonce": None, "trusted": True}),
    "days_to_expiry text": (".meta.json", edit_meta(lambda m: m["verdict"].update(days_to_expiry="soon")),
                            DAMAGE_INVALID, "verdict.days_to_expiry: an object", '"soon"',
                            {"trusted": True, "days_leaf": None, "days_root": None}),
    "days_to_expiry list": (".meta.json", edit_meta(lambda m: m["verdict"].update(days_to_expiry=[30, 300])),
                            DAMAGE_INVALID, "verdict.days_to_expiry: an object", "[30,300]", {"trusted": True}),
    "days leaf text": (".meta.json", edit_meta(lambda m: m["verdict"].update(days_to_expiry={"leaf": "30", "root": 300})),
                       DAMAGE_INVALID, "verdict.days_to_expiry.leaf: a whole number", '"30"',
                       {"days_leaf": None, "days_root": 300}),
    "trusted text": (".meta.json", edit_meta(lambda m: m["verdict"].update(trusted="yes")), DAMAGE_INVALID,
                     "verdict.trusted: true or false", '"yes"', {"trusted": None, "received": RECEIVED}),
    "findings not a list": (".meta.json", edit_meta(lambda m: m["verdict"].update(findings={"id": "x"})),
                            DAMAGE_INVALID, "verdict.findings: a list", '{"id":"x"}', {"trusted": True}),
    "verdict a list": (".meta.json", edit_meta(lambda m: m.update(verdict=[])), DAMAGE_INVALID,
                       "verdict: an object", "[]", {"trusted": None}),
    "metadata not JSON": (".meta.json", write(b"{not json"), DAMAGE_UNREADABLE, "holding JSON", "no JSON",
                          {"meta_missing": True, "received": RECEIVED, "trusted": None}),
    "metadata cut short": (".meta.json", lambda p: p.write_bytes(p.read_bytes()[:40]), DAMAGE_UNREADABLE,
                           "holding JSON", "no JSON", {"meta_missing": True, "received": RECEIVED}),
    "metadata null": (".meta.json", write(b"null"), DAMAGE_UNREADABLE, "a JSON object", "a JSON null",
                      {"meta_missing": True}),
    "metadata an array": (".meta.json", write(b"[1, 2]"), DAMAGE_UNREADABLE, "a JSON object", "a JSON array",
                          {"meta_missing": True}),
    "metadata not UTF-8": (".meta.json", write(b'{"received": "\xff"}'), DAMAGE_UNREADABLE, "holding JSON",
                           "no JSON", {"meta_missing": True}),
    "metadata nested deep": (".meta.json", write(b"[" * 100_000), DAMAGE_UNREADABLE, "holding JSON", "no JSON",
                             {"meta_missing": True}),
    "metadata too large": (".meta.json", write(b" " * (MAX_SIDECAR_BYTES + 1)), DAMAGE_UNREADABLE,
                           f"at most {MAX_SIDECAR_BYTES} bytes", "a larger one", {"meta_missing": True}),
    "metadata a folder": (".meta.json", folder_instead, DAMAGE_UNREADABLE, "a readable metadata file",
                          "directory", {"meta_missing": True, "received": RECEIVED}),
    "metadata a named pipe": (".meta.json", pipe_instead, DAMAGE_UNREADABLE, "a readable metadata file",
                              "a named pipe (FIFO)", {"meta_missing": True, "received": RECEIVED}),
    "appraisal a named pipe": (".appraisal.json", pipe_instead, DAMAGE_UNREADABLE, "a readable appraisal file",
                               "a named pipe (FIFO)", {"trusted": True}),
    "verdict file days text": (".verdict.json", separate_verdict({**VERDICT, "days_to_expiry": 7}), DAMAGE_INVALID,
                               "days_to_expiry: an object", "7", {"trusted": True, "days_leaf": None}),
    "verdict file not JSON": (".verdict.json", separate_verdict(b"\x00\x01"), DAMAGE_UNREADABLE, "holding JSON",
                              "no JSON", {"trusted": None, "meta_missing": False}),
    "appraisal status unknown": (".appraisal.json", write(b'{"status": "great"}'), DAMAGE_INVALID,
                                 "status: one of affirming", '"great"', {"trusted": True}),
    "appraisal not JSON": (".appraisal.json", write(b"{"), DAMAGE_UNREADABLE, "holding JSON", "no JSON",
                           {"trusted": True}),
    "appraisal findings text": (".appraisal.json", write(b'{"status": "warning", "findings": "many"}'),
                                DAMAGE_INVALID, "findings: a list of objects", '"many"', {"trusted": True}),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_damaged_sidecar_is_listed_and_its_envelope_indexed(tmp_path: Path, shape: str) -> None:
    suffix, damage, damage_id, expected, found, indexed = SHAPES[shape]
    store, record = stored(tmp_path / "s")
    target = tmp_path / "s" / (record.path + suffix)
    damage(target)
    before = files(tmp_path / "s")
    reported: list[DamagedFile] = []
    assert store.reindex(on_damage=reported.append) == 1
    assert [(d.id, d.path) for d in reported] == [(damage_id, str(target))], reported
    assert expected in reported[0].expected and found in reported[0].found, reported[0]
    (row,) = store.history("r1")
    assert {name: getattr(row, name) for name in indexed} == indexed
    assert row.path == record.path and row.sha256 == record.sha256
    assert files(tmp_path / "s") == before and not temporaries(tmp_path / "s")  # nothing changed
    store.verdict(row), store.appraisal(row)  # readers of the same files do not raise either
    appraised = store.appraisal_statuses()
    assert appraised == ([] if shape == "appraisal status unknown" else appraised)
    store.close()
    # `dossier store reindex` lists it: which file, what was expected, what was found (exit 1).
    result = CliRunner().invoke(cli, ["store", "reindex", "--store", str(tmp_path / "s")])
    assert result.exit_code == 1, result.output
    assert f"damaged: {target}: expected " in result.stdout and "indexed 1 envelopes" in result.stdout
    as_json = CliRunner().invoke(cli, ["store", "reindex", "--store", str(tmp_path / "s"), "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["damaged"] == [reported[0].to_json()]


def test_a_damaged_file_is_printed_inert(tmp_path: Path) -> None:
    store, record = stored(tmp_path / "s")
    edit_meta(lambda m: m.update(received="\x1b[2J\x07"))(tmp_path / "s" / (record.path + ".meta.json"))
    store.close()
    result = CliRunner().invoke(cli, ["store", "reindex", "--store", str(tmp_path / "s")])
    assert result.exit_code == 1 and "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_a_clean_store_reindexes_with_exit_0(tmp_path: Path) -> None:
    stored(tmp_path / "s")[0].close()
    result = CliRunner().invoke(cli, ["store", "reindex", "--store", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["damaged"] == []
    assert "Exit codes" in CliRunner().invoke(cli, ["store", "reindex", "--help"]).stdout


def test_an_unreadable_envelope_is_left_out_and_listed(tmp_path: Path) -> None:
    store, record = stored(tmp_path / "s")
    (tmp_path / "s" / "r1" / "20260102T000000.000000Z-00.envelope").mkdir()  # not a readable file
    reported: list[DamagedFile] = []
    assert store.reindex(on_damage=reported.append) == 1
    assert [d.id for d in reported] == [DAMAGE_UNREADABLE] and "a readable envelope" in reported[0].expected
    assert [r.path for r in store.history("r1")] == [record.path]


def test_recovery_with_a_damaged_sidecar_warns_and_keeps_going(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, record = stored(tmp_path / "s")
    edit_meta(lambda m: m.pop("received"))(tmp_path / "s" / (record.path + ".meta.json"))
    store.mark_dirty()
    caplog.set_level(logging.WARNING, logger="collector.store")
    assert store.recover() == 1 and not store.dirty
    assert any(record.path + ".meta.json" in r.getMessage() and "'received' to be present" in r.getMessage()
               for r in caplog.records)


# --- a reindex or a run that cannot write the index -----------------------------------------------


class _FullDiskConnection(sqlite3.Connection):
    """An SQLite connection on a disk with no room left: every statement that writes fails as
    SQLite's own SQLITE_FULL does."""

    READS = ("SELECT", "PRAGMA USER_VERSION", "PRAGMA SYNCHRONOUS", "ROLLBACK")

    def _refuse(self, sql: str) -> None:
        statement = " ".join(sql.split()).upper()
        if not statement.startswith(self.READS) or (statement.startswith("PRAGMA USER_VERSION") and "=" in statement):
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        self._refuse(sql)
        return super().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        self._refuse(sql)
        return super().executemany(sql, *args)

    def executescript(self, sql: str) -> sqlite3.Cursor:  # type: ignore[override]
        self._refuse(sql)
        return super().executescript(sql)


@pytest.fixture
def index_disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SQLite database opened from now on behaves as on a full disk (the simulation)."""
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **k, factory=_FullDiskConnection))


class SmallDisk:
    """A folder on a file system of its own that can be filled: a real 2 MiB tmpfs where this
    process may mount one (root), else the simulation of a full disk for SQLite."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch, *, real: bool) -> None:
        self.folder, self._monkeypatch = folder, monkeypatch
        folder.mkdir()
        self.real = real and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                                            capture_output=True).returncode == 0
        if real and not self.real:
            pytest.skip("cannot mount a tmpfs here (not root): the simulated full disk covers this")

    def fill(self) -> None:
        if not self.real:
            connect = sqlite3.connect
            self._monkeypatch.setattr(sqlite3, "connect",
                                      lambda *a, **k: connect(*a, **k, factory=_FullDiskConnection))
            return
        with open(self.folder / "filler", "wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass  # ENOSPC: full now

    def free(self) -> None:
        if self.real:
            (self.folder / "filler").unlink()
        else:
            self._monkeypatch.undo()

    def unmount(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.folder)], check=False)


@pytest.fixture(params=["tmpfs", "simulated"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path / "disk", monkeypatch, real=request.param == "tmpfs")
    try:
        yield disk
    finally:
        disk.unmount()


def test_reindex_on_a_full_disk_names_it_keeps_the_old_index_and_leaves_no_temporary(small_disk: SmallDisk) -> None:
    root = small_disk.folder / "s"
    store, record = stored(root)
    store.close()
    small_disk.fill()
    index = (root / INDEX_NAME).read_bytes()
    with pytest.raises(DiskFullError, match="the disk is full") as raised:
        Store(root).reindex()
    assert "damaged" not in str(raised.value)
    assert not temporaries(root) and sorted(p.name for p in root.glob(f".{INDEX_NAME}*")) == []
    assert (root / INDEX_NAME).read_bytes() == index  # the old index, as it was
    # The CLI: exit 2 and the cause, no traceback.
    result = CliRunner().invoke(cli, ["store", "reindex", "--store", str(root)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "error: the disk is full" in result.stderr and "Traceback" not in result.output
    if small_disk.real:  # the whole command, as an operator runs it
        done = subprocess.run([sys.executable, "-m", "dossier_cli", "store", "reindex", "--store", str(root)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "the disk is full" in done.stderr and "Traceback" not in done.stderr
    small_disk.free()
    result = CliRunner().invoke(cli, ["store", "reindex", "--store", str(root)])
    assert result.exit_code == 0 and [r.path for r in Store(root).history("r1")] == [record.path]


@pytest.mark.parametrize("interruption", [sqlite3.OperationalError("database or disk is full"), KeyboardInterrupt()])
def test_a_reindex_that_fails_midway_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              interruption: BaseException) -> None:
    store = Store.open(tmp_path / "s")
    for hour in range(3):
        store.save(device="r1", host="h", nonce_hex=f"{hour:02x}" * 16, output=b"e", duration_s=0.1,
                   started=T0.replace(hour=hour), received=T0.replace(hour=hour))
    insert = Store._insert
    calls = iter(range(10))

    def failing(self: Store, db: sqlite3.Connection, record: EnvelopeRecord) -> None:
        if next(calls) == 1:
            raise interruption
        insert(self, db, record)

    monkeypatch.setattr(Store, "_insert", failing)
    with pytest.raises((DiskFullError, KeyboardInterrupt)):
        store.reindex()
    assert not list((tmp_path / "s").glob(f".{INDEX_NAME}*")) and not temporaries(tmp_path / "s")
    monkeypatch.setattr(Store, "_insert", insert)
    assert len(store.history("r1")) == 3  # the old index, whole


def test_opening_an_index_on_a_full_disk_says_so_not_damaged(tmp_path: Path, index_disk_full: None) -> None:
    with pytest.raises(DiskFullError, match="the disk is full") as raised:
        Store(tmp_path).history("r1")  # a new index: setting it up writes
    assert "damaged" not in str(raised.value)


def test_a_store_that_could_not_write_its_index_keeps_the_dirty_marker(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store, first = stored(tmp_path / "s")
    store.mark_dirty()
    connect = sqlite3.connect
    store.close()  # the next connection is one on a full disk
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **k, factory=_FullDiskConnection))
    with store.batched_index():
        second = store.save(device="r1", host="h", nonce_hex="cd" * 16, output=b"second", started=T0,
                            received=T0.replace(hour=13), duration_s=0.1)
    assert store.mark_clean() is False and store.dirty
    monkeypatch.setattr(sqlite3, "connect", connect)
    fresh = Store(tmp_path / "s")
    assert fresh.recover() == 2 and not fresh.dirty
    assert [r.path for r in fresh.history("r1")] == [second.path, first.path]


# --- dossier collect over SSH ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(state_dir=tmp_path_factory.mktemp("damage"), devices=2, provisioned=True,
               key_type="ecdsa-p256", files=20, seed=23) as running:
        yield running


def _collect(inventory: Path, tmp_path: Path) -> Any:
    return CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "s"),
                                    "--trust-store", str(tmp_path / "t"), "--json"])


@pytest.fixture
def collected(fleet: Fleet, tmp_path: Path) -> Path:
    """An inventory, its devices enrolled and collected once into tmp_path/s."""
    inventory = tmp_path / "inventory.yaml"
    fleet.write_inventory(inventory)
    enrolled = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(tmp_path / "t"),
                                        "--trust-on-first-use"])
    assert enrolled.exit_code == 0, enrolled.output
    assert _collect(inventory, tmp_path).exit_code == 0
    return inventory


def test_collect_with_a_dirty_marker_and_a_damaged_sidecar_still_polls(collected: Path, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    store_dir = tmp_path / "s"
    caplog.set_level(logging.WARNING, logger="collector.store")
    damaged = sorted(store_dir.rglob("*.meta.json"))[0]
    edit_meta(lambda m: m.update(received=None, verdict={**m["verdict"], "days_to_expiry": "soon"}))(damaged)
    (store_dir / DIRTY_MARKER).write_bytes(b"a run was cut short\n")
    result = _collect(collected, tmp_path)
    assert result.exit_code == 0, result.output
    assert {o["status"] for o in json.loads(result.stdout)["devices"]} == {"trusted"}
    warned = [r.getMessage() for r in caplog.records if str(damaged) in r.getMessage()]
    assert any("expected received" in m for m in warned) and any("days_to_expiry" in m for m in warned)
    assert not (store_dir / DIRTY_MARKER).exists()
    assert len(Store(store_dir).latest()) == 2 and len(list(store_dir.rglob("*.envelope"))) == 4


def test_a_run_whose_index_writes_fail_keeps_the_dirty_marker_and_the_next_run_indexes(
        collected: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store_dir = tmp_path / "s"
    caplog.set_level(logging.WARNING, logger="collector.store")
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **k, factory=_FullDiskConnection))
    result = _collect(collected, tmp_path)
    assert result.exit_code == 0, result.output  # the envelopes are stored and verified
    assert any("the disk is full" in r.getMessage() for r in caplog.records)
    assert (store_dir / DIRTY_MARKER).exists()  # so that the next run rebuilds the index
    monkeypatch.setattr(sqlite3, "connect", connect)
    assert _collect(collected, tmp_path).exit_code == 0
    assert not (store_dir / DIRTY_MARKER).exists()
    indexed = {r.path for device in ("xr-0001", "xr-0002") for r in Store(store_dir).history(device)}
    assert indexed == {str(p.relative_to(store_dir)) for p in store_dir.rglob("*.envelope")} and len(indexed) == 6


# --- a named pipe where a stored file was (security review, item 3) ----------------------------

def _finishes(call: Callable[[], Any], pipes: list[Path], seconds: float = 20) -> Any:
    """`call()`'s result; fails (after releasing the reader by opening the pipes for writing)
    if it is still waiting on a pipe after `seconds`: a plain open() of a FIFO waits for a
    writer forever, and SIGTERM does not end it."""
    import os
    import threading

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for pipe in pipes:
            try:
                os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))  # the waiting reader gets EOF
            except OSError:
                pass  # no reader waits on this one
        thread.join(5)
        pytest.fail(f"still waiting on a named pipe after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _fifo_instead(path: Path) -> Path:
    import os

    path.unlink()
    os.mkfifo(path)
    return path


def test_an_envelope_replaced_by_a_named_pipe_is_damage_for_every_reader(collected: Path, tmp_path: Path) -> None:
    """verify, status, reindex and the collector's recovery (before it polls) hung on it."""
    store_dir, trust = tmp_path / "s", tmp_path / "t"
    pipe = _fifo_instead(sorted(store_dir.rglob("*.envelope"))[0])
    verified = _finishes(lambda: CliRunner().invoke(cli, ["verify", str(pipe), "--trust-store", str(trust),
                                                          "--json"]), [pipe])
    assert verified.exit_code == 2 and "a named pipe (FIFO)" in verified.stdout + verified.stderr
    reindexed = _finishes(lambda: CliRunner().invoke(cli, ["store", "reindex", "--store", str(store_dir), "--json",
                                                           "--trust-store", str(trust)]), [pipe])
    assert reindexed.exit_code == 1, reindexed.output
    (damage,) = json.loads(reindexed.stdout)["damaged"]
    assert damage["path"] == str(pipe) and "named pipe" in damage["found"]
    status = _finishes(lambda: CliRunner().invoke(cli, ["status", "--store", str(store_dir), "--json",
                                                        "--trust-store", str(trust)]), [pipe])
    assert status.exit_code == 1, status.output
    (store_dir / DIRTY_MARKER).write_bytes(b"a run was cut short\n")
    polled = _finishes(lambda: _collect(collected, tmp_path), [pipe])
    assert polled.exit_code == 0, polled.output  # recovery lists the pipe and the devices are polled
    assert {o["status"] for o in json.loads(polled.stdout)["devices"]} == {"trusted"}


def test_a_signer_and_a_record_log_that_are_named_pipes_are_refused(collected: Path, tmp_path: Path) -> None:
    store_dir, trust = tmp_path / "s", tmp_path / "t"
    envelope = sorted(store_dir.rglob("*.envelope"))[0]
    pipe = envelope.with_name("20260101T000000.000000Z-00000000.envelope")
    import os

    os.mkfifo(pipe)
    meta_path = envelope.with_name(envelope.name + ".meta.json")
    meta = json.loads(meta_path.read_text())
    meta["signer"] = pipe.name
    meta_path.write_text(json.dumps(meta))
    verified = _finishes(lambda: CliRunner().invoke(cli, ["verify", str(envelope), "--trust-store", str(trust),
                                                          "--json"]), [pipe])
    assert verified.exit_code == 2 and "a named pipe (FIFO)" in verified.stdout + verified.stderr
    log = _fifo_instead(store_dir / "records.jsonl")
    status = _finishes(lambda: CliRunner().invoke(cli, ["status", "--store", str(store_dir), "--json",
                                                        "--trust-store", str(trust)]), [log, pipe])
    assert status.exit_code == 1 and "named pipe" in status.stdout
    polled = _finishes(lambda: _collect(collected, tmp_path), [log, pipe])
    assert polled.exit_code == 2 and "named pipe" in polled.output
