"""Poll a fleet: a fresh nonce per device, exact storage, verification at once, retries.

For each device (in a bounded worker pool):
  (1) draw a 16-byte nonce from the OS CSPRNG; the same hex goes on the dossier and on
      `utility sign`, and a retry draws a new one (a nonce is never sent twice);
  (2) run the command over an SSH exec channel with connect / auth / command / device deadlines;
  (3) store the output byte for byte (atomic, never overwriting);
  (4) verify it with the verifier library against the trust store and the nonce sent, at the
      time it was received, and write its metadata file with the verdict in it;
  (5) update the device's state: increments, alert schedule, last success.
Transient failures (refused, reset, timeout, rate-limited) are retried with exponential backoff
and jitter inside the device's deadline; authentication and host-key failures never are. One
device's failure never stops the others.
"""

from __future__ import annotations

import logging
import queue
import random
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509

from .alerts import AlertSink
from .errors import CollectorError, InventoryError, StoreError
from .inventory import Device
from .platforms import profile_for
from .records import RecordLog, default_key_path, load_or_create_key
from .ssh import CommandResult, run_command
from .store import EnvelopeRecord, Store, StoredVerdict, new_poll_id
from .verifying import (
    _BASE_TRUST_STORES,
    FILESYSTEM_ITEM,
    Checked,
    freeze_trust_store,
    release_trust_store,
    stored_verdict,
    verify_many,
)

__all__ = ["NONCE_BYTES", "CollectOptions", "Collector", "DeviceOutcome", "RunSummary", "new_nonce"]

T = TypeVar("T")
log = logging.getLogger(__name__)

#: ENVELOPE.md allows 1-64 bytes; 16 bytes from a CSPRNG never repeat in practice.
NONCE_BYTES = 16

TRUSTED, UNTRUSTED, FAILED, SKIPPED = "trusted", "untrusted", "failed", "skipped"
#: Outputs received but not yet stored and verified, per SSH slot, before new sessions wait.
BACKLOG_PER_SESSION = 2
#: Outputs stored and verified together at most (`Store.save_many`), and
#: their bytes (a batch takes outputs until it holds this much; one output may hold more).
MAX_BATCH = 16
MAX_BATCH_BYTES = 16 * 1024 * 1024
#: Device states (one file for the fleet) are written at most this often during a run, and at
#: its end.
STATES_WRITE_INTERVAL_S = 5.0


def new_nonce() -> str:
    """A fresh nonce as lower-case hex, from the OS CSPRNG."""
    return secrets.token_bytes(NONCE_BYTES).hex()


@dataclass(frozen=True)
class CollectOptions:
    """How a run behaves; see `dossier collect --help` for each."""

    concurrency: int = 16
    #: Whole-run bound in seconds (None: only per-device deadlines apply).
    run_deadline_s: float | None = None
    #: Attempts after the first, for transient failures only.
    retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    #: Override the inventory's items for every device.
    items: tuple[str, ...] | None = None
    verify: bool = True
    #: A `collector.insights.Policy`: appraise each stored envelope as it is collected.
    policy: Any = None
    #: Threads that store and verify what the sessions fetched, a batch at a time. Their work is
    #: CPU under the GIL except for syncfs/fsync, so two suffice (one computes
    #: while the other waits); more only contend for the GIL with the session threads.
    finish_workers: int = 2


@dataclass
class DeviceOutcome:
    """What happened to one device in one run."""

    device: str
    host: str
    status: str  # trusted | untrusted | failed | skipped
    reason: str | None = None
    message: str | None = None
    attempts: int = 0
    duration_s: float = 0.0
    bytes: int | None = None
    path: str | None = None
    nonce: str | None = None
    received: str | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    days_to_expiry: dict[str, int] = field(default_factory=dict)
    #: {"status", "trust_vector"} when the run appraises (`--policy`).
    appraisal: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Fetched:
    """An output received, on its way to the store and the verifier."""

    device: Device
    outcome: DeviceOutcome
    result: CommandResult
    nonce_hex: str
    command: str
    items: tuple[str, ...]
    attempt: int
    state: dict[str, Any]
    begin: float


