"""The read-only queries of the service over the store: the one place the API and the dashboard
pages get their data from (`StoreQueries`).

Rows come from what `dossier report` and `dossier status` compute (`collector.insights.report`
`poll_verification` and `expiry_days`, `collector.status.failed_poll`); content (packages,
files, drift) only from what verifying each stored output returns (`StoredVerdicts`), never
from the stored bytes parsed again. Everything here returns plain JSON-ready data.

Verifying a stored output again costs milliseconds, so the summary of each verdict a fleet row
needs is kept per output (keyed by path and digest: a stored output never changes under its
name, and a changed one has another digest).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from verifier.findings import Finding as VerifierFinding
from verifier.findings import Severity

from ..errors import StoreError
from ..insights.consensus import package_fingerprints, platform_pid
from ..insights.diff import item_payload, software_version
from ..insights.errors import InsightsError
from ..insights.history import StoredVerdicts, diff_history, file_state_at, pick_record
from ..insights.report import VERIFICATION_STATES, certificate_expiry, expiry_days, poll_verification
from ..status import failed_poll, poll_outputs, poll_time
from ..store import EnvelopeRecord, Store, parse_iso
from .errors import ErrorCode

log = logging.getLogger("collector.service")

__all__ = ["FLEET_CACHE_MAX_AGE_S", "MAX_CONTENT", "MAX_PAGE", "MAX_SUMMARIES", "Content", "DeviceInfo", "QueryError",
           "StoreQueries", "digest_matches", "filter_rows", "inventory_info"]

#: Rows one fleet page returns at most (a client pages through the rest with the cursor).
MAX_PAGE = 1000
#: Verdict summaries kept (a few hundred bytes each): ten collections of 10,000 devices.
MAX_SUMMARIES = 100_000
#: The fleet's rows are computed again when the store's index or device states change (their
#: files' size and modification time), and at least this often: a file's time can miss two
#: writes within one clock tick, so a change is never hidden for longer than this.
FLEET_CACHE_MAX_AGE_S = 5.0
#: The files whose change means the fleet may have changed (index in WAL mode, device states).
_WATCHED = ("index.sqlite", "index.sqlite-wal", "state/_devices.json")
#: Content summaries (packages and files of a device's newest trusted output) kept for search;
#: a file inventory can be thousands of entries, so fewer of these.
MAX_CONTENT = 4096
#: Trusted outputs looked through for a device's newest trusted dossier (a poll stores at most
#: `collector.status.MAX_POLL_OUTPUTS`, so this is a few dozen polls of TPM evidence alone).
TRUSTED_DOSSIER_LOOKBACK = 64


class QueryError(Exception):
    """A query the store cannot answer: HTTP `status` (400 asked wrongly, 404 not held, 409 a
    stored output unreadable, 503 the store or trust store unusable), an `ErrorCode`, and what
    was expected and found."""

    def __init__(self, status: int, code: str, message: str, *, expected: str | None = None,
                 found: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.expected, self.found = status, code, message, expected, found


@dataclass(frozen=True)
class DeviceInfo:
    """What the inventory says of a device (platform, groups); unknown without an inventory."""

    platform: str | None = None
    groups: tuple[str, ...] = ()


@dataclass
class _Summary:
    """What a fleet row needs of an output: its verdict's trusted and errors (id, message), and
    the certificates' ends in its stored verdict (`certificate_expiry`)."""

    trusted: bool
    errors: list[Any] = field(default_factory=list)
    ends: dict[str, str | None] | None = None


@dataclass
class Content:
    """What one trusted output says a device runs (`StoreQueries.content`): its release, its
    packages (name -> version) and its files as of that output ((node, path) -> (algorithm,
    digest)). For search, the dashboard's device page and fleet consensus."""

    release: str | None
    packages: dict[str, str | None]
    files: dict[tuple[str, str], tuple[str, str]]  # (node, path) -> (algorithm, digest)
    platform: str | None = None  # the chassis PID (`consensus.platform_pid`)
    fingerprints: dict[str, tuple[str, str]] = field(default_factory=dict)  # `consensus.package_fingerprints`


