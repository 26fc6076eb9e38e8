"""The collector's loop inside the service (`dossier serve --inventory`): the inventory polled
every interval in one background thread, with its own store handle, so a slow fleet never
holds up a request and one process polls and serves."""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from ..collect import CollectOptions, Collector
from ..errors import CollectorError
from ..lock import RunLock
from ..store import Store
from .settings import ServiceSettings

__all__ = ["CollectorLoop"]

log = logging.getLogger("collector.service")
#: Each wait is the interval times (1 +/- this), as `dossier collect --interval` does.
INTERVAL_JITTER = 0.1


class CollectorLoop:
    """Polls `inventory` every `settings.collect_interval_s` until `stop`."""

    def __init__(self, settings: ServiceSettings, inventory: Any, *, alerts: Any = None) -> None:
        self.settings = settings
        self.alerts = alerts  # an AlertSink (with the service's webhooks); None: a fresh one per run
        self.inventory = inventory
        self.stopping = threading.Event()
        self.runs = 0
        self.last_error: str | None = None
        #: Set after each collection run (tests and the dashboard wait on it, never on a timer).
        self.ran = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dossier-serve-collector", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Ask the loop to finish the devices in flight, and wait for it (up to `timeout`)."""
        self.stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        from ..records import RecordLog, load_or_create_key
        from verifier.records import default_key_path

        devices = self.inventory.select()
        while not self.stopping.is_set():
            try:
                store = Store.open(self.settings.store)
                try:
                    trust = self.settings.trust_store
                    key = self.settings.collector_key or (default_key_path(trust) if trust is not None else None)
                    records = RecordLog(store.root, load_or_create_key(key)) if key is not None else None
                    lock = RunLock(store.root / "collect.lock")
                    lock.acquire()
                    try:
                        policy = self.settings.extra.get("policy")
                        options = CollectOptions(policy=policy) if policy is not None else None
                        summary = Collector(store, trust_store_path=trust, records=records, alerts=self.alerts,
                                            options=options).run(devices, stop=self.stopping)
                    finally:
                        lock.release()
                finally:
                    store.close()
                self.runs += 1
                self.last_error = None
                log.info("collected %s", summary.counts)
            except CollectorError as exc:  # another run holds the lock, the store is full, ...
                self.last_error = str(exc)
                log.warning("collection skipped: %s", exc)
            except Exception as exc:  # a bug in one run must not end polling for the life of the service
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("the collection run failed; the next one runs at the next interval", exc_info=exc)
            self.ran.set()
            interval = self.settings.collect_interval_s
            self.stopping.wait(interval * random.uniform(1 - INTERVAL_JITTER, 1 + INTERVAL_JITTER))
