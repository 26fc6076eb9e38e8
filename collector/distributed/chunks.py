"""A worker's side of distributed collection: collect one chunk of a run's devices.

The chunk goes through the same `Collector` as `dossier collect` (poll strategies, storage,
verification, record signing, appraisal); only the store (files on the shared folder, index in
PostgreSQL), the record log (this writer's own, `records.d/<writer>.jsonl`) and the claims
around each device differ.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifier.records import WRITERS_FOLDER
from verifier.stored import META_SUFFIX, sidecar_path

from ..collect import CollectOptions, Collector, DeviceOutcome
from ..errors import StoreError
from ..inventory import Device, load_inventory
from ..records import RecordLog, check_key_outside, load_or_create_key
from ..storage.postgres import PostgresStore
from .config import DistributedConfig, DistributedConfigError
from .coordination import Claim, Coordination

__all__ = ["RECORDS_FOLDER", "WRITER_KEYS_FOLDER", "WorkerContext", "writer_key_path", "writer_keys_folder"]

log = logging.getLogger("collector.distributed")

#: Finished claims written together at most this many, or this long after the first waits.
FINISH_BATCH = 16
FINISH_EVERY_S = 0.5

RECORDS_FOLDER = WRITERS_FOLDER  # one record log per writer in the shared store


#: Beside the trust store: each writer's key (`<worker>.pem`, its public half `<worker>.pub.pem`).
WRITER_KEYS_FOLDER = "collector-keys"


def writer_keys_folder(trust_store: Path) -> Path:
    """Where the writers' keys are by default (and where status and reindex look for them)."""
    return Path(trust_store).parent / WRITER_KEYS_FOLDER


def writer_key_path(config: DistributedConfig) -> Path:
    """This writer's signing key: the configured one, else collector-keys/<worker>.pem beside
    the trust store (outside the shared store)."""
    return config.collector_key or writer_keys_folder(config.trust_store) / f"{config.worker_name}.pem"