class StoreQueries:
    """Read-only views of `store`, content verified against `trust_store` (a path or an open
    `verifier.TrustStore`). Thread-safe: requests run in a thread pool."""

    def __init__(self, store: Store, trust_store: Any, *, inventory: Mapping[str, DeviceInfo] | None = None) -> None:
        self.store = store
        self._trust_store = trust_store
        self.verdicts = StoredVerdicts(store, trust_store)
        self.inventory: Mapping[str, DeviceInfo] = inventory or {}
        # StoredVerdicts and its record-log cache are not safe to share between threads.
        self._lock = threading.RLock()
        self._summaries: dict[tuple[str, str], _Summary] = {}
        self._content: dict[tuple[str, str], Content] = {}
        self._fleet: tuple[tuple[Any, ...], float, list[dict[str, Any]]] | None = None
        self._trusted: tuple[tuple[Any, ...], float, dict[str, EnvelopeRecord]] | None = None
        self.generation = 0  # counts `forget_verdicts`: results derived from verdicts are keyed by it

    def warm(self) -> None:
        """Verify every device's newest outputs once (at start, in the background), so that the
        first fleet request does not pay for the whole fleet."""
        try:
            self.fleet()
        except QueryError as exc:
            log.warning("the fleet could not be read ahead of requests: %s", exc.message)

    def forget_verdicts(self) -> None:
        """Verify again from the next query on (call after the trust store changed)."""
        with self._lock:
            self.verdicts = StoredVerdicts(self.store, self._trust_store)
            self._summaries.clear()
            self._content.clear()
            self._fleet = self._trusted = None
            self.generation += 1

    def _store_fingerprint(self) -> tuple[Any, ...]:
        marks: list[Any] = []
        for name in _WATCHED:
            try:
                info = (self.store.root / name).stat()
                marks.append((info.st_mtime_ns, info.st_size, info.st_ino))
            except OSError:
                marks.append(None)
        return tuple(marks)

    # --- verdicts ------------------------------------------------------------------------------

    def verdict(self, record: EnvelopeRecord) -> Any:
        """The verdict of `record`'s output verified again (`StoredVerdicts`); raises QueryError
        when the stored output cannot be read."""
        self.trust_store()  # a missing trust store is the service's configuration, not the output's
        with self._lock:
            try:
                return self.verdicts(record)
            except InsightsError as exc:
                raise QueryError(409, ErrorCode.STORE_UNREADABLE, self._relative(str(exc)),
                                 expected="a readable stored output", found=record.path) from None

    def _relative(self, message: str) -> str:
        """`message` with the store's own location left out (callers know outputs by their paths
        in the store; where the store lives on the server is not theirs to know)."""
        return message.replace(f"{self.store.root}{os.sep}", "").replace(str(self.store.root), "<store>")

    def trust_store(self) -> Any:
        """The service's trust store, opened (`verifier.TrustStore`); raises QueryError (503)
        when there is none or it cannot be read."""
        with self._lock:
            try:
                return self.verdicts.trust_store()
            except InsightsError as exc:
                where = str(self._trust_store) if self._trust_store is not None else None
                message = str(exc).replace(where, "<trust store>") if where else str(exc)
                raise QueryError(503, ErrorCode.TRUSTSTORE_UNAVAILABLE, self._relative(message),
                                 expected="a trust store (--trust-store)", found="none usable") from None

    def _summary(self, record: EnvelopeRecord) -> _Summary:
        key = (record.path, record.sha256)
        with self._lock:
            summary = self._summaries.get(key)
        if summary is None:
            try:
                verdict = self.verdict(record)
            except QueryError as exc:
                if exc.code != ErrorCode.STORE_UNREADABLE:
                    raise
                # One damaged output must not take the fleet down: its device is shown untrusted
                # (nothing proves it), with why. Not kept: a repaired output is verified again.
                return _Summary(False, [VerifierFinding(str(exc.code), Severity.ERROR, exc.message)], None)
            summary = _Summary(bool(verdict.trusted), list(verdict.errors), self._read(certificate_expiry, self.store,
                                                                                     record))
            with self._lock:
                if len(self._summaries) >= MAX_SUMMARIES:
                    self._summaries.pop(next(iter(self._summaries)))
                self._summaries[key] = summary
        return summary

    # --- the fleet -----------------------------------------------------------------------------

    def fleet(self, *, now: dt.datetime | None = None, as_of: dt.datetime | None = None) -> list[dict[str, Any]]:
        """One row per device, sorted by name: its verification state, appraisal status, last
        poll and last attempt, last trusted collection and days to expiry. The rows are shared
        between callers (kept while the store does not change): do not modify them.

        With `as_of`, the fleet as the store held it then: each device's newest output received
        by then (device states record only the latest poll, so nothing is `unreachable` then)."""
        now = now or dt.datetime.now(dt.UTC)
        if as_of is None:
            fingerprint, cached = self._store_fingerprint(), self._fleet
            if cached is not None and cached[0] == fingerprint and time.monotonic() - cached[1] < FLEET_CACHE_MAX_AGE_S:
                return list(cached[2])
            rows = self._fleet_rows(now, None)
            self._fleet = (fingerprint, time.monotonic(), rows)
            return list(rows)
        return self._fleet_rows(now, as_of)

    def latest_trusted(self) -> dict[str, EnvelopeRecord]:
        """Each device's newest trusted output (`Store.latest_trusted`), kept as the fleet's rows
        are (until the store changes, at most `FLEET_CACHE_MAX_AGE_S`)."""
        fingerprint, cached = self._store_fingerprint(), self._trusted
        if cached is not None and cached[0] == fingerprint and time.monotonic() - cached[1] < FLEET_CACHE_MAX_AGE_S:
            return dict(cached[2])
        found = self._read(self.store.latest_trusted)
        self._trusted = (fingerprint, time.monotonic(), found)
        return dict(found)

    def _fleet_rows(self, now: dt.datetime, as_of: dt.datetime | None) -> list[dict[str, Any]]:
        statuses = {path: status for _, _, path, status in self._read(self.store.appraisal_statuses)}
        if as_of is None:
            latest, latest_trusted = self._read(self.store.latest), self._read(self.store.latest_trusted)
            states = self._read(self.store.readable_states)
            histories: dict[str, list[EnvelopeRecord]] = {}
        else:
            latest, latest_trusted, states, histories = {}, {}, {}, {}
            for name in self._read(self.store.latest):
                earlier = [r for r in self._read(self.store.history, name) if parse_iso(r.received) <= as_of]
                if earlier:
                    latest[name], histories[name] = earlier[0], earlier
                    trusted = next((r for r in earlier if r.trusted), None)
                    if trusted is not None:
                        latest_trusted[name] = trusted
        rows = []
        for name in sorted(set(latest) | set(states)):
            rows.append(self._row(name, latest.get(name), latest_trusted.get(name), states.get(name, {}),
                                  statuses, as_of or now, history=histories.get(name)))
        return rows

    def _row(self, name: str, newest: EnvelopeRecord | None, trusted: EnvelopeRecord | None,
             state: Mapping[str, Any], statuses: Mapping[str, str], now: dt.datetime, *,
             history: list[EnvelopeRecord] | None = None) -> dict[str, Any]:
        """The fleet row of device `name` whose newest output is `newest` (`history`: its records
        newest first from `newest` on, when that is not the newest stored)."""
        judged = self._read(poll_verification, self.store, newest, state, self._summary, history=history)
        record = judged.record
        if trusted is not None:  # certificate expiry is the dossier's (a TPM reply's is its attestation key's)
            trusted = self.trusted_dossier(trusted) or trusted
        failed = failed_poll(state)
        info = self.inventory.get(name, DeviceInfo())
        days = expiry_days(self.store, trusted, now, ends=self._summary(trusted).ends) if trusted is not None \
            else expiry_days(self.store, None, now)
        return {
            "device": name,
            "platform": info.platform,
            "groups": list(info.groups),
            "verification": judged.verification,
            "tpm": judged.tpm,
            "status": statuses.get(record.path, "none") if record is not None else "none",
            "last_collection": record.received if record is not None else None,
            "last_envelope": record.path.split("/", 1)[1] if record is not None else None,
            "last_trusted": trusted.received if trusted is not None else None,
            "last_attempt": failed[2] if failed is not None else poll_time(state),
            "last_attempt_status": state.get("last_status") if isinstance(state.get("last_status"), str) else None,
            "days_to_expiry": days,
        }

    def device(self, name: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
        """The fleet row of `name`; raises QueryError (404) when the store holds nothing of it."""
        records = self._read(self.store.history, name)
        state = self._read(self.store.readable_states).get(name, {})
        if not records and not state:
            raise QueryError(404, ErrorCode.DEVICE_UNKNOWN, f"no device {name!r} in the store",
                             expected="a device name the fleet lists", found=name)
        statuses = {path: status for _, _, path, status in self._read(self.store.appraisal_statuses, name)}
        trusted = next((record for record in records if record.trusted), None)
        return self._row(name, records[0] if records else None, trusted, state, statuses, now or dt.datetime.now(dt.UTC),
                         history=records)

    # --- one device's collections --------------------------------------------------------------

    def history(self, name: str, *, limit: int = 100, before: str | None = None) -> list[dict[str, Any]]:
        """`name`'s stored outputs, newest first, each with its verdict at collection (index) and
        appraisal status; `before` (an envelope name) pages back from there."""
        records = self._records(name)
        if before is not None:
            position = next((i for i, r in enumerate(records) if _name(r) == before), None)
            if position is None:
                raise QueryError(404, ErrorCode.ENVELOPE_UNKNOWN, f"no envelope {before!r} of {name}",
                                 expected="an envelope name from this device's history", found=before)
            records = records[position + 1:]
        statuses = {path: status for _, _, path, status in self._read(self.store.appraisal_statuses, name)}
        return [{"envelope": _name(r), "received": r.received, "bytes": r.bytes, "sha256": r.sha256,
                 "trusted": r.trusted, "reasons": list(r.reasons), "status": statuses.get(r.path, "none")}
                for r in records[:limit]]

    def record(self, name: str, envelope: str) -> EnvelopeRecord:
        """The stored output `envelope` of device `name`; raises QueryError (404)."""
        for record in self._records(name):
            if _name(record) == envelope:
                return record
        raise QueryError(404, ErrorCode.ENVELOPE_UNKNOWN, f"no envelope {envelope!r} of {name}",
                         expected="an envelope name from this device's history", found=envelope)

    def output_bytes(self, record: EnvelopeRecord) -> bytes:
        """The output exactly as the device printed it."""
        return self._read(self.store.envelope_bytes, record)

    def output(self, record: EnvelopeRecord) -> dict[str, Any]:
        """One stored output: its record, its verdict (verified again now, at the time it was
        received) and its stored appraisal (None when not appraised)."""
        verdict = self.verdict(record)
        return {"device": record.device, "envelope": _name(record), "received": record.received,
                "bytes": record.bytes, "sha256": record.sha256, "nonce": record.nonce,
                "verdict": verdict.to_json(), "appraisal": self._read(self.store.appraisal, record)}

    def drift(self, name: str, before: str, after: str) -> dict[str, Any]:
        """The changes on `name` between two collections (`pick_record` references: a position
        such as -1, an envelope name, or the start of a received time)."""
        records = list(reversed(self._records(name)))  # oldest first, as pick_record takes them
        try:
            old, new = pick_record(records, before, name), pick_record(records, after, name)
        except InsightsError as exc:
            raise QueryError(404, ErrorCode.ENVELOPE_UNKNOWN, str(exc), expected="two envelopes of this device",
                             found=f"{before}, {after}") from None
        self.trust_store()
        with self._lock:
            try:
                findings = diff_history(self.store, self.verdicts, name, old, new)
            except InsightsError as exc:
                raise QueryError(409, ErrorCode.STORE_UNREADABLE, self._relative(str(exc)),
                                 expected="readable stored outputs between the two", found=name) from None
        return {"device": name, "before": _name(old), "after": _name(new),
                "findings": [finding.to_json() for finding in findings]}

    # --- fleet-wide search ---------------------------------------------------------------------

    def search(self, *, package: str | None = None, version: str | None = None, file: str | None = None,
               digest: str | None = None, unreadable: list[str] | None = None) -> list[dict[str, Any]]:
        """Devices whose newest trusted output has `package` (at `version` when given), or the
        file `file` (with `digest` when given) on some node; from what verification returned.
        A device whose outputs cannot be read is left out and named in `unreadable`."""
        if (package is None) == (file is None):
            raise QueryError(400, ErrorCode.SEARCH_QUERY, "expected exactly one of package or file",
                             expected="package=NAME[&version=V] or file=PATH[&digest=HEX]",
                             found="both" if package else "neither")
        matches = []
        for name, (record, content) in self.fleet_content(unreadable).items():
            if package is not None:
                if package in content.packages and (version is None or content.packages[package] == version):
                    matches.append({"device": name, "envelope": _name(record), "received": record.received,
                                    "package": package, "version": content.packages[package]})
                continue
            for (node, path), (algorithm, value) in content.files.items():
                if path == file and (digest is None or digest_matches(value, digest)):
                    matches.append({"device": name, "envelope": _name(record), "received": record.received,
                                    "node": node, "file": path, "algorithm": algorithm, "digest": value})
        return matches

    def content(self, record: EnvelopeRecord) -> Content | None:
        """What `record`'s output says the device runs, None unless it verifies as trusted with
        a dossier; raises QueryError (409) when it or an earlier output cannot be read. Kept per
        output (`MAX_CONTENT`): do not modify it."""
        return self._content_of(record)

    def fleet_content(self, unreadable: list[str] | None = None) -> dict[str, tuple[EnvelopeRecord, Content]]:
        """Each device's newest trusted output and its content; a device whose outputs cannot
        be read is left out (and named in `unreadable`)."""
        found = {}
        for name, newest in sorted(self._read(self.store.latest_trusted).items()):
            try:
                record = self.trusted_dossier(newest)
                content = self._content_of(record) if record is not None else None
            except QueryError as exc:
                if exc.code != ErrorCode.STORE_UNREADABLE:
                    raise
                if unreadable is not None:
                    unreadable.append(name)
                continue
            if content is not None:
                found[name] = (record, content)
        return found

    def trusted_dossier(self, trusted: EnvelopeRecord) -> EnvelopeRecord | None:
        """The newest trusted dossier output of `trusted`'s device received no later than it
        (`trusted` itself, or its poll's dossier when it is a TPM reply, or an earlier poll's);
        None when there is none among the last `TRUSTED_DOSSIER_LOOKBACK` trusted outputs."""
        outputs = self._read(poll_outputs, self.store, trusted)
        found = next((one for one, evidence in outputs if evidence == "dossier" and one.trusted), None)
        if found is not None:
            return found
        looked = 0
        for older in self._read(self.store.history, trusted.device):
            if not older.trusted or older.received > trusted.received:
                continue
            if self._read(poll_outputs, self.store, older, history=[older])[0][1] == "dossier":
                return older
            looked += 1
            if looked >= TRUSTED_DOSSIER_LOOKBACK:
                break
        return None

    def _content_of(self, record: EnvelopeRecord) -> Content | None:
        key = (record.path, record.sha256)
        content = self._content.get(key)
        if content is None:
            verdict = self.verdict(record)
            if not verdict.trusted or verdict.dossier is None:
                return None
            packages: dict[str, str | None] = {}
            payload, _ = item_payload(verdict.dossier, "packages")
            for entry in payload if isinstance(payload, list) else ():
                if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                    version = entry.get("version")
                    packages[entry["name"]] = version if isinstance(version, str) else None
            with self._lock:
                try:
                    state = file_state_at(self.store, self.verdicts, record)
                except InsightsError as exc:  # an earlier output of the device cannot be read
                    raise QueryError(409, ErrorCode.STORE_UNREADABLE, self._relative(str(exc)), expected="readable stored outputs",
                                     found=record.device) from None
            files = {}
            for node in state.nodes:
                for path, entry in (state.files(node) or {}).items():
                    files[(node, path)] = (entry[0], entry[1])
            content = Content(software_version(verdict.dossier), packages, files, platform_pid(verdict.dossier),
                              package_fingerprints(verdict.dossier))
            with self._lock:
                if len(self._content) >= MAX_CONTENT:
                    self._content.pop(next(iter(self._content)))
                self._content[key] = content
        return content

    # --- helpers -------------------------------------------------------------------------------

    def _records(self, name: str) -> list[EnvelopeRecord]:
        records = self._read(self.store.history, name)
        if not records:
            raise QueryError(404, ErrorCode.DEVICE_UNKNOWN, f"no stored output of device {name!r}",
                             expected="a device name the fleet lists", found=name)
        return records

    def _read(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except StoreError as exc:
            raise QueryError(503, ErrorCode.STORE_UNAVAILABLE, self._relative(f"the store cannot be read: {exc}"),
                             expected="a readable store", found="a store that cannot be read") from None


def _name(record: EnvelopeRecord) -> str:
    return record.path.rsplit("/", 1)[-1]


def digest_matches(stored: str, wanted: str) -> bool:
    """Whether `wanted` (as the dossier spells it, base64, or in hex) is the digest `stored`
    (the dossier's `digest-value`, base64)."""
    if wanted == stored:
        return True
    try:
        raw = base64.b64decode(stored, validate=True)
    except (binascii.Error, ValueError):
        return wanted.lower() == stored.lower()
    return wanted.lower() == raw.hex()


def inventory_info(devices: Iterable[Any]) -> dict[str, DeviceInfo]:
    """Platform and groups per device of a loaded inventory's devices."""
    return {device.name: DeviceInfo(device.platform, tuple(device.groups)) for device in devices}


def filter_rows(rows: list[dict[str, Any]], *, state: str | None = None, platform: str | None = None,
                group: str | None = None) -> list[dict[str, Any]]:
    """The rows matching every filter given."""
    if state is not None and state not in VERIFICATION_STATES:
        raise QueryError(400, ErrorCode.FILTER_STATE, f"unknown state {state!r}",
                         expected=f"one of {', '.join(VERIFICATION_STATES)}", found=state)
    return [row for row in rows
            if (state is None or row["verification"]["state"] == state)
            and (platform is None or row["platform"] == platform)
            and (group is None or group in row["groups"])]



# --- the dashboard's queries (collector/service/dashboard.py) -------------------------------------
# Kept in one block so the API's queries above and these merge apart.

__all__ += ["MAX_CHANGES_SHOWN", "MAX_CONSENSUS_KEPT", "MAX_TIMELINE", "device_content", "device_findings",
            "device_timeline", "fleet_consensus_of"]

#: Fleet consensus results kept (per "as of" moment and the set of outputs it was computed over).
MAX_CONSENSUS_KEPT = 8
#: Collections of a device the dashboard's timeline shows (the newest); its drift comes from
#: replaying them, so the page's cost follows this bound, not the device's whole history.
MAX_TIMELINE = 50
#: Changes listed per collection on the timeline (all are counted).
MAX_CHANGES_SHOWN = 50

_consensus_kept: dict[tuple[int, int, bool, tuple[str, ...]], Any] = {}
_consensus_lock = threading.Lock()


def fleet_consensus_of(queries: StoreQueries, *, as_of: dt.datetime | None = None) -> Any:
    """Fleet consensus (`collector.insights.consensus`) over the newest trusted outputs as of
    `as_of`, computed once per set of outputs, from each output's content as the queries hold it
    (`StoreQueries.content`, kept per output and shared with search and the device page): a new
    collection costs its own verification, not the fleet's. One computation at a time; the
    queries' lock is taken per output, so API requests go on between them."""
    from ..insights.consensus import Compared, compare_devices, records_as_of

    picked = queries.latest_trusted() if as_of is None else queries._read(records_as_of, queries.store, as_of)
    # Keyed by the outputs compared, not the moment: any two moments between the same
    # collections share one computation.
    key = (id(queries), queries.generation, as_of is None, tuple(sorted(r.path for r in picked.values())))
    with _consensus_lock:
        if key in _consensus_kept:
            return _consensus_kept[key]
        devices: dict[str, Compared | str] = {}
        for device in set(queries._read(queries.store.latest)) - set(picked):
            devices[device] = "no trusted collection" + (" by then" if as_of else "")
        for device, record in picked.items():
            try:
                content = queries.content(record)
            except QueryError as exc:
                if exc.code != ErrorCode.STORE_UNREADABLE:
                    raise
                devices[device] = f"its stored outputs cannot be read ({exc.message})"
                continue
            if content is None:
                devices[device] = "its newest trusted output has no dossier (IOS XE, or not trusted now)"
                continue
            files = {place: f"{algorithm}:{digest}" for place, (algorithm, digest) in content.files.items()}
            devices[device] = Compared(content.platform, content.release, content.fingerprints,
                                       lambda files=files: files)
        result = compare_devices(devices, as_of=as_of)
        if len(_consensus_kept) >= MAX_CONSENSUS_KEPT:
            _consensus_kept.pop(next(iter(_consensus_kept)))
        _consensus_kept[key] = result
    return result


def device_timeline(queries: StoreQueries, name: str) -> list[dict[str, Any]]:
    """`name`'s newest collections (at most MAX_TIMELINE), newest first: when, verified now or
    not (with the reasons), the stored appraisal's status, and the changes since the collection
    before it (`replay`: drift from what verification returns)."""
    from ..insights.history import replay

    queries._records(name)  # 404 for a device the store does not hold
    statuses = {path: status for _, _, path, status in queries._read(queries.store.appraisal_statuses, name)}
    steps = []
    with queries._lock:
        try:
            for step in replay(queries.store, queries.verdicts, name):
                steps.append(step)
                del steps[:-MAX_TIMELINE]
        except InsightsError as exc:
            raise QueryError(409, ErrorCode.STORE_UNREADABLE, queries._relative(str(exc)),
                             expected="readable stored outputs", found=name) from None
    timeline = []
    for step in reversed(steps):
        timeline.append({
            "envelope": _name(step.record), "received": step.record.received, "bytes": step.record.bytes,
            "sha256": step.record.sha256, "trusted": step.evidence.verified, "reasons": list(step.evidence.reasons),
            "status": statuses.get(step.record.path, "none"), "first": step.previous is None,
            "changes": [finding.to_json() for finding in step.drift[:MAX_CHANGES_SHOWN]],
            "changes_total": len(step.drift),
        })
    return timeline


def device_findings(queries: StoreQueries, name: str) -> dict[str, Any]:
    """What is wrong with `name` now: the verifier errors of each output of its newest poll (the
    dossier and its TPM replies) and the stored appraisal findings of the output the appraisal
    follows (`poll_verification`), and the appraisal's status."""
    records = queries._records(name)
    outputs = queries._read(poll_outputs, queries.store, records[0], history=records)
    record = next((one for one, evidence in outputs if evidence == "dossier"), records[0])
    summaries = [queries._summary(one) for one, _ in outputs]  # a damaged output reads untrusted, with why
    appraisal = queries._read(queries.store.appraisal, record) or {}
    return {"envelope": _name(record), "received": record.received, "trusted": all(s.trusted for s in summaries),
            "errors": [{"id": str(f.id), "severity": str(f.severity), "message": f.message,
                        "expected": f.expected, "found": f.found} for summary in summaries for f in summary.errors],
            "appraised": bool(appraisal), "status": appraisal.get("status", "none"),
            "findings": [f for f in appraisal.get("findings", []) if isinstance(f, Mapping)]}


def device_content(queries: StoreQueries, name: str) -> dict[str, Any] | None:
    """Packages (with their install and runtime fingerprints) and files (with their digests) of
    `name`'s newest trusted output, from what verifying it returned; None when it has none."""
    newest = next((record for record in queries._read(queries.store.history, name) if record.trusted), None)
    record = queries.trusted_dossier(newest) if newest is not None else None
    if record is None:
        return None
    verdict = queries.verdict(record)
    content = queries._content_of(record)
    if content is None or verdict.dossier is None:
        return None
    payload, _ = item_payload(verdict.dossier, "packages")
    packages = [{"name": entry.get("name"), "version": entry.get("version"),
                 "install_fingerprint": entry.get("install-fingerprint"),
                 "runtime_fingerprint": entry.get("runtime-fingerprint")}
                for entry in (payload if isinstance(payload, list) else ()) if isinstance(entry, Mapping)]
    files = [{"node": node, "path": path, "algorithm": algorithm, "digest": digest}
             for (node, path), (algorithm, digest) in sorted(content.files.items())]
    return {"envelope": _name(record), "received": record.received, "packages": packages, "files": files}
