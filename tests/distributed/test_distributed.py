"""Distributed collection end to end: Redis, PostgreSQL, `dossier schedule` and `dossier worker`
processes against an emulated fleet."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from collector.service.app import create_app
from collector.service.settings import ServiceSettings
from dossier_cli.main import cli

from rig import (enroll, processes, start_fleet, stop_fleet, wait_for, write_config,  # noqa: E402
                 write_inventory)
from services import Postgres, new_database  # noqa: E402


def _connect(dsn: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def _finished(dsn: str, run_id: str, count: int) -> bool:
    with _connect(dsn) as db:
        done = db.execute("SELECT count(*) FROM claims WHERE run_id = %s AND finished IS NOT NULL",
                          (run_id,)).fetchone()[0]
    return done == count


def _workers_beating(dsn: str, names: set[str]) -> bool:
    import psycopg

    with _connect(dsn) as db:
        try:
            rows = db.execute("SELECT worker FROM workers").fetchall()
        except psycopg.errors.UndefinedTable:  # until the first worker starts
            return False
    return names <= {row[0] for row in rows}


@pytest.mark.slow  # 200 devices, two workers and a scheduler as processes, a kill and a redelivery: ~40 s
def test_a_killed_workers_chunk_is_taken_over_and_every_device_collected_once(
        tmp_path: Path, redis_url: str, postgres: Postgres) -> None:
    dsn = new_database(postgres, "takeover")
    fleet = start_fleet(tmp_path / "fleet", 200)
    try:
        inventory = write_inventory(tmp_path / "inventory.yaml", fleet.inventory()["devices"])
        trust = tmp_path / "trust"
        enroll(inventory, trust)
        store = tmp_path / "shared-store"
        config = write_config(tmp_path / "distributed.yaml", broker_url=redis_url, dsn=dsn, store=store, trust=trust,
                              inventory=inventory, chunk_size=10)
        with processes(config, tmp_path / "logs") as started:
            doomed = started.worker("doomed", concurrency=2)
            started.worker("survivor", concurrency=4)
            wait_for(lambda: _workers_beating(dsn, {"doomed", "survivor"}), 60, "both workers heartbeating")
            run_id = started.schedule_once()

            def doomed_mid_chunk() -> bool:
                with _connect(dsn) as db:
                    done, open_ = db.execute(
                        "SELECT count(*) FILTER (WHERE finished IS NOT NULL), count(*) FILTER (WHERE finished IS NULL) "
                        "FROM claims WHERE run_id = %s AND worker = 'doomed'", (run_id,)).fetchone()
                return done >= 1 and open_ >= 1

            wait_for(doomed_mid_chunk, 60, "the doomed worker in the middle of a chunk", every=0.02)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
            wait_for(lambda: _finished(dsn, run_id, 200), 60, "every device of the run finished")
            survivor_log = started.log("survivor")
    finally:
        stop_fleet(fleet)
    with _connect(dsn) as db:
        claims = db.execute("SELECT device, worker, status, takeovers FROM claims WHERE run_id = %s",
                            (run_id,)).fetchall()
        rows = db.execute("SELECT device, count(*), bool_and(trusted) FROM envelopes GROUP BY device").fetchall()
    # Every device claimed once, polled once: one envelope each, verified trusted, in PostgreSQL.
    assert len(claims) == 200
    assert {status for _, _, status, _ in claims} <= {"trusted", "recovered"}, survivor_log[-3000:]
    assert sorted(device for device, _, _ in rows) == sorted(entry.name for entry in fleet.devices)
    assert all(count == 1 and trusted for _, count, trusted in rows), rows
    # The survivor took over what the doomed worker held when it died.
    assert any(worker == "survivor" and takeovers >= 1 for _, worker, _, takeovers in claims), claims
    assert {worker for _, worker, _, _ in claims} == {"doomed", "survivor"}
    # Each writer signed its own record log, chained on its own.
    assert sorted(p.name for p in (store / "records.d").iterdir()) == ["doomed.jsonl", "survivor.jsonl"]
    # Status reads the shared index, checks each writer's records with its key, and names the
    # worker that stopped heartbeating.
    result = CliRunner().invoke(cli, ["status", "--config", str(config), "--json"])
    status = json.loads(result.stdout)
    assert list(status["silent_workers"]) == ["doomed"]
    assert status["not_attempted"] == {}
    assert result.exit_code == 1
    assert len(status["devices"]) == 200
    unrecorded = [row["device"] for row in status["devices"] if row["last_status"] != "trusted"]
    # At most the devices the doomed worker stored but did not get to record (recovered from files).
    recovered = sorted(device for device, _, state, _ in claims if state == "recovered")
    assert set(unrecorded) <= set(recovered), (unrecorded, recovered)
    assert status["records"]["problems"] == []


@pytest.mark.slow  # two worker processes, a scheduler process, status and verify over the shared index: ~15-25 s
def test_two_groups_routed_to_two_queues_each_worker_polls_only_its_group(
        tmp_path: Path, redis_url: str, postgres: Postgres) -> None:
    dsn = new_database(postgres, "routing")
    fleet = start_fleet(tmp_path / "fleet", 8, seed=12)
    try:
        names = [entry.name for entry in fleet.devices]
        groups = {"east": names[:4], "west": names[4:]}
        inventory = write_inventory(tmp_path / "inventory.yaml", fleet.inventory()["devices"], groups)
        trust = tmp_path / "trust"
        enroll(inventory, trust)
        config = write_config(tmp_path / "distributed.yaml", broker_url=redis_url, dsn=dsn,
                              store=tmp_path / "shared-store", trust=trust, inventory=inventory, chunk_size=2,
                              queues={"east": "region-east", "west": "region-west"})
        with processes(config, tmp_path / "logs") as started:
            started.worker("east-gw", "region-east")
            started.worker("west-gw", "region-west")
            wait_for(lambda: _workers_beating(dsn, {"east-gw", "west-gw"}), 60, "both workers heartbeating")
            run_id = started.schedule_once()
            wait_for(lambda: _finished(dsn, run_id, 8), 60, "every device of the run finished")
    finally:
        stop_fleet(fleet)
    with _connect(dsn) as db:
        by_worker = dict(db.execute("SELECT worker, array_agg(device ORDER BY device) FROM claims WHERE run_id = %s "
                                    "GROUP BY worker", (run_id,)).fetchall())
    assert by_worker == {"east-gw": groups["east"], "west-gw": groups["west"]}
    # Read from any machine: status over the shared index, every writer's records checked with
    # its key; the workers stopped on purpose are not named as silent.
    result = CliRunner().invoke(cli, ["status", "--config", str(config), "--json"])
    status = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert [row["last_status"] for row in status["devices"]] == ["trusted"] * 8
    assert all(row["last_attempt"] for row in status["devices"])
    assert status["silent_workers"] == {} and status["not_attempted"] == {}
    # The service reads the shared index too (`dossier serve --config`): every device trusted.
    result = CliRunner().invoke(cli, ["serve", "--config", str(config), "--inventory", str(inventory)])
    assert result.exit_code == 2 and "found both" in result.output
    app = create_app(ServiceSettings(store=tmp_path / "shared-store", trust_store=trust, distributed_config=config,
                                     warm_on_start=False))
    with TestClient(app) as client:
        answer = client.get("/api/v1/fleet")
    assert answer.status_code == 200, answer.text
    rows = answer.json()["devices"]
    assert [row["device"] for row in rows] == names
    assert {row["verification"]["state"] for row in rows} == {"trusted"}, rows
    # `dossier verify --at received` on a stored envelope, with the folder of writers' keys.
    envelope = next((tmp_path / "shared-store" / names[5]).glob("*.envelope"))
    result = CliRunner().invoke(cli, ["verify", "--trust-store", str(trust), "--at", "received", "--collector-key",
                                      str(trust.parent / "collector-keys"), "--json", str(envelope)])
    assert result.exit_code == 0, result.output