@dataclass
class WorkerContext:
    """What a worker process holds between chunks: its store, coordination, key and log."""

    config: DistributedConfig
    queues: tuple[str, ...]
    store: PostgresStore = field(init=False)
    coordination: Coordination = field(init=False)
    records: RecordLog = field(init=False)
    _beating: threading.Event = field(init=False, default_factory=threading.Event)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _inventory_cache: tuple[tuple[int, int, int], list[Device]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        config = self.config
        self.store = PostgresStore.open_shared(config.store, config.database_dsn)
        self.coordination = Coordination(config.database_dsn)
        key_path = writer_key_path(config)
        check_key_outside(key_path, self.store.root)
        key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = load_or_create_key(key_path)
        (self.store.root / RECORDS_FOLDER).mkdir(exist_ok=True)
        self.records = RecordLog(self.store.root, key, baseline=False,
                                 log_path=self.store.root / RECORDS_FOLDER / f"{config.worker_name}.jsonl")
        self.records.check_key()
        self.records.start(self.store)  # the log exists from now: an auditor holding this key expects it
        from verifier.records import key_fingerprint

        self.fingerprint = key_fingerprint(key.public_key())
        self.policy = None
        if config.policy is not None:
            from ..insights import PolicyError, load_policy

            try:
                self.policy = load_policy(config.policy)
            except PolicyError as exc:
                raise DistributedConfigError(f"policy: {exc}") from None
        self.beat()

    def _inventory(self) -> list[Device]:
        """The inventory's devices, read again only when its file changed (reading a large one
        costs seconds; a worker takes chunks every few)."""
        path = Path(self.config.inventory)
        info = path.stat()
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        if self._inventory_cache is None or self._inventory_cache[0] != key:
            self._inventory_cache = (key, list(load_inventory(path).devices))
        return self._inventory_cache[1]

    def beat(self) -> None:
        self.coordination.heartbeat(self.config.worker_name, queues=self.queues, host=socket.gethostname(),
                                    pid=os.getpid(), heartbeat_s=self.config.heartbeat_s,
                                    key_fingerprint=self.fingerprint)

    def start_heartbeats(self) -> threading.Thread:
        """Beat every `heartbeat_s` in a thread until `close` (while chunks run, too)."""
        def loop() -> None:
            while not self._beating.wait(self.config.heartbeat_s):
                try:
                    self.beat()
                except StoreError as exc:  # the database is away: logged, the next beat retries
                    log.warning("heartbeat of %s failed: %s", self.config.worker_name, exc)

        thread = threading.Thread(target=loop, name="heartbeat", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Stop beating and leave (a worker stopped on purpose is not reported as silent)."""
        self._beating.set()
        try:
            self.coordination.retire(self.config.worker_name)
        finally:
            self.coordination.close()
        self.store.close()

    def collect_chunk(self, run_id: str, names: Sequence[str]) -> dict[str, Any]:
        """Collect the devices `names` of `run_id`: each claimed first (skipped when done or
        held by a live worker), devices a dead worker stored but did not finish indexed from
        their files, the rest polled. Returns counts by what happened."""
        config = self.config
        wanted = set(names)
        devices = [device for device in self._inventory() if device.name in wanted]
        for missing in sorted(wanted - {device.name for device in devices}):
            log.warning("run %s: device %s is not in the inventory %s any more; not polled", run_id, missing,
                        config.inventory)
        claims: dict[str, Claim] = {}
        to_poll = []
        counts = {"polled": 0, "already_done": 0, "recovered": 0}
        won = self.coordination.claim_many(run_id, [device.name for device in devices], config.worker_name,
                                           silent_after_s=config.silent_after_s, interval_s=config.interval_s)
        for device in devices:
            claim = won.get(device.name)
            if claim is None:
                counts["already_done"] += 1
                continue
            if claim.previous_worker is not None and claim.previous_claimed is not None:
                # The dead worker may have stored the device's outputs before it could say so.
                stored = self.store.files_since(device.name, claim.previous_claimed.replace(microsecond=0))
                # An envelope without its metadata was cut off before it was verified (the nonce
                # it answers is in the metadata): kept as evidence, not indexed, and polled again.
                complete = [path for path in stored if sidecar_path(path, META_SUFFIX).exists()]
                for orphan in sorted(set(stored) - set(complete)):
                    log.warning("run %s: %s holds %s, stored by %s as it stopped, without its metadata: kept, not "
                                "indexed; the device is polled again", run_id, device.name, orphan.name,
                                claim.previous_worker)
                if complete:
                    self.store.index_files(complete)
                    self.coordination.finish(claim, "recovered")
                    counts["recovered"] += 1
                    log.warning("run %s: %s was stored by %s, which stopped before finishing it; indexed from its "
                                "files, not polled again", run_id, device.name, claim.previous_worker)
                    continue
            claims[device.name] = claim
            to_poll.append(device)

        ending = _Finishing(self.coordination, claims, self.store)
        with self._lock:  # one chunk at a time per context (the solo pool runs one anyway)
            collector = Collector(self.store, trust_store_path=config.trust_store,
                                  options=CollectOptions(concurrency=config.concurrency, policy=self.policy),
                                  records=self.records,
                                  on_outcome=ending.add)
            try:
                summary = collector.run(to_poll) if to_poll else None
            finally:
                ending.flush()
        counts["polled"] = len(to_poll)
        if summary is not None:
            counts.update(summary.counts)
        return counts


class _Finishing:
    """Claims finished, written to PostgreSQL a batch at a time (FINISH_BATCH outcomes, or
    FINISH_EVERY_S after the first waiting) rather than per device: each database call hands the
    GIL over among the session threads. A worker dying loses at most the batch not yet written:
    those devices' claims look unfinished, and the worker taking over finds what they stored
    (`collect_chunk`) or polls again the ones that stored nothing (a failed poll)."""

    def __init__(self, coordination: Coordination, claims: dict[str, Claim], store: PostgresStore) -> None:
        self._coordination = coordination
        self._store = store
        self._claims = claims
        self._waiting: list[tuple[Claim, str]] = []
        self._since = 0.0

    def add(self, outcome: DeviceOutcome) -> None:
        if not self._waiting:
            self._since = time.monotonic()
        self._waiting.append((self._claims[outcome.device], outcome.status))
        if len(self._waiting) >= FINISH_BATCH or time.monotonic() - self._since >= FINISH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        if waiting:
            # The devices' index rows first: a claim finished says its outputs are indexed (a
            # worker taking over looks for the files of unfinished claims only).
            self._store.flush_index()
            self._coordination.finish_many(waiting)
