"""Adversarial tests of the record log (issue 15, item 7): a store writer replays an old trusted
envelope under a new collector-style name with matching metadata; `dossier verify --at received`
and `dossier status` said TRUSTED. Now the collector signs a record of each stored envelope
into a hash-chained log, and every kind of tampering with it is a finding, found with only the
collector's public key."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.inventory import load_inventory
from collector.enroll import enroll_root, fetch_root
from collector.records import RecordLog, load_or_create_key
from collector.store import EnvelopeRecord, Store
from fleet_setup import enroll_all
from dossier_cli.main import cli
from emulator.faults import Fault
from emulator.fleet import Fleet
from verifier.records import (LOG_NAME, default_key_path, load_public_key, make_line, parse_line,
                              public_key_path, read_log)

SMALL_FILES = 20


def _collect(inventory: Path, store: Path, trust: Path) -> dict:
    result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(store),
                                      "--trust-store", str(trust), "--json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def _verify(paths: list[Path], trust: Path, *extra: str) -> list[dict]:
    result = CliRunner().invoke(cli, ["verify", *map(str, paths), "--trust-store", str(trust), "--at", "received",
                                      "--json", *extra])
    assert result.exit_code in (0, 1), result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One device polled twice through the real emulator and `dossier collect`: trusted, then
    untrusted (an expired leaf)."""
    tmp = tmp_path_factory.mktemp("records")
    with Fleet(state_dir=tmp / "fleet", devices=1, provisioned=True, key_type="ecdsa-p256", seed=7,
               files=SMALL_FILES) as fleet:
        inventory = tmp / "inventory.yaml"
        fleet.write_inventory(inventory)
        trust = tmp / "state" / "truststore"
        device = enroll_all(inventory, trust)[0]
        first = _collect(inventory, tmp / "store", trust)
        fleet.set_fault(device.name, Fault.EXPIRED_LEAF)
        second = _collect(inventory, tmp / "store", trust)
    assert first["devices"][0]["status"] == "trusted" and second["devices"][0]["status"] == "untrusted"
    return {"tmp": tmp, "trust": trust, "device": device.name,
            "trusted": tmp / "store" / first["devices"][0]["path"],
            "untrusted": tmp / "store" / second["devices"][0]["path"]}


@pytest.fixture
def store(collected: dict, tmp_path: Path) -> Path:
    """A fresh copy of the collected store, to tamper with."""
    copy = tmp_path / "store"
    shutil.copytree(collected["tmp"] / "store", copy)
    return copy


def _replay(store: Path, original: Path, when: datetime) -> Path:
    """The attack: the old trusted envelope copied under a new collector-style name, with its
    metadata edited to match (received, started, file name)."""
    meta = json.loads(original.with_name(original.name + ".meta.json").read_text())
    stamp = when.strftime("%Y%m%dT%H%M%S.%fZ")
    iso = when.isoformat(timespec="microseconds").replace("+00:00", "Z")
    target = store / original.parent.name / f"{stamp}-{meta['nonce'][:8]}.envelope"
    shutil.copyfile(original, target)
    meta["received"] = meta["started"] = iso
    target.with_name(target.name + ".meta.json").write_text(json.dumps(meta))
    return target


def test_the_key_is_made_on_first_use_with_mode_0600_outside_the_store(collected: dict) -> None:
    key = default_key_path(collected["trust"])
    assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert collected["tmp"] / "store" not in key.parents
    result = CliRunner().invoke(cli, ["store", "key", "--collector-key", str(key)])
    assert result.exit_code == 0 and "BEGIN PUBLIC KEY" in result.stdout and "SHA-256 fingerprint" in result.stdout
    assert public_key_path(key).read_text() in result.stdout


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    load_or_create_key(key)
    key.chmod(0o644)
    from collector.errors import StoreError

    with pytest.raises(StoreError, match="expected mode 0600, found 0644"):
        load_or_create_key(key)


