"""Benchmark distributed collection: 1, 2 and 4 `dossier worker` processes against one `dossier collect`.

    python3 bench/distributed.py                       # 300 devices over 3 emulator processes
    python3 bench/distributed.py --devices 200 --rounds 3 --workers 1,2,4

Every variant polls the same emulated fleet in the same run, alternating round by round:
  * collect: one `dossier collect` process (SQLite index, local store), its run's own start and
    end (from its JSON summary: interpreter start-up excluded, as a long-running worker's is);
  * workers=N: N `dossier worker` processes (already started and heartbeating, as in service)
    fed by one run of the scheduler (`send_run`: the fleet in chunks on Redis), into a shared
    store with the index in PostgreSQL; from the first claim to the last device finished.
Redis and PostgreSQL are private instances started here. It prints devices per second (best
round) and each variant's ratio to collect, then the workers needed for 100,000 devices every
15 minutes from the per-process rate. On this 2-core machine workers, emulators and databases
share two cores: the figures say what one process costs, not how a cluster scales.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "distributed"))

from collect import start_emulators, stop_emulators  # noqa: E402
from rig import processes, wait_for, write_config  # noqa: E402
from services import new_database, postgres_server, redis_server  # noqa: E402

from collector.enroll import enroll_root, fetch_root  # noqa: E402
from collector.inventory import load_inventory  # noqa: E402

#: The target the estimate is for.
TARGET_DEVICES, TARGET_PERIOD_S = 100_000, 15 * 60


def merged_inventory(inventories: list[Path], out: Path) -> Path:
    """One inventory of every emulator process's devices, each name prefixed with its process."""
    devices = []
    for index, path in enumerate(inventories):
        for entry in yaml.safe_load(path.read_text("utf-8"))["devices"]:
            devices.append({**entry, "name": f"e{index}-{entry['name']}"})
    devices.sort(key=lambda entry: (entry["name"].split("-", 1)[1], entry["name"]))  # every emulator evenly
    out.write_text(yaml.safe_dump({"devices": devices}, sort_keys=False), "utf-8")
    return out


