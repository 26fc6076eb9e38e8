"""The record logs of a store of several writers (`records.d/<writer>.jsonl`): deleting one
writer's log, with the envelopes it recorded, must not leave a store that checks clean for an
auditor who holds every writer's key."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.records import RecordLog
from collector.storage.layout import EnvelopeRecord
from verifier.findings import FindingId
from verifier.records import key_fingerprint, read_logs


def _record(path: str, device: str, nonce: str) -> EnvelopeRecord:
    return EnvelopeRecord(path=path, device=device, received="2026-12-07T01:00:00.000000Z", bytes=3, sha256="0" * 64,
                          nonce=nonce, started=None, trusted=True)


def test_a_deleted_writers_log_is_missing_for_an_auditor_holding_its_key(tmp_path: Path) -> None:
    folder = tmp_path / "store" / "records.d"
    folder.mkdir(parents=True)
    keys = {name: Ed25519PrivateKey.generate() for name in ("east", "west")}
    for name, nonce in (("east", "aa"), ("west", "bb")):
        RecordLog(tmp_path / "store", keys[name], log_path=folder / f"{name}.jsonl", baseline=False).append(
            [_record(f"xr-{name}/a.envelope", f"xr-{name}", nonce)])
    auditor = [key.public_key() for key in keys.values()]
    assert read_logs(folder, auditor).problems == []
    (folder / "west.jsonl").unlink()  # and xr-west's envelopes with it: nothing else is left to miss
    problems = read_logs(folder, auditor).problems
    missing = [finding for finding in problems if finding.id == FindingId.RECORD_LOG_MISSING]
    assert missing, problems
    assert key_fingerprint(keys["west"].public_key()) in missing[0].message


def test_a_started_writer_that_has_stored_nothing_has_a_log(tmp_path: Path) -> None:
    """So that the check above does not fault a worker whose queue was empty."""
    from collector.store import Store

    store = Store.open(tmp_path / "store")
    try:
        folder = tmp_path / "store" / "records.d"
        folder.mkdir()
        key = Ed25519PrivateKey.generate()
        RecordLog(store.root, key, log_path=folder / "idle.jsonl", baseline=False).start(store)
        assert read_logs(folder, [key.public_key()]).problems == []
    finally:
        store.close()