def test_replayed_envelope_is_caught_by_verify_and_status(collected: dict, store: Path) -> None:
    trust = collected["trust"]
    untrusted = store / collected["untrusted"].relative_to(collected["tmp"] / "store")
    trusted = store / collected["trusted"].relative_to(collected["tmp"] / "store")
    received = json.loads(untrusted.with_name(untrusted.name + ".meta.json").read_text())["received"]
    replayed = _replay(store, trusted, datetime.fromisoformat(received.replace("Z", "+00:00")) + timedelta(seconds=5))
    # Before the record log this said TRUSTED; the genuine stored envelopes still verify as before.
    honest, fake = _verify([trusted, replayed], trust)
    assert honest["trusted"] and not fake["trusted"]
    ids = {f["id"] for f in fake["findings"]}
    assert {"record.missing", "record.nonce_reused"} <= ids
    # The store writer also puts a trusted row in the index; status still does not believe it.
    with Store.open(store) as opened:
        opened.index(EnvelopeRecord(path=f"{replayed.parent.name}/{replayed.name}", device=collected["device"],
                                    received=json.loads(replayed.with_name(replayed.name + ".meta.json").read_text())[
                                        "received"], bytes=replayed.stat().st_size, sha256="0" * 64, trusted=True))
    result = CliRunner().invoke(cli, ["status", "--store", str(store), "--json",
                                      "--collector-key", str(public_key_path(default_key_path(trust)))])
    assert result.exit_code == 1, result.output
    row = json.loads(result.stdout)["devices"][0]
    genuine = json.loads(trusted.with_name(trusted.name + ".meta.json").read_text())["received"]
    assert row["last_trusted"] == genuine
    assert "record.missing" in row["record_findings"]
    # reindex checks every envelope too, and indexes the replay as untrusted
    result = CliRunner().invoke(cli, ["store", "reindex", "--store", str(store), "--json",
                                      "--collector-key", str(default_key_path(trust))])
    assert result.exit_code == 1
    assert "record.missing" in {f["id"] for f in json.loads(result.stdout)["records"]["envelopes"][
        f"{replayed.parent.name}/{replayed.name}"]}
    with Store.open(store) as opened:
        assert opened.latest_trusted()[collected["device"]].received == genuine


def test_a_plain_verify_without_the_store_says_what_was_not_checked(collected: dict, tmp_path: Path) -> None:
    alone = tmp_path / "loose" / collected["trusted"].parent.name
    alone.mkdir(parents=True)
    for suffix in ("", ".meta.json"):
        shutil.copyfile(collected["trusted"].with_name(collected["trusted"].name + suffix),
                        alone / (collected["trusted"].name + suffix))
    other_trust = tmp_path / "t2"
    shutil.copytree(collected["trust"], other_trust)  # no collector key beside this one
    (result,) = _verify([alone / collected["trusted"].name], other_trust)
    assert result["trusted"] and "record.not_checked" in {f["id"] for f in result["findings"]}


# --- each tamper kind, found with only the public key ---------------------------------------

def _lines(store: Path) -> list[bytes]:
    return (store / LOG_NAME).read_bytes().splitlines()


def _write(store: Path, lines: list[bytes], end: bytes = b"\n") -> None:
    (store / LOG_NAME).write_bytes(b"\n".join(lines) + end)


def _resign(line: bytes, signer, **changes) -> bytes:
    fields = parse_line(line)
    fields.update(changes)
    fields.pop("sig")
    return make_line(fields, signer)


def _edit(store: Path, trust: Path) -> None:
    lines = _lines(store)
    fields = json.loads(lines[1])
    fields["sha256"] = "f" * 64
    lines[1] = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    _write(store, lines)


def _reorder(store: Path, trust: Path) -> None:
    lines = _lines(store)
    lines[1], lines[2] = lines[2], lines[1]
    _write(store, lines)


