"""Poll a fleet: a fresh nonce per device, exact storage, verification at once, retries.

For each device (in a bounded worker pool):
  (1) draw a 16-byte nonce from the OS CSPRNG; the same hex goes on the dossier and on
      `utility sign`, and a retry draws a new one (a nonce is never sent twice);
  (2) run the command over an SSH exec channel with connect / auth / command / device deadlines;
  (3) store the output byte for byte (atomic, never overwriting);
  (4) verify it with the verifier library against the trust store and the nonce sent, at the
      time it was received, and write its metadata file with the verdict in it;
  (5) update the device's state: what the next poll starts from (kept by the poll strategy,
      `PollStrategy.remember`), alert schedule, last success.
Transient failures (refused, reset, timeout, rate-limited) are retried with exponential backoff
and jitter inside the device's deadline; authentication and host-key failures never are. One
device's failure never stops the others.
"""

from __future__ import annotations

import logging
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509

from verifier.stored import ENVELOPE_SUFFIX, stored_name

from .alerts import AlertSink
from .errors import CollectorError, InventoryError, Reason, StoreError
from .inventory import Device
from .platforms import profile_for
from .polling import PolledOutput, PollStrategy, strategy_for
from .records import RecordLog, default_key_path, load_or_create_key
from .store import EnvelopeRecord, Store, StoredVerdict, new_poll_id
from .verifying import (
    _BASE_TRUST_STORES,
    Checked,
    freeze_trust_store,
    release_trust_store,
    stored_verdict,
    trust_store_for,
    verify_many,
)

__all__ = ["CollectOptions", "Collector", "DeviceOutcome", "RunSummary"]