def collect_once(inventory: Path, store: Path, trust: Path, concurrency: int) -> float:
    """Devices per second of one `dossier collect` run (its own start to end)."""
    done = subprocess.run([sys.executable, "-m", "dossier_cli", "collect", "-i", str(inventory), "--store", str(store),
                           "--trust-store", str(trust), "--concurrency", str(concurrency), "--json"],
                          capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    summary = json.loads(done.stdout)
    from datetime import datetime

    begin = datetime.fromisoformat(summary["started"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(summary["finished"].replace("Z", "+00:00"))
    assert summary["counts"]["trusted"] == len(summary["devices"]), summary["counts"]
    return len(summary["devices"]) / (end - begin).total_seconds()


def workers_once(config_path: Path, dsn: str, count: int) -> float:
    """Devices per second of one run through `dossier schedule`'s machinery and the workers."""
    import psycopg

    from collector.distributed.config import load_config
    from collector.distributed.coordination import Coordination
    from collector.distributed.engine import make_app, send_run

    config = load_config(config_path)
    coordination = Coordination(config.database_dsn)
    try:
        run_id, _ = send_run(make_app(config), config, coordination)
    finally:
        coordination.close()

    def finished() -> tuple[float, int] | None:
        with psycopg.connect(dsn, autocommit=True) as db:
            row = db.execute("SELECT count(*) FILTER (WHERE finished IS NOT NULL), "
                             "extract(epoch FROM max(finished) - min(claimed)), "
                             "count(*) FILTER (WHERE status <> 'trusted') FROM claims WHERE run_id = %s",
                             (run_id,)).fetchone()
        return (float(row[1]), row[2]) if row[0] == count else None

    seconds, not_trusted = wait_for(finished, 600, f"every device of run {run_id} finished", every=0.2)
    assert not_trusted == 0, f"{not_trusted} devices not trusted in run {run_id}"
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--emulators", type=int, default=3, help="emulator processes")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts to measure")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="SSH sessions per collect/worker process")
    parser.add_argument("--chunk-size", type=int, default=25)
    parser.add_argument("--state-dir", type=Path, default=Path(tempfile.gettempdir()) / "dossier-bench-distributed")
    args = parser.parse_args()
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    logging.getLogger("collector.enroll").setLevel(logging.ERROR)  # TOFU is the bench's premise
    counts = [int(n) for n in args.workers.split(",")]
    args.state_dir.mkdir(parents=True, exist_ok=True)
    emulators, inventories = start_emulators(args.state_dir, args.devices, args.emulators, 5)
    work = Path(tempfile.mkdtemp(prefix="dossier-bench-dist-"))
    try:
        inventory = merged_inventory(inventories, work / "inventory.yaml")
        devices = load_inventory(inventory).devices
        trust = work / "truststore"
        with ThreadPoolExecutor(16) as pool:
            for candidate in pool.map(fetch_root, devices):
                enroll_root(trust, candidate, source="tofu")
        print(f"{len(devices)} devices over {len(emulators)} emulator processes, enrolled", flush=True)
        best: dict[str, float] = {}
        with redis_server() as broker, postgres_server() as server:
            for round_number in range(args.rounds):
                rate = collect_once(inventory, work / f"collect-store-{round_number}", trust, args.concurrency)
                best["collect"] = max(best.get("collect", 0.0), rate)
                print(f"round {round_number + 1}: collect {rate:.1f} dev/s", flush=True)
                for count in counts:
                    dsn = new_database(server, f"r{round_number}w{count}")
                    config = write_config(work / f"w{count}-{round_number}.yaml", broker_url=broker, dsn=dsn,
                                          store=work / f"shared-{round_number}-{count}", trust=trust,
                                          inventory=inventory, chunk_size=args.chunk_size,
                                          concurrency=args.concurrency, visibility_timeout_s=600)
                    with processes(config, work / "logs") as started:
                        for number in range(count):
                            started.worker(f"w{number}", concurrency=args.concurrency)
                        names = {f"w{number}" for number in range(count)}

                        def beating(dsn: str = dsn, names: set[str] = names) -> bool:
                            import psycopg

                            with psycopg.connect(dsn, autocommit=True) as db:
                                try:
                                    rows = db.execute("SELECT worker FROM workers").fetchall()
                                except psycopg.errors.UndefinedTable:
                                    return False
                            return names <= {row[0] for row in rows}

                        wait_for(beating, 120, f"{count} workers heartbeating", every=0.2)
                        time.sleep(1.0)  # let the workers' consumers reach Redis after their heartbeat
                        rate = workers_once(config, dsn, len(devices))
                    best[f"workers={count}"] = max(best.get(f"workers={count}", 0.0), rate)
                    print(f"round {round_number + 1}: workers={count} {rate:.1f} dev/s", flush=True)
    finally:
        stop_emulators(emulators)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'variant':<12} {'dev/s':>8} {'x collect':>10} {'dev/s per process':>18}")
    for name, rate in best.items():
        per = rate / (int(name.split("=")[1]) if "=" in name else 1)
        print(f"{name:<12} {rate:>8.1f} {rate / best['collect']:>10.2f} {per:>18.1f}")
    needed = TARGET_DEVICES / TARGET_PERIOD_S
    per_worker = best.get("workers=1", 0.0)
    if per_worker:
        print(f"\n{TARGET_DEVICES:,} devices every {TARGET_PERIOD_S // 60} minutes = {needed:.0f} devices/s: "
              f"{math.ceil(needed / per_worker)} worker processes at the 1-worker rate ({per_worker:.1f} dev/s each, "
              "one core per worker process and emulated devices as fast as these)")


if __name__ == "__main__":
    main()