@dataclass
class RunSummary:
    """All outcomes of one run."""

    started: str
    finished: str
    store: str
    outcomes: list[DeviceOutcome]

    @property
    def counts(self) -> dict[str, int]:
        counts = {TRUSTED: 0, UNTRUSTED: 0, FAILED: 0, SKIPPED: 0}
        for outcome in self.outcomes:
            counts[outcome.status] += 1
        return counts

    @property
    def exit_code(self) -> int:
        """0 when every device was collected and trusted, else 1."""
        return 0 if self.outcomes and all(o.status == TRUSTED for o in self.outcomes) else 1

    def to_json(self) -> dict[str, Any]:
        return {"started": self.started, "finished": self.finished, "store": self.store,
                "counts": self.counts, "exit_code": self.exit_code,
                "devices": [o.to_json() for o in self.outcomes]}


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Collector:
    """Runs collections against one store and one trust store."""

    def __init__(self, store: Store, *, trust_store_path: Path | None, options: CollectOptions | None = None,
                 alerts: AlertSink | None = None, rng: random.Random | None = None,
                 on_outcome: Callable[[DeviceOutcome], None] | None = None,
                 records: RecordLog | None = None) -> None:
        self.store = store
        # Every stored output gets a signed record (`collector.records`); by default with the
        # key beside the trust store, made on first use.
        if records is None and trust_store_path is not None:
            records = RecordLog(store.root, load_or_create_key(default_key_path(Path(trust_store_path))))
        self.records = records
        self.trust_store_path = trust_store_path
        self.options = options or CollectOptions()
        self.alerts = alerts or AlertSink()
        self.rng = rng or random.SystemRandom()
        self.on_outcome = on_outcome
        # Device states live in memory between polls of this collector (the --interval loop);
        # the file is read at the first poll, written every few seconds (`write_states`).
        self._states: dict[str, dict[str, Any]] = {}
        self._states_loaded = False
        self._states_changed = False
        self._states_written = time.monotonic()
        self._state_lock = threading.Lock()
        self._state_write_lock = threading.Lock()
        self._state_write_failed = False

    # --- the run -------------------------------------------------------------------------------

    def run(self, devices: Sequence[Device], *, stop: threading.Event | None = None) -> RunSummary:
        """Poll every device once; never raises for a device's failure.

        The caller holds the store's `RunLock` (the CLI and the demo do), so that two runs
        never write one store. Setting `stop` lets in-flight devices finish and skips the rest.
        """
        stop = stop or threading.Event()
        started = _iso_now()
        run_deadline = (time.monotonic() + self.options.run_deadline_s
                        if self.options.run_deadline_s is not None else None)
        if self.options.verify and self.trust_store_path is not None:
            from verifier import TrustStore  # collector -> verifier is the allowed direction

            # Fail early if it is damaged; then verify the whole run against this one view of
            # it (each file read once: no file-system call per envelope; changes made during
            # the run apply from the next run).
            opened = TrustStore.open(self.trust_store_path, create=True)
            freeze_trust_store(str(self.trust_store_path), opened=opened)  # the parsed files persist
        self.store.recover()
        self.store.mark_dirty()
        outcomes: dict[str, DeviceOutcome] = {}
        pending = list(devices)
        try:
            concurrency = max(1, self.options.concurrency)
            # SSH sessions and store+verify run in separate pools: a session's slot is free
            # again as soon as the output is in, while storing and verification go on beside it
            # (a batch at a time: `_Finishers`).
            # Outputs waiting for their turn are bounded (memory) by BACKLOG_PER_SESSION.
            # Index rows are written a batch at a time (the run marked the index dirty above,
            # so a crash before a batch is written is repaired by the next run's reindex).
            # Futures report themselves here when done: one queue operation per completion
            # (concurrent.futures.wait would lock and unlock every pending future each time).
            completed: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
            with self.store.batched_index(), \
                 ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="collect") as sessions, \
                 _Finishers(self._finish_many, self._finishers(concurrency), completed) as finishers:
                fetching: dict[Future[Any], Device] = {}
                finishing: dict[Future[DeviceOutcome], Device] = {}
                backlog = BACKLOG_PER_SESSION * concurrency
                winding_down = False
                while pending or fetching or finishing:
                    # Submit only as slots free up, so a stop or the run deadline keeps the
                    # devices not yet started from starting (in-flight ones finish).
                    while pending and len(fetching) < concurrency and len(finishing) < backlog:
                        device = pending.pop(0)
                        if stop.is_set() or (run_deadline is not None and time.monotonic() >= run_deadline):
                            outcomes[device.name] = self._skipped(device, stop.is_set())
                            continue
                        future = sessions.submit(self._fetch, device, run_deadline, stop)
                        fetching[future] = device
                        future.add_done_callback(completed.put)
                    if not fetching and not finishing:
                        continue
                    done = [completed.get()]
                    while not completed.empty():
                        done.append(completed.get())
                    for future in done:
                        if future in fetching:
                            device = fetching.pop(future)
                            fetched = future.result()
                            if not isinstance(fetched, DeviceOutcome):
                                finishing[finishers.submit(fetched)] = device
                                continue
                            outcome = fetched
                        else:
                            device = finishing.pop(future)
                            outcome = future.result()
                        outcomes[device.name] = outcome
                        if self.on_outcome:
                            self.on_outcome(outcome)
                    if not pending and not fetching and not winding_down:
                        # Nothing more to poll or to store: the idle threads end now, beside the
                        # last batches, rather than one by one when the run ends.
                        winding_down = True
                        sessions.shutdown(wait=False)
                        finishers.no_more()
        finally:
            try:
                self.write_states()
                self._sync_store(failing=sys.exc_info()[1] is not None)
                # Only once every stored name is durable, and kept (by the store) when a write
                # to the index failed: the next run then rebuilds it from the files.
                self.store.mark_clean()
            finally:
                if self.trust_store_path is not None:
                    release_trust_store(str(self.trust_store_path))  # the next run takes a fresh view
        ordered = [outcomes[d.name] for d in devices if d.name in outcomes]
        return RunSummary(started=started, finished=_iso_now(), store=str(self.store.root),
                          outcomes=ordered)

    def _sync_store(self, *, failing: bool) -> None:
        """Wait until every stored name is durable. While another exception is on its way out
        (an interrupt, a bug), a sync failure is logged, not raised over it."""
        try:
            self.store.sync()
        except CollectorError as exc:
            if not failing:
                raise
            log.error("%s", exc)

    def verify_call(self, function: Callable[..., Checked], args: tuple[Any, ...]) -> Checked:
        """`function(*args)`: a `collector.verifying` function, in this thread."""
        return function(*args)

    @property
    def trust_store_arg(self) -> str | None:
        """The trust store's path as the verification functions take it."""
        return str(self.trust_store_path) if self.trust_store_path is not None else None

    def _finishers(self, concurrency: int) -> int:
        """Store+verify threads: `finish_workers`, at most one per session."""
        return max(1, min(self.options.finish_workers, concurrency))

    def _skipped(self, device: Device, stopping: bool) -> DeviceOutcome:
        why = ("the collector was asked to stop before polling it" if stopping
               else "the run deadline passed before this device was polled; raise --deadline "
                    "or --concurrency")
        outcome = DeviceOutcome(device=device.name, host=device.host, status=SKIPPED,
                                reason="run.stopped" if stopping else "run.deadline", message=why)
        if self.on_outcome:
            self.on_outcome(outcome)
        return outcome

    # --- one device -------------------------------------------------------------------------

    def poll(self, device: Device, run_deadline: float | None = None,
             stop: threading.Event | None = None) -> DeviceOutcome:
        """Collect, store and verify one device, with retries; returns its outcome."""
        try:
            fetched = self._fetch(device, run_deadline, stop)
            return fetched if isinstance(fetched, DeviceOutcome) else self._finish(fetched)
        finally:
            self.write_states()
            self._sync_store(failing=sys.exc_info()[1] is not None)

    def _fetch(self, device: Device, run_deadline: float | None = None,
               stop: threading.Event | None = None) -> DeviceOutcome | _Fetched:
        """The SSH part of a poll, with retries: the output to store, or the failed outcome."""
        begin = time.monotonic()
        deadline = begin + device.timeouts.device
        if run_deadline is not None:
            deadline = min(deadline, run_deadline)
        try:  # a credential that cannot be used fails the device before any connection
            connect_as = device.with_credentials_loaded()  # passwords read once for this poll
        except InventoryError as exc:
            outcome = DeviceOutcome(device=device.name, host=device.host, status=FAILED, reason=exc.reason,
                                    message=str(exc), duration_s=time.monotonic() - begin)
            self._record_failure(device, outcome, self._read_state(device.name))
            return outcome
        profile = profile_for(device.platform)
        if profile.signed_commands:  # IOS XE: the device signs its own commands, no dossier
            from .signed_commands import poll_signed_commands

            return poll_signed_commands(self, device, profile, begin=begin, deadline=deadline,
                                        state=self._read_state(device.name), stop=stop, connect_as=connect_as)
        items = self.options.items or device.items
        state = self._read_state(device.name)
        fs_options = _filesystem_options(state) if FILESYSTEM_ITEM in items else None
        outcome = DeviceOutcome(device=device.name, host=device.host, status=FAILED)

        def attempt_once() -> tuple[Any, str, str]:
            nonce_hex = new_nonce()  # a fresh nonce for every attempt
            command = profile.dossier_command(items, nonce_hex, filesystem_options=fs_options)
            result = run_command(connect_as, command, run_deadline=deadline)
            profile.check_output(result.output)
            return result, nonce_hex, command

        got = self.with_retries(attempt_once, device=device, outcome=outcome, state=state, begin=begin,
                                deadline=deadline, stop=stop)
        if got is None:
            return outcome
        result, nonce_hex, command = got
        return _Fetched(device, outcome, result, nonce_hex, command, tuple(items), outcome.attempts, state, begin)

    def with_retries(self, attempt_once: Callable[[], T], *, device: Device, outcome: DeviceOutcome,
                     state: dict[str, Any], begin: float, deadline: float,
                     stop: threading.Event | None) -> T | None:
        """Run `attempt_once` until it succeeds, with exponential backoff and jitter on transient
        failures only, within `deadline`. Returns None once it gives up, with the failure
        recorded in `outcome` and the device's state."""
        attempt = 0
        while True:
            attempt += 1
            outcome.attempts = attempt
            try:
                value = attempt_once()
            except CollectorError as exc:
                outcome.reason, outcome.message = exc.reason, str(exc)
                delay = self._backoff(attempt)
                can_retry = (exc.transient and attempt <= self.options.retries
                             and time.monotonic() + delay < deadline
                             and not (stop is not None and stop.is_set()))
                # Asked to stop while backing off: give up on this device with its last error.
                if not can_retry or (stop is not None and stop.wait(delay)):
                    outcome.duration_s = time.monotonic() - begin
                    self._record_failure(device, outcome, state)
                    return None
                if stop is None:
                    time.sleep(delay)
                continue
            outcome.reason = outcome.message = None
            return value

    def _finish(self, fetched: _Fetched) -> DeviceOutcome:
        """Store the output byte for byte, verify it, record the verdict and the state."""
        outcome = self._finish_many([fetched])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _finish_many(self, batch: list[_Fetched]) -> list[DeviceOutcome | StoreError]:
        """`_finish` for outputs that came in together: stored together (one syncfs for all
        their files, `Store.save_many`) and verified back to back. Returns,
        per output, its outcome or the StoreError that kept it from being stored."""
        checked: list[Checked | None] = [None] * len(batch)

        def check(records: list[EnvelopeRecord | None]) -> list[StoredVerdict | None]:
            """Between storing the envelopes and writing their metadata: the verdicts go in it."""
            if not self.options.verify:
                return [None] * len(records)
            wanted = [position for position, record in enumerate(records) if record is not None]
            calls = [(batch[p].result.output, self.trust_store_arg, batch[p].device.name, batch[p].nonce_hex,
                      batch[p].result.received) for p in wanted]
            for position, one in zip(wanted, self.verify_call(verify_many, (calls,)), strict=True):
                checked[position] = one
            return [stored_verdict(one) if one is not None else None for one in checked]  # None: refused

        records = self.store.save_many([
            {"device": f.device.name, "host": f.device.host, "nonce_hex": f.nonce_hex, "output": f.result.output,
             "started": f.result.started, "received": f.result.received, "duration_s": f.result.duration_s,
             "extra": {"port": f.device.port, "command": f.command, "items": list(f.items),
                       "poll_id": new_poll_id(), "verifier_profile": "xr-dossier",
                       "attempts": f.attempt, "exit_status": f.result.exit_status}}
            for f in batch], check=check)
        records = self.append_records(records)
        outcomes: list[DeviceOutcome | StoreError] = []
        for fetched, record, one in zip(batch, records, checked, strict=True):
            if isinstance(record, StoreError):
                outcomes.append(record)
                continue
            outcome = fetched.outcome
            outcome.bytes, outcome.path, outcome.nonce = record.bytes, record.path, fetched.nonce_hex
            outcome.received = record.received
            outcome.duration_s = time.monotonic() - fetched.begin
            self._record_verdict(fetched.device, record, one, outcome, fetched.state)
            outcomes.append(outcome)
        return outcomes

    def append_records(self, stored: list[EnvelopeRecord | StoreError]) -> list[EnvelopeRecord | StoreError]:
        """Sign a record of each stored output into the store's record log (one append for the
        batch); if that fails, each of them gets the StoreError (its evidence has no record)."""
        if self.records is None:
            return stored
        try:
            self.records.append([record for record in stored if isinstance(record, EnvelopeRecord)])
        except StoreError as exc:
            return [exc if isinstance(record, EnvelopeRecord) else record for record in stored]
        return stored

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half random."""
        ceiling = min(self.options.backoff_max_s, self.options.backoff_base_s * 2 ** (attempt - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def _record_verdict(self, device: Device, record: EnvelopeRecord, checked: Checked | None,
                        outcome: DeviceOutcome, state: dict[str, Any]) -> None:
        """The outcome, alerts and state from the verdict stored with `record` (`_finish`)."""
        if checked is None:
            outcome.status = UNTRUSTED
            outcome.reason, outcome.message = "verify.skipped", "verification was turned off (--no-verify)"
            self._write_poll_state(device, outcome, state, trusted=False)
            return
        if checked.refused is not None:
            # The verifier refused to judge (e.g. no trust anchors configured): never "trusted".
            outcome.status, outcome.reason, outcome.message = UNTRUSTED, "verify.error", checked.refused
            self.alerts.untrusted(device.name, [outcome.reason], record.path)
            self._write_poll_state(device, outcome, state, trusted=False)
            return
        reasons = record.reasons
        days = checked.days_to_expiry
        outcome.findings = checked.findings
        outcome.days_to_expiry = days
        if checked.trusted:
            outcome.status = TRUSTED
            if checked.filesystem_blocks:
                known = state.get("filesystem_blocks")
                blocks = {node: last for node, last in (known.items() if isinstance(known, Mapping) else ())
                          if type(last) is int}
                for node, block in checked.filesystem_blocks.items():
                    blocks[node] = max(block, blocks.get(node, -1))
                state["filesystem_blocks"] = blocks
            for kind, der in (("leaf", checked.leaf_der), ("root", checked.root_der)):
                if der is not None:
                    self.alerts.expiry(device.name, kind, _certificate(der), state)
        else:
            outcome.status = UNTRUSTED
            outcome.reason = reasons[0] if reasons else "verify.untrusted"
            outcome.message = (checked.errors[0]["message"] if checked.errors
                               else "the verifier did not trust the envelope")
            self.alerts.untrusted(device.name, reasons, record.path)
        if self.options.policy is not None:
            from .insights.hooks import appraise_collected

            outcome.appraisal = appraise_collected(self.store, record, self.options.policy, self.alerts, state)
        self._write_poll_state(device, outcome, state, trusted=checked.trusted)

    # --- state ---------------------------------------------------------------------------------

    def _read_state(self, device: str) -> dict[str, Any]:
        with self._state_lock:
            if not self._states_loaded:
                self._states_loaded = True
                # A damaged state file costs only increments and alert history: its devices
                # start afresh, and the next write records them in the combined file.
                self._states.update(self.store.readable_states())
            return self._states.setdefault(device, {})

    def _record_failure(self, device: Device, outcome: DeviceOutcome, state: dict[str, Any]) -> None:
        self.alerts.failed(device.name, outcome.reason or "unknown", outcome.message or "")
        self._write_poll_state(device, outcome, state, trusted=False)

    def _write_poll_state(self, device: Device, outcome: DeviceOutcome, state: dict[str, Any], *,
                          trusted: bool) -> None:
        now = time.time()
        state.update({
            "device": device.name, "host": device.host, "last_poll_ts": round(now, 3),
            "last_status": outcome.status, "last_reason": outcome.reason,
            "last_message": outcome.message, "last_duration_s": round(outcome.duration_s, 6),
        })
        if outcome.bytes is not None:
            state["last_bytes"] = outcome.bytes
            state["last_path"] = outcome.path
        if trusted:
            state["last_success_ts"] = round(now, 3)
            state["days_to_expiry"] = outcome.days_to_expiry
        with self._state_lock:
            self._states[device.name] = state
            self._states_changed = True
            if time.monotonic() - self._states_written < STATES_WRITE_INTERVAL_S:
                return
        self.write_states()

    def write_states(self) -> None:
        """Write the device states if any changed since the last call. States are advisory
        (see `Store.write_states`) and written every few seconds and when a run or a single
        `poll` ends: a crash loses at most the last seconds' changes (a repeated alert, a larger
        next inventory), never an envelope."""
        with self._state_write_lock:
            with self._state_lock:
                if not self._states_changed:
                    return
                self._states_changed = False
                self._states_written = time.monotonic()
                states = {name: state for name, state in self._states.items() if state}
            try:
                self.store.write_states(states)  # the states are serialized under the GIL
            except CollectorError as exc:
                # Advisory: a run goes on without them (tried again at the next write).
                with self._state_lock:
                    self._states_changed = True
                if not self._state_write_failed:
                    log.warning("%s; collecting goes on, the states are written when it can be", exc)
                self._state_write_failed = True
                return
            except BaseException:
                with self._state_lock:
                    self._states_changed = True
                raise
            self._state_write_failed = False


class _Finishers:
    """Threads that store and verify outputs a batch at a time: each takes every output waiting
    (up to MAX_BATCH outputs or MAX_BATCH_BYTES) and hands them to `finish_many` together; each
    output's future completes with its outcome (or the StoreError that kept it from being
    stored) and is put on `completed`. Outputs arriving one by one are finished one by one:
    a batch never waits for more."""

    def __init__(self, finish_many: Callable[[list[_Fetched]], list[DeviceOutcome | StoreError]], count: int,
                 completed: queue.SimpleQueue[Future[Any]]) -> None:
        self._finish_many = finish_many
        self._completed = completed
        self._waiting: queue.SimpleQueue[tuple[_Fetched, Future[DeviceOutcome]] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"store-{n}", daemon=True) for n in range(count)]
        self._ended = False
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> _Finishers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.no_more()
        for thread in self._threads:
            thread.join()

    def no_more(self) -> None:
        """No more outputs will come: each thread ends once the ones waiting are finished."""
        if not self._ended:
            self._ended = True
            for _ in self._threads:
                self._waiting.put(None)

    def submit(self, fetched: _Fetched) -> Future[DeviceOutcome]:
        future: Future[DeviceOutcome] = Future()
        future.add_done_callback(self._completed.put)
        self._waiting.put((fetched, future))
        return future

    def _serve(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                return
            batch = [first]
            size = len(first[0].result.output)
            while len(batch) < MAX_BATCH and size < MAX_BATCH_BYTES:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._waiting.put(None)  # for this thread's next turn
                    break
                batch.append(more)
                size += len(more[0].result.output)
            try:
                outcomes: list[Any] = self._finish_many([fetched for fetched, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"expected {len(batch)} outcomes, found {len(outcomes)}")
            except BaseException as exc:  # e.g. a bug in verification: the run raises it
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes):
                # Every future completes, or the run would wait for it forever.
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


@lru_cache(maxsize=4096)
def _certificate(der: bytes) -> x509.Certificate:
    """A device's certificate, parsed once (it recurs at every poll)."""
    return x509.load_der_x509_certificate(der)