T = TypeVar("T")
log = logging.getLogger(__name__)

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
    #: A `collector.insights.AppraisalPolicy`: appraise each stored envelope as it is collected.
    policy: Any = None
    #: Threads that store and verify what the sessions fetched, a batch at a time. Their work is
    #: CPU under the GIL except for syncfs/fsync. One: a second one, computing while the first
    #: waits for a sync, cost more in contention for the GIL with the session threads (and in
    #: smaller batches) than it overlapped (BENCHMARKS.md).
    finish_workers: int = 1


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
    """A poll's outputs received, on their way to the store and the verifier."""

    device: Device
    outcome: DeviceOutcome
    outputs: list[PolledOutput]
    attempt: int
    state: dict[str, Any]
    begin: float
    #: What polled them: it keeps in `state`, from their verdicts, what its next poll starts from.
    strategy: PollStrategy

    @property
    def size(self) -> int:
        return sum(len(output.result.output) for output in self.outputs)


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
        reindexed = self.store.recover()
        if self.records is not None:
            self.records.start(self.store)  # the log's header (and baseline) before any poll is stored
            if reindexed is not None:  # rebuilt from the files: only what the log vouches for stays trusted
                self.records.flag_unrecorded(self.store)
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
                                reason=Reason.RUN_STOPPED if stopping else Reason.RUN_DEADLINE, message=why)
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
        items = tuple(self.options.items or device.items)
        state = self._read_state(device.name)
        strategy = strategy_for(profile_for(device.platform), items=items, state=state, evidence=device.evidence)
        outcome = DeviceOutcome(device=device.name, host=device.host, status=FAILED)
        outputs = self.with_retries(lambda: strategy.poll_once(connect_as, deadline=deadline), device=device,
                                    outcome=outcome, state=state, begin=begin, deadline=deadline, stop=stop)
        if outputs is None:
            return outcome
        return _Fetched(device, outcome, outputs, outcome.attempts, state, begin, strategy)

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
        """`_finish` for polls whose outputs came in together: stored together (one syncfs for
        all their files, `Store.save_many`; a poll's outputs share a poll id, and an output
        signed by another names it as `signer`), verified back to back with each output's
        profile, then recorded (`_record_verdict`). Returns, per poll, its
        outcome or the StoreError that kept one of its outputs from being stored."""
        # Every output of the batch, in order: (poll, output) positions.
        flat = [(fetched, output) for fetched in batch for output in fetched.outputs]
        checked: list[Checked | None] = [None] * len(flat)

        def signer_of(fetched: _Fetched, output: PolledOutput) -> PolledOutput | None:
            return next((o for o in fetched.outputs if o.name == output.signer_from), None) \
                if output.signer_from else None

        def quote_of(fetched: _Fetched, output: PolledOutput) -> PolledOutput | None:
            return next((o for o in fetched.outputs if o.name == output.quote_from), None) \
                if output.quote_from else None

        def check(records: list[EnvelopeRecord | None]) -> list[StoredVerdict | None]:
            """Between storing the outputs and writing their metadata: the verdicts go in it."""
            if not self.options.verify:
                return [None] * len(records)
            wanted = [position for position, record in enumerate(records) if record is not None]
            calls = []
            for position in wanted:
                fetched, output = flat[position]
                signer, quote = signer_of(fetched, output), quote_of(fetched, output)
                calls.append((output.result.output, output.kind, self.trust_store_arg, fetched.device.name,
                              output.nonce, output.result.received,
                              signer.result.output if signer is not None else None,
                              quote.result.output if quote is not None else None, output.extra))
            for position, one in zip(wanted, verify_many(calls), strict=True):
                checked[position] = one
            return [stored_verdict(one) if one is not None else None for one in checked]  # None: refused

        poll_ids = {id(fetched): new_poll_id() for fetched in batch}
        entries = []
        for fetched, output in flat:
            extra = {"port": fetched.device.port, "command": output.command, "kind": output.kind,
                     "output": output.name, "verifier_profile": output.verifier_profile,
                     "poll_id": poll_ids[id(fetched)], "platform": fetched.device.platform,
                     "attempts": fetched.attempt, "exit_status": output.result.exit_status, **output.extra}
            signer = signer_of(fetched, output)
            if signer is not None:
                extra["signer"] = stored_name(signer.result.received, signer.nonce.hex()) + ENVELOPE_SUFFIX
            quote = quote_of(fetched, output)
            if quote is not None:
                extra["quote"] = stored_name(quote.result.received, quote.nonce.hex()) + ENVELOPE_SUFFIX
            entries.append({"device": fetched.device.name, "host": fetched.device.host, "nonce_hex": output.nonce.hex(),
                            "output": output.result.output, "started": output.result.started,
                            "received": output.result.received, "duration_s": output.result.duration_s,
                            "extra": extra})
        records = self.append_records(self.store.save_many(entries, check=check))
        outcomes: list[DeviceOutcome | StoreError] = []
        position = 0
        for fetched in batch:
            count = len(fetched.outputs)
            mine, verdicts = records[position:position + count], checked[position:position + count]
            position += count
            failed = next((record for record in mine if isinstance(record, StoreError)), None)
            if failed is not None:
                outcomes.append(failed)
                continue
            outcome = fetched.outcome
            outcome.bytes = sum(record.bytes for record in mine)  # type: ignore[union-attr]
            outcome.path = mine[0].path  # type: ignore[union-attr]
            outcome.nonce = (fetched.outputs[0].nonce.hex() if count == 1 else
                             " ".join(f"{o.name}={o.extra.get('nonce_decimal', o.nonce.hex())}" for o in fetched.outputs))
            outcome.received = mine[-1].received  # type: ignore[union-attr]
            outcome.duration_s = time.monotonic() - fetched.begin
            self._record_verdict(fetched, mine, verdicts)  # type: ignore[arg-type]
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

    def _record_verdict(self, fetched: _Fetched, records: list[EnvelopeRecord], checked: list[Checked | None]) -> None:
        """The outcome, alerts and state from the verdicts stored with a poll's `records`. The
        device is trusted only when every output is; the first output that is not explains it
        (its name before the message when the poll has several)."""
        device, outcome, state = fetched.device, fetched.outcome, fetched.state
        if not self.options.verify:
            outcome.status = UNTRUSTED
            outcome.reason, outcome.message = Reason.VERIFY_SKIPPED, "verification was turned off (--no-verify)"
            self._write_poll_state(device, outcome, state, trusted=False)
            return
        several = len(records) > 1
        failure: tuple[str, str, list[str], str] | None = None
        for output, record, one in zip(fetched.outputs, records, checked, strict=True):
            named = f"{output.name}: " if several else ""
            if one is None or one.refused is not None:
                # The verifier refused to judge (e.g. no trust anchors configured): never "trusted".
                why = one.refused if one is not None else "not verified"
                failure = failure or (Reason.VERIFY_ERROR, named + why, [Reason.VERIFY_ERROR], record.path)
                continue
            outcome.findings += [{**finding, "output": output.name} for finding in one.findings] if several \
                else one.findings
            outcome.days_to_expiry = outcome.days_to_expiry or one.days_to_expiry
            fetched.strategy.remember(output, one, state)
            if not one.trusted:
                reasons = record.reasons
                message = one.errors[0]["message"] if one.errors else "the verifier did not trust the output"
                failure = failure or (reasons[0] if reasons else Reason.VERIFY_UNTRUSTED, named + message, reasons,
                                      record.path)
                continue
            for kind, der in (("leaf", one.leaf_der), ("root", one.root_der)):
                if der is not None:
                    self.alerts.expiry(device.name, kind, _certificate(der), state)
        if failure is None:
            outcome.status = TRUSTED
        else:
            outcome.status = UNTRUSTED
            outcome.reason, outcome.message, reasons, path = failure
            self.alerts.untrusted(device.name, reasons, path)
        if self.options.policy is not None:
            from .insights.hooks import appraise_collected
            from .insights.history import StoredVerdicts

            verdicts = StoredVerdicts(self.store, trust_store_for(self.trust_store_arg))
            outcome.appraisal = appraise_collected(self.store, verdicts, records, self.options.policy, self.alerts,
                                                   state)
        self._write_poll_state(device, outcome, state, trusted=failure is None)

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
            size = first[0].size
            while len(batch) < MAX_BATCH and size < MAX_BATCH_BYTES:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._waiting.put(None)  # for this thread's next turn
                    break
                batch.append(more)
                size += more[0].size
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
