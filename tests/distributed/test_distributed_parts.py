"""Distributed collection's parts: configuration and secrets, claims and takeover, heartbeats,
device states with several writers, record logs of several writers, metrics, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.alerts import AlertSink, render_metrics
from collector.distributed.config import DistributedConfigError, load_config
from collector.records import RecordLog
from collector.storage.layout import EnvelopeRecord
from collector.storage.opening import open_store
from collector.store import Store
from services import Postgres, new_database  # noqa: E402
from verifier.findings import FindingId
from verifier.records import read_logs

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, **fields: object) -> Path:
    import yaml

    document = {"store": "store", "trust_store": "trust", "inventory": "inventory.yaml", **fields}
    path = tmp_path / "distributed.yaml"
    path.write_text(yaml.safe_dump(document), "utf-8")
    return path


# --- configuration --------------------------------------------------------------------------


def test_a_password_written_in_the_configuration_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOSSIER_BROKER_URL", raising=False)
    monkeypatch.delenv("DOSSIER_DATABASE_DSN", raising=False)
    path = _config(tmp_path, broker_url="redis://:hunter2@redis:6379/0", database_dsn="host=db dbname=d")
    with pytest.raises(DistributedConfigError, match="expected no password written in the configuration") as caught:
        load_config(path)
    assert "hunter2" not in str(caught.value)
    path = _config(tmp_path, broker_url="redis://redis:6379/0", database_dsn="host=db password=hunter2")
    with pytest.raises(DistributedConfigError, match="database_dsn_file"):
        load_config(path)


def test_secrets_come_from_files_or_the_environment_and_stay_out_of_repr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dsn").write_text("host=db dbname=d password=hunter2\n", "utf-8")
    monkeypatch.setenv("DOSSIER_BROKER_URL", "redis://:s3cret@redis:6379/0")
    config = load_config(_config(tmp_path, database_dsn_file="dsn", queues={"emea": "region-emea"},
                                 policy="policy.yaml"))
    assert config.policy == tmp_path / "policy.yaml"
    assert config.database_dsn == "host=db dbname=d password=hunter2"
    assert config.broker_url == "redis://:s3cret@redis:6379/0"
    assert "hunter2" not in repr(config) and "s3cret" not in repr(config)
    assert config.store == tmp_path / "store"
    assert config.queue_for(("lab", "emea")) == "region-emea"
    assert config.queue_for(("lab",)) == "dossier"


def test_a_configuration_without_a_broker_or_with_an_unknown_field_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOSSIER_BROKER_URL", raising=False)
    with pytest.raises(DistributedConfigError, match="expected broker_url_file, \\$DOSSIER_BROKER_URL or broker_url"):
        load_config(_config(tmp_path, database_dsn="host=db"))
    with pytest.raises(DistributedConfigError, match="Additional properties are not allowed"):
        load_config(_config(tmp_path, broker_url="redis://r", database_dsn="host=db", brokr="typo"))


def test_without_configuration_the_store_is_the_local_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOSSIER_DISTRIBUTED_CONFIG", raising=False)
    monkeypatch.delenv("DOSSIER_DATABASE_DSN", raising=False)
    with open_store(tmp_path / "store") as store:
        assert type(store) is Store


def test_collect_and_status_import_neither_celery_nor_psycopg() -> None:
    probe = ("import sys\nfrom dossier_cli.main import load_subcommand\n"
             "for name in ('collect', 'status', 'worker', 'schedule'): load_subcommand(name)\n"
             "print(sorted({'celery', 'psycopg', 'kombu', 'redis'} & {m.split('.')[0] for m in sys.modules}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DOSSIER_DISTRIBUTED_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"


# --- metrics and alerts ---------------------------------------------------------------------


def test_metrics_name_devices_not_attempted_and_silent_workers() -> None:
    attempted = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    text = render_metrics({}, attempts={"xr-1": attempted, "xr-2": None}, not_attempted={"xr-2": None},
                          silent_workers={"gw-east": attempted})
    assert f'dossier_last_attempt_timestamp_seconds{{device="xr-1"}} {attempted.timestamp():.3f}' in text
    assert 'dossier_device_not_attempted{device="xr-1"} 0' in text
    assert 'dossier_device_not_attempted{device="xr-2"} 1' in text
    assert f'dossier_worker_silent_since_timestamp_seconds{{worker="gw-east"}} {attempted.timestamp():.3f}' in text
    assert "dossier_device_not_attempted" not in render_metrics({})  # one machine: as before
    alerts = AlertSink()
    alerts.not_attempted("xr-2", None, 2)
    alerts.worker_silent("gw-east", attempted)
    assert [alert.message.split(" :")[0] for alert in alerts.sent] == ["%DOSSIER-3-NOT_ATTEMPTED",
                                                                       "%DOSSIER-3-WORKER_SILENT"]


# --- claims, heartbeats, attempts (PostgreSQL) ------------------------------------------------


def test_a_device_is_claimed_once_per_run_and_taken_over_only_from_a_silent_worker(postgres: Postgres) -> None:
    from collector.distributed.coordination import Coordination

    coordination = Coordination(new_database(postgres, "claims"))
    try:
        for worker in ("alive", "dying"):
            coordination.heartbeat(worker, queues=["q"], host="h", pid=1, heartbeat_s=0.2, key_fingerprint=None)
        first = coordination.claim("run-1", "xr-1", "dying", silent_after_s=0.6, interval_s=60)
        assert first is not None and first.previous_worker is None
        assert coordination.claim("run-1", "xr-1", "alive", silent_after_s=0.6, interval_s=60) is None  # still beating
        time.sleep(0.8)
        coordination.heartbeat("alive", queues=["q"], host="h", pid=1, heartbeat_s=0.2, key_fingerprint=None)
        taken = coordination.claim("run-1", "xr-1", "alive", silent_after_s=0.6, interval_s=60)
        assert taken is not None and taken.previous_worker == "dying" and taken.previous_claimed == first.claimed
        assert [beat.worker for beat in coordination.silent_workers(beats=3)] == ["dying"]
        coordination.finish(taken, "trusted")
        assert coordination.claim("run-1", "xr-1", "alive", silent_after_s=0.6, interval_s=60) is None  # done
        assert coordination.claim("run-2", "xr-1", "alive", silent_after_s=0.6, interval_s=60) is not None  # next run
        skipped = coordination.claim("run-2", "xr-2", "alive", silent_after_s=0.6, interval_s=60)
        coordination.finish(skipped, "skipped")  # released: a redelivery polls it
        assert coordination.claim("run-2", "xr-2", "alive", silent_after_s=0.6, interval_s=60) is not None
        assert coordination.run_claims("run-1") == [("xr-1", "alive", "trusted", 1)]
        attempts = coordination.attempts()
        assert attempts["xr-1"].run_id == "run-2" and attempts["xr-1"].status is None  # begun, not ended
        later = datetime.now(UTC) + timedelta(seconds=121)
        assert coordination.stale_devices(["xr-1", "xr-3"], intervals=2, interval_s=60, now=later) == {
            "xr-1": attempts["xr-1"].attempted, "xr-3": None}
        coordination.retire("dying")
        assert coordination.silent_workers(beats=3) == []
    finally:
        coordination.close()


def _record(path: str, device: str, nonce: str) -> EnvelopeRecord:
    return EnvelopeRecord(path=path, device=device, received="2026-12-07T01:00:00.000000Z", bytes=3, sha256="0" * 64,
                          nonce=nonce, started=None, trusted=True)


def test_device_states_of_two_writers_do_not_overwrite_each_other(tmp_path: Path, postgres: Postgres) -> None:
    dsn = new_database(postgres, "states")
    first, second = open_store(tmp_path / "shared", dsn=dsn), open_store(tmp_path / "shared", dsn=dsn)
    try:
        first.write_states({"xr-1": {"last_status": "trusted"}, "xr-2": {"last_status": "trusted"}})
        seen = second.states()
        first.write_states({**seen, "xr-1": {"last_status": "failed"}})
        second.write_states({**seen, "xr-2": {"last_status": "untrusted"}})  # xr-1 read, not changed: not written
        assert second.states() == {"xr-1": {"last_status": "failed"}, "xr-2": {"last_status": "untrusted"}}
        first.index(_record("xr-1/a.envelope", "xr-1", "aa"))
        assert list(second.latest()) == ["xr-1"] and second.history("xr-1")[0].trusted is True
    finally:
        first.close()
        second.close()


# --- record logs of several writers -------------------------------------------------------


def test_each_writers_log_is_checked_with_its_own_key(tmp_path: Path) -> None:
    folder = tmp_path / "store" / "records.d"
    folder.mkdir(parents=True)
    keys = {name: Ed25519PrivateKey.generate() for name in ("east", "west", "rogue")}
    for name, nonce in (("east", "aa"), ("west", "bb")):
        RecordLog(tmp_path / "store", keys[name], log_path=folder / f"{name}.jsonl", baseline=False).append(
            [_record(f"xr-{name}/a.envelope", f"xr-{name}", nonce)])
    auditor = [keys["east"].public_key(), keys["west"].public_key()]
    checked = read_logs(folder, auditor)
    assert checked.problems == []
    assert sorted(checked.records) == ["xr-east/a.envelope", "xr-west/a.envelope"]
    # A writer whose key the auditor does not hold.
    RecordLog(tmp_path / "store", keys["rogue"], log_path=folder / "rogue.jsonl", baseline=False).append(
        [_record("xr-rogue/a.envelope", "xr-rogue", "cc")])
    checked = read_logs(folder, auditor)
    assert {finding.id for finding in checked.problems} == {FindingId.RECORD_OTHER_KEY}
    assert "xr-rogue/a.envelope" not in checked.records
    # An envelope recorded by two writers.
    RecordLog(tmp_path / "store", keys["west"], log_path=folder / "west.jsonl", baseline=False).append(
        [_record("xr-east/a.envelope", "xr-east", "dd")])
    assert FindingId.RECORD_MISMATCH in {finding.id for finding in read_logs(folder, auditor).problems}
    # Without keys each log's own header key is used, and that is said.
    assert FindingId.RECORD_KEY_NOT_PINNED in {finding.id for finding in read_logs(folder, None).problems}
    assert json.dumps([finding.to_json() for finding in read_logs(folder, auditor).problems])  # JSON-ready


def test_a_task_with_bad_arguments_from_the_broker_is_refused() -> None:
    from collector.distributed.engine import new_run_id, task_problem

    assert task_problem([new_run_id(), ["xr-0001", "xr-0002"]]) is None
    assert "does not match" in task_problem([new_run_id(), ["../../etc"]])
    assert task_problem(["run; DROP TABLE claims", ["xr-0001"]]) is not None
    assert task_problem([new_run_id(), []]) is not None