def check_trust_store(trust_store_path: Path, devices: Sequence[str]) -> None:
    """Before a run: the trust store exists and what it holds for `devices` reads back intact
    (each file valid, each certificate matching its recorded SHA-256). Raises the verifier's
    TrustStoreError naming the file otherwise. The files read stay cached for the runs that
    follow in this process (each run then only looks at whether they changed)."""
    from verifier import TrustStore
    from verifier.errors import TrustStoreError

    if not Path(trust_store_path).is_dir():
        raise TrustStoreError(
            f"expected a trust store at {trust_store_path}, found none; enroll the devices first "
            "(`dossier enroll`, or `dossier trust add DEVICE ROOT.pem`), or name the right one "
            "with --trust-store")
    opened = TrustStore.open(Path(trust_store_path))
    base = _BASE_TRUST_STORES.setdefault(str(trust_store_path), opened)  # kept for the runs
    for device in devices:
        if device in base:  # one not enrolled is not damage: its envelopes come out untrusted
            base.check(device)
    base.pool_entries()


def _filesystem_options(state: Mapping[str, Any]) -> dict[str, dict[str, int]] | None:
    """Ask only for blocks newer than the last one collected, per node."""
    blocks = state.get("filesystem_blocks")
    if not isinstance(blocks, Mapping):
        return None
    # A hand-edited state may hold anything: a node without a whole block number is asked afresh.
    wanted = {str(node): {"block_start": last + 1} for node, last in sorted(blocks.items(), key=str)
              if type(last) is int and last >= 0}
    return wanted or None