def _delete(store: Path, trust: Path) -> None:
    lines = _lines(store)
    del lines[1]
    _write(store, lines)


def _insert(store: Path, trust: Path) -> None:
    lines = _lines(store)
    _write(store, [*lines, lines[1]])


def _other_key(store: Path, trust: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from verifier.records import key_fingerprint

    other = Ed25519PrivateKey.generate()
    lines = _lines(store)
    lines[1] = _resign(lines[1], other, key=key_fingerprint(other.public_key()), sha256="f" * 64)
    _write(store, lines)


def _nonce_reuse(store: Path, trust: Path) -> None:
    """Even the key holder cannot record one nonce twice for a device unnoticed."""
    key = load_or_create_key(default_key_path(trust))
    lines = _lines(store)
    first = parse_line(lines[1])
    RecordLog(store, key).append([EnvelopeRecord(path=f"{first['device']}/copy.envelope", device=first["device"],
                                                 received=first["received"], bytes=1, sha256="0" * 64,
                                                 nonce=first["nonce"], trusted=True)])


def _torn(store: Path, trust: Path) -> None:
    lines = _lines(store)
    _write(store, lines[:-1] + [lines[-1][:40]], end=b"")


TAMPERS = {
    "edit": (_edit, "record.bad_signature"),
    "reorder": (_reorder, "record.line_reordered"),
    "delete": (_delete, "record.line_deleted"),
    "insert": (_insert, "record.line_inserted"),
    "other key": (_other_key, "record.other_key"),
    "nonce reuse": (_nonce_reuse, "record.nonce_reused"),
    "torn last line": (_torn, "record.log_torn"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERS))
def test_each_tamper_kind_is_found_with_only_the_public_key(collected: dict, store: Path, tmp_path: Path,
                                                            kind: str) -> None:
    tamper, finding = TAMPERS[kind]
    public = tmp_path / "auditor.pub.pem"
    shutil.copyfile(public_key_path(default_key_path(collected["trust"])), public)
    assert not read_log(store / LOG_NAME, load_public_key(public)).problems
    tamper(store, collected["trust"])
    first = store / collected["trusted"].relative_to(collected["tmp"] / "store")
    (result,) = _verify([first], collected["trust"], "--collector-key", str(public))
    ids = {f["id"] for f in result["findings"]}
    assert finding in ids, ids
    if kind != "torn last line":  # a torn tail loses the last record only (the untrusted poll's)
        assert not result["trusted"]


def test_a_torn_append_is_cut_off_and_recorded_by_the_next_append(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k.pem")
    store = tmp_path / "store"
    store.mkdir()
    record = EnvelopeRecord(path="d/a.envelope", device="d", received="2026-01-01T00:00:00Z", bytes=1,
                            sha256="0" * 64, nonce="aa")
    RecordLog(store, key).append([record])
    with open(store / LOG_NAME, "ab") as handle:
        handle.write(b'{"kind":"rec')  # a crash mid-append
    assert "record.log_torn" in {f.id for f in read_log(store / LOG_NAME, key.public_key()).problems}
    RecordLog(store, key).append([EnvelopeRecord(**{**record.__dict__, "path": "d/b.envelope", "nonce": "bb"})])
    checked = read_log(store / LOG_NAME, key.public_key())
    assert [f.id for f in checked.problems] == ["record.log_repaired"]
    assert set(checked.records) == {"d/a.envelope", "d/b.envelope"}


def test_concurrent_appenders_keep_one_chain(tmp_path: Path) -> None:
    """Two RecordLogs (as two processes would be) append in turn: flock + re-reading the tail."""
    key = load_or_create_key(tmp_path / "k.pem")
    one, two = RecordLog(tmp_path, key), RecordLog(tmp_path, key)
    for number in range(6):
        (one if number % 2 else two).append([EnvelopeRecord(path=f"d/{number}.envelope", device="d",
                                                            received="2026-01-01T00:00:00Z", bytes=1,
                                                            sha256="0" * 64, nonce=f"{number:02x}")])
    checked = read_log(tmp_path / LOG_NAME, key.public_key())
    assert not checked.problems and len(checked.records) == 6


# --- status believes only what is signed (security review, item 1) ----------------------------

def _status(store: Path, trust: Path, *extra: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["status", "--store", str(store), "--json", "--trust-store", str(trust), *extra])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def test_a_device_state_saying_trusted_is_not_believed(collected: dict, store: Path) -> None:
    """The store writer sets last_status to "trusted" in state/_devices.json: status said
    trusted, exit 0, although the device's latest poll was untrusted."""
    states = store / "state" / "_devices.json"
    document = json.loads(states.read_text())
    for state in document["devices"].values():
        state.update(last_status="trusted", last_reason=None)
    states.write_text(json.dumps(document))
    code, status = _status(store, collected["trust"])
    (row,) = status["devices"]
    assert code == 1 and row["last_status"] == "untrusted" and row["last_reason"] == "chain.leaf_expired"


def test_an_index_row_flipped_to_trusted_with_its_verdict_removed_is_not_believed(collected: dict,
                                                                                   store: Path) -> None:
    """The untrusted envelope's index row set to trusted, its verdict removed from the metadata:
    check_record skipped `trusted` without a verdict, and status showed it as the last trusted."""
    import sqlite3

    untrusted = store / collected["untrusted"].relative_to(collected["tmp"] / "store")
    meta_path = untrusted.with_name(untrusted.name + ".meta.json")
    meta = json.loads(meta_path.read_text())
    meta.pop("verdict")
    meta_path.write_text(json.dumps(meta))
    untrusted.with_name(untrusted.name + ".verdict.json").unlink(missing_ok=True)
    relative = f"{untrusted.parent.name}/{untrusted.name}"
    with sqlite3.connect(store / "index.sqlite") as db:
        db.execute("UPDATE envelopes SET trusted=1, reasons='[]' WHERE path=?", (relative,))
    code, status = _status(store, collected["trust"])
    (row,) = status["devices"]
    genuine = json.loads(collected["trusted"].with_name(collected["trusted"].name + ".meta.json").read_text())
    assert code == 1 and row["last_status"] == "untrusted"
    assert "record.mismatch" in row["record_findings"]
    assert row["last_trusted"] == genuine["received"]
    (verdict,) = _verify([untrusted], collected["trust"])
    assert "record.mismatch" in {f["id"] for f in verdict["findings"]}


def test_a_failed_poll_is_shown_from_the_state_file_as_unverified(collected: dict, store: Path) -> None:
    states = store / "state" / "_devices.json"
    document = json.loads(states.read_text())
    for state in document["devices"].values():
        state.update(last_status="failed", last_reason="ssh.refused")
    states.write_text(json.dumps(document))
    code, status = _status(store, collected["trust"])
    assert code == 1 and status["devices"][0]["last_status"] == "failed (unverified state file)"


# --- evidence from before the log (item 2) -----------------------------------------------------

def test_the_header_is_written_before_the_first_poll_is_stored(collected: dict) -> None:
    lines = _lines(collected["tmp"] / "store")
    header, first = parse_line(lines[0]), parse_line(lines[1])
    assert header["kind"] == "header" and first["kind"] == "record"
    assert header["created"] < first["started"] <= first["received"]


def test_an_envelope_dated_before_the_log_without_a_record_is_missing(collected: dict, store: Path) -> None:
    """A replay (or an envelope minted with a rotated key) dated just before the header's
    `created`: record.before_log was a warning, so it verified TRUSTED."""
    created = datetime.fromisoformat(parse_line(_lines(store)[0])["created"].replace("Z", "+00:00"))
    trusted = store / collected["trusted"].relative_to(collected["tmp"] / "store")
    replayed = _replay(store, trusted, created - timedelta(microseconds=1))
    (verdict,) = _verify([replayed], collected["trust"])
    ids = {(f["id"], f["severity"]) for f in verdict["findings"]}
    assert not verdict["trusted"] and ("record.missing", "error") in ids
    assert "record.before_log" not in {f["id"] for f in verdict["findings"]}


def test_a_log_made_for_a_store_with_envelopes_lists_them_in_a_signed_baseline(tmp_path: Path) -> None:
    """A store from before the record log: the first run's log lists what it held (path,
    SHA-256); those verify (a warning: their verdicts were never signed), anything else put
    there later is record.missing."""
    with Fleet(state_dir=tmp_path / "fleet", devices=1, provisioned=True, key_type="ecdsa-p256", seed=9,
               files=SMALL_FILES) as fleet:
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        trust = tmp_path / "state" / "truststore"
        enroll_root(trust, fetch_root(load_inventory(inventory).devices[0]), source="tofu")
        first = _collect(inventory, tmp_path / "store", trust)
        (tmp_path / "store" / LOG_NAME).unlink()  # as a store written before the record log
        _collect(inventory, tmp_path / "store", trust)
    store = tmp_path / "store"
    kinds = [parse_line(line)["kind"] for line in _lines(store)]
    assert kinds == ["header", "baseline", "record"]
    import jsonschema

    import schemas

    for line in _lines(store):
        jsonschema.validate(json.loads(line), schemas.load("record-log-line"))
    old = store / first["devices"][0]["path"]
    assert parse_line(_lines(store)[1])["envelopes"] == [
        {"path": first["devices"][0]["path"], "sha256": json.loads(old.with_name(old.name + ".meta.json").read_text())[
            "sha256"]}]
    (verdict,) = _verify([old], trust)
    assert verdict["trusted"] and ("record.before_log", "warning") in {(f["id"], f["severity"])
                                                                        for f in verdict["findings"]}
    created = datetime.fromisoformat(parse_line(_lines(store)[0])["created"].replace("Z", "+00:00"))
    replayed = _replay(store, old, created - timedelta(seconds=1))
    (verdict,) = _verify([replayed], trust)
    assert not verdict["trusted"] and "record.missing" in {f["id"] for f in verdict["findings"]}
    # changed after the baseline, its metadata edited to match
    meta_path = old.with_name(old.name + ".meta.json")
    meta = json.loads(meta_path.read_text())
    changed = old.read_bytes() + b" "
    old.write_bytes(changed)
    meta.update(bytes=len(changed), sha256=hashlib.sha256(changed).hexdigest())
    meta_path.write_text(json.dumps(meta))
    (verdict,) = _verify([old], trust)
    assert not verdict["trusted"] and "record.mismatch" in {f["id"] for f in verdict["findings"]}


# --- status and reindex need the collector's key (item 4) --------------------------------------

def test_status_and_reindex_without_the_collector_key_fail_and_say_how_to_give_it(
        collected: dict, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store writer rewrites the whole log under their own key (and replays an envelope):
    status fell back to the log's own key, key_not_pinned was a warning, exit 0."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    monkeypatch.chdir(tmp_path)  # no state/truststore here: no default key either
    monkeypatch.delenv("DOSSIER_TRUST_STORE", raising=False)
    monkeypatch.delenv("DOSSIER_COLLECTOR_KEY", raising=False)
    forger = Ed25519PrivateKey.generate()
    (store / LOG_NAME).unlink()
    trusted = store / collected["trusted"].relative_to(collected["tmp"] / "store")
    every = []
    for envelope in sorted(store.glob("*/*.envelope")):
        meta = json.loads(envelope.with_name(envelope.name + ".meta.json").read_text())
        every.append(EnvelopeRecord(path=f"{envelope.parent.name}/{envelope.name}", device=meta["device"],
                                    received=meta["received"], started=meta["started"], bytes=meta["bytes"],
                                    sha256=meta["sha256"], nonce=meta["nonce"],
                                    trusted=envelope.name == trusted.name, reasons=[]))
    RecordLog(store, forger).append(every)
    result = CliRunner().invoke(cli, ["status", "--store", str(store), "--json"])
    assert result.exit_code == 1
    problems = {f["id"]: f for f in json.loads(result.stdout)["records"]["problems"]}
    assert problems["record.key_not_pinned"]["severity"] == "error"
    assert "--collector-key" in problems["record.key_not_pinned"]["message"]
    reindexed = CliRunner().invoke(cli, ["store", "reindex", "--store", str(store)])
    assert reindexed.exit_code == 1 and "record.key_not_pinned" in reindexed.stderr
    # --trust-store finds the key the way collect does: the forged log is another key's
    code, status = _status(store, collected["trust"])
    assert code == 1 and "record.other_key" in {f["id"] for f in status["records"]["problems"]}
    assert status["devices"][0]["last_trusted"] is None


# --- an unparseable or unsigned last line (item 6) ---------------------------------------------

@pytest.mark.parametrize("tail", ["not json", "unsigned", "other key"])
def test_an_invalid_last_line_is_cut_off_recorded_and_appending_goes_on(tmp_path: Path, tail: str) -> None:
    """One complete but unparseable last line made every later append raise (every later poll
    untrusted until repaired by hand); a parseable but unsigned one was chained onto."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from verifier.records import key_fingerprint

    key = load_or_create_key(tmp_path / "k.pem")
    store = tmp_path / "store"
    store.mkdir()
    record = EnvelopeRecord(path="d/a.envelope", device="d", received="2026-01-01T00:00:00Z", bytes=1,
                            sha256="0" * 64, nonce="aa")
    RecordLog(store, key).append([record])
    lines = _lines(store)
    fields = parse_line(lines[-1])
    forged = {**fields, "seq": fields["seq"] + 1, "prev": "0" * 64, "path": "d/forged.envelope", "nonce": "ff"}
    forged.pop("sig")
    bad = {"not json": b"{this is not a record line}",
           "unsigned": json.dumps({**forged, "sig": "AAAA"}, sort_keys=True, separators=(",", ":")).encode(),
           "other key": make_line({**forged, "key": key_fingerprint(Ed25519PrivateKey.generate().public_key())},
                                  Ed25519PrivateKey.generate())}[tail]
    _write(store, [*lines, bad])
    RecordLog(store, key).append([EnvelopeRecord(**{**record.__dict__, "path": "d/b.envelope", "nonce": "bb"})])
    checked = read_log(store / LOG_NAME, key.public_key())
    assert [f.id for f in checked.problems] == ["record.log_repaired"]
    assert set(checked.records) == {"d/a.envelope", "d/b.envelope"}
    torn = parse_line(_lines(store)[2])
    assert torn["kind"] == "torn" and torn["removed_bytes"] == len(bad) + 1


def test_an_envelope_whose_metadata_was_deleted_is_still_checked_against_its_record(collected: dict,
                                                                                    store: Path) -> None:
    """Found by a review: with its .meta.json moved away, a stored envelope was verified with
    the nonce and device given on the command line and no record check at all (TRUSTED)."""
    envelope = store / collected["device"] / collected["trusted"].name
    meta = envelope.with_name(envelope.name + ".meta.json")
    nonce = json.loads(meta.read_text())["nonce"]
    meta.unlink()
    result = CliRunner().invoke(cli, ["verify", str(envelope), "--trust-store", str(collected["trust"]),
                                      "--device", collected["device"], "--nonce", nonce, "--json"])
    assert result.exit_code == 1, result.output
    (verdict,) = [json.loads(line) for line in result.stdout.splitlines()]
    ids = {f["id"] for f in verdict["findings"]}
    assert not verdict["trusted"] and "stored.mismatch" in ids


def test_a_recovery_reindex_keeps_untrusted_what_the_log_does_not_vouch_for(collected: dict, store: Path) -> None:
    """Found by a review: an envelope stored just before a crash or a second Ctrl-C (no signed
    record yet), or planted while the index was dirty, came back trusted from the next run's
    recovery (the index rebuilt from the verdict files), where `store reindex` flagged it."""
    from collector.collect import Collector

    trust = collected["trust"]
    untrusted = store / collected["untrusted"].relative_to(collected["tmp"] / "store")
    trusted = store / collected["trusted"].relative_to(collected["tmp"] / "store")
    received = json.loads(untrusted.with_name(untrusted.name + ".meta.json").read_text())["received"]
    replayed = _replay(store, trusted, datetime.fromisoformat(received.replace("Z", "+00:00")) + timedelta(seconds=5))
    (store / "index.dirty").write_bytes(b"a collection run is writing\n")  # the run that died
    with Store.open(store) as opened:
        Collector(opened, trust_store_path=trust).run([])  # the next run: recovery, then nothing to poll
        newest_trusted = opened.latest_trusted().get(collected["device"])
        row = next(r for r in opened.history(collected["device"]) if r.path.endswith(replayed.name))
    assert row.trusted is False and "record.missing" in row.reasons
    assert newest_trusted is not None and not newest_trusted.path.endswith(replayed.name)


def test_a_stored_file_named_from_inside_its_device_folder_verifies_as_by_its_full_path(
        collected: dict, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An auditor in the device's folder runs `dossier verify ./FILE` or `dossier verify FILE`:
    the same verdict as by the full path (the folder and the record's name were read from the
    relative path: record.missing, stored.mismatch for an untouched, trusted envelope)."""
    envelope = store / collected["device"] / collected["trusted"].name
    full = _verify([envelope], collected["trust"])
    monkeypatch.chdir(envelope.parent)
    for given in (f"./{envelope.name}", envelope.name):
        found = _verify([Path(given)], collected["trust"])
        assert [(v["trusted"], v["findings"]) for v in found] == [(v["trusted"], v["findings"]) for v in full]
    assert full[0]["trusted"] is True


def test_a_collect_run_in_process_keeps_nothing_frozen(collected: dict, tmp_path: Path) -> None:
    """`dossier collect` freezes what start-up made for the length of the command only: a caller
    running it in its own process (tests, an embedding) is left with nothing frozen."""
    import gc

    before = gc.get_freeze_count()
    with Fleet(state_dir=tmp_path / "fleet", devices=1, provisioned=True, key_type="ecdsa-p256", seed=7,
               files=SMALL_FILES) as fleet:
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        _collect(inventory, tmp_path / "store", collected["trust"])
    assert gc.get_freeze_count() == before


@pytest.mark.parametrize("spelling", ["{path}", "{path}/", "{folder}//./{name}"])
def test_deleted_metadata_is_found_whatever_the_path_spelling(collected: dict, store: Path, spelling: str) -> None:
    """With its metadata deleted, a collector-named file in a store with a record log is checked
    against its signed record however its path is written (a trailing slash once hid it)."""
    envelope = store / collected["device"] / collected["trusted"].name
    nonce = json.loads(envelope.with_name(envelope.name + ".meta.json").read_text())["nonce"]
    envelope.with_name(envelope.name + ".meta.json").unlink()
    given = spelling.format(path=envelope, folder=envelope.parent, name=envelope.name)
    result = CliRunner().invoke(cli, ["verify", given, "--trust-store", str(collected["trust"]), "--json",
                                      "--device", collected["device"], "--nonce", nonce])
    verdict = json.loads(result.stdout)
    assert result.exit_code == 1 and verdict["trusted"] is False
    assert "stored.mismatch" in {finding["id"] for finding in verdict["findings"]}
