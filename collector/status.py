"""`dossier status`: each device's last collection, from what is signed.

The index, the verdict files and the device states (`state/_devices.json`) are anyone's who
can write the store. So when the store has a record log read with a key, a device's status and
its last trusted collection come from the collector's signed records (docs/design/record-log.md):

  (1) the newest stored envelope (index) and its signed record: the record's `trusted` is the
      status ("trusted", "untrusted", "not verified"); an envelope with record errors is
      "untrusted"; one only listed in the log's baseline is "unrecorded";
  (2) the index row's `trusted` is compared with the record (`record.mismatch` when they differ);
  (3) the last trusted collection is the newest signed record of the device saying trusted
      whose envelope still checks against it (not the index's newest trusted row);
  (4) the device state is advisory: its status, reason and message are shown only when its
      `last_path` is the envelope of (1) and it agrees with the record; a failed poll stores
      nothing and so has no record: it is shown as FAILED_UNVERIFIED, with the state's message
      and the time the device was last reached (the newest stored envelope's, or none);
  (5) an untrusted envelope whose state does not agree is explained by the message its stored
      verdict gives for the record's reason id (the id is signed, the message only explains it).

A store with no record log and no collector key (written before the log) has nothing signed:
the index's verdicts are shown, with the log's `record.log_missing` warning.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from verifier.findings import FindingId

from .records import StoreRecords
from .store import EnvelopeRecord, Store

__all__ = ["FAILED_UNVERIFIED", "NOT_VERIFIED", "UNRECORDED", "failed_poll", "fleet_status", "poll_time", "reason_text"]

TRUSTED, UNTRUSTED, FAILED = "trusted", "untrusted", "failed"  # as collector.collect spells them
#: A failed poll as the (unsigned) device state tells it: no envelope, so no record.
FAILED_UNVERIFIED = "failed (unverified state file)"
#: The signed record says the envelope was not verified at collection (--no-verify).
NOT_VERIFIED = "not verified"
#: Stored before the record log began: the baseline vouches for its bytes, nothing for its verdict.
UNRECORDED = "unrecorded"
#: Status looks this far back through a device's signed trusted records for one that holds.
TRUSTED_LOOKBACK = 50


def fleet_status(store: Store, checks: StoreRecords | None = None) -> list[dict[str, Any]]:
    """One row per device; with `checks` (a record log read with a key), from the signed records."""
    if checks is None or checks.log.key is None:
        return _unsigned_status(store)
    latest, states = store.latest(), store.readable_states()
    by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fields in checks.log.records.values():
        by_device[fields["device"]].append(fields)
    appraised = {path: status for _, _, path, status in store.appraisal_statuses()}
    rows = []
    for device in sorted(set(latest) | set(states)):
        state, record = states.get(device, {}), latest.get(device)
        status, reason, message, findings, received = None, None, None, [], None
        evidence: dict[str, str] = {}
        if record is not None:
            status, reason, message, findings, received = _signed_status(record, checks)
            status, reason, message, evidence = _whole_poll(store, record, checks, (status, reason, message))
        last_reached = received or (record.received if record is not None else None)
        # (4) the state file, advisory
        state_status, last_poll, failed = state.get("last_status"), poll_time(state), failed_poll(state)
        if failed is not None:
            status = FAILED_UNVERIFIED
            reason, message, last_poll = failed
        elif record is not None and state.get("last_path") == record.path and state_status == status:
            if status != TRUSTED:
                reason = state.get("last_reason")
                message = _text(state.get("last_message")) or message
        else:
            last_poll = received
        if status == UNTRUSTED and message is None and record is not None:
            message = _verdict_message(store, record, reason)  # (5)
        rows.append({
            "device": device,
            "last_poll": last_poll,
            "last_status": status,
            "last_reason": reason,
            "last_message": message,
            "last_reached": last_reached,
            "last_trusted": _last_trusted(by_device.get(device, []), checks),
            "days_leaf": record.days_leaf if record else None,
            "days_root": record.days_root if record else None,
            "latest_file": str(store.root / record.path) if record else None,
            # collector.insights: the newest poll's appraisal, its worst output's (None when not appraised)
            "appraisal": _worst_appraisal(store, record, appraised) if record else None,
            # The newest poll's evidence by kind ("dossier", "tpm"): each one's signed status.
            "evidence": evidence,
            "record_findings": findings,
        })
    return rows


#: Outputs one poll stores at most (the dossier, or IOS XE's two, and four TPM replies).
MAX_POLL_OUTPUTS = 8
_STATUS_RANK = {TRUSTED: 0, NOT_VERIFIED: 1, UNRECORDED: 1, UNTRUSTED: 2}
_APPRAISAL_RANK = {"affirming": 0, "none": 0, "warning": 1, "contraindicated": 2}


def poll_outputs(store: Store, record: EnvelopeRecord, *,
                 history: Sequence[EnvelopeRecord] | None = None) -> list[tuple[EnvelopeRecord, str]]:
    """The outputs the poll of `record` stored, newest first, each with its evidence ("tpm"
    for a TPM reply, else "dossier"), by the metadata's `poll_id`; `record` alone when its
    metadata names no poll. The poll's outputs are looked for among the device's newest
    records, or among `history` (its records newest first from `record` on, for an older poll)."""
    from verifier import VerifierError
    from verifier.stored import META_SUFFIX, read_sidecar, sidecar_path

    def meta(one: EnvelopeRecord) -> dict[str, Any]:
        try:
            return read_sidecar(sidecar_path(store.root / one.path, META_SUFFIX)) or {}
        except VerifierError:
            return {}

    def evidence(fields: Mapping[str, Any]) -> str:
        return "tpm" if str(fields.get("kind", "")).startswith("xr-tpm-") else "dossier"

    own = meta(record)
    poll = own.get("poll_id")
    if poll is None:
        return [(record, evidence(own))]
    outputs = []
    candidates = store.history(record.device, limit=MAX_POLL_OUTPUTS) if history is None else history[:MAX_POLL_OUTPUTS]
    for other in candidates:
        fields = own if other.path == record.path else meta(other)
        if fields.get("poll_id") == poll:
            outputs.append((other, evidence(fields)))
    return outputs or [(record, evidence(own))]


def _whole_poll(store: Store, record: EnvelopeRecord, checks: StoreRecords,
                newest: tuple[str, str | None, str | None]) -> tuple[str, str | None, str | None, dict[str, str]]:
    """The device's status from every output of its newest poll, not only the newest one (a poll
    of the dossier and TPM evidence is trusted only when each output is); the first output worse
    than the newest explains it. Returns status, reason, message and each evidence's status."""
    status, reason, message = newest
    by_evidence: dict[str, str] = {}
    for other, evidence in poll_outputs(store, record):
        mine = newest if other.path == record.path else _signed_status(other, checks)[:3]
        known = by_evidence.get(evidence)
        if known is None or _STATUS_RANK.get(mine[0], 2) > _STATUS_RANK.get(known, 2):
            by_evidence[evidence] = mine[0]
        if _STATUS_RANK.get(mine[0], 2) > _STATUS_RANK.get(status, 2):
            status, reason, message = mine
    return status, reason, message, by_evidence


def _worst_appraisal(store: Store, record: EnvelopeRecord, appraised: Mapping[str, str]) -> str | None:
    found = [appraised[other.path] for other, _ in poll_outputs(store, record) if other.path in appraised]
    return max(found, key=lambda status: _APPRAISAL_RANK.get(status, 2)) if found else None


def _signed_status(record: EnvelopeRecord,
                   checks: StoreRecords) -> tuple[str, str | None, str | None, list[str], str | None]:
    """(1)+(2): status, reason, the reason's message when a record check gives it, record
    finding ids and the signed received time of `record`."""
    errors = checks.errors(record)
    findings = sorted({str(f.id) for f in errors if f not in checks.log.problems})
    signed = checks.log.records.get(record.path)
    if signed is not None and record.trusted != signed["trusted"]:
        findings = sorted({*findings, str(FindingId.RECORD_MISMATCH)})  # the index row was edited
    if errors:
        return UNTRUSTED, str(errors[0].id), errors[0].message, findings, None
    if signed is None:
        return UNRECORDED, str(FindingId.RECORD_BEFORE_LOG), None, findings, None
    status = {True: TRUSTED, False: UNTRUSTED, None: NOT_VERIFIED}[signed["trusted"]]
    reason = None if signed["trusted"] else (signed["reasons"][0] if signed["reasons"] else None)
    return status, reason, None, findings, signed["received"]


def _verdict_message(store: Store, record: EnvelopeRecord, reason: str | None) -> str | None:
    """(5) the message the stored verdict gives for finding `reason` (None when it has none)."""
    verdict = store.verdict(record)
    findings = verdict.get("findings") if isinstance(verdict, dict) else None
    for finding in findings if isinstance(findings, list) else ():
        if isinstance(finding, dict) and finding.get("id") == reason:
            return _text(finding.get("message"))
    return None


def failed_poll(state: Mapping[str, Any]) -> tuple[str | None, str | None, str | None] | None:
    """The reason, message and time of a device state's last poll when it failed (it stored
    nothing, so the advisory state is all there is); None when the last poll did not fail."""
    if state.get("last_status") != FAILED:
        return None
    return _text(state.get("last_reason")), _text(state.get("last_message")), poll_time(state)


def poll_time(state: Mapping[str, Any]) -> str | None:
    """The time of a device state's last poll (ISO 8601), None when it has none."""
    poll_ts = state.get("last_poll_ts")
    if not isinstance(poll_ts, (int, float)) or isinstance(poll_ts, bool):
        return None
    return datetime.fromtimestamp(poll_ts, UTC).isoformat(timespec="seconds")


def _text(value: Any) -> str | None:
    """A message from an unsigned file: a string, or nothing."""
    return value if isinstance(value, str) and value else None


def _last_trusted(signed: list[dict[str, Any]], checks: StoreRecords) -> str | None:
    """(3) the received time of the newest signed trusted record whose envelope checks."""
    looked = 0
    for fields in reversed(signed):
        if fields["trusted"] is not True:
            continue
        if not checks.errors_at(fields["path"]):
            return fields["received"]
        looked += 1
        if looked >= TRUSTED_LOOKBACK:
            break
    return None


def _unsigned_status(store: Store) -> list[dict[str, Any]]:
    """No record log to check against: the index's verdicts and the device states."""
    latest, trusted, states = store.latest(), store.latest_trusted(), store.readable_states()
    appraised = {path: status for _, _, path, status in store.appraisal_statuses()}
    rows = []
    for device in sorted(set(latest) | set(states)):
        state = states.get(device, {})
        record = latest.get(device)
        status = state.get("last_status") or (None if record is None else (TRUSTED if record.trusted else UNTRUSTED))
        reason = state.get("last_reason") or (record.reasons[0] if status == UNTRUSTED and record and record.reasons
                                              else None)
        message = _text(state.get("last_message"))
        if status == UNTRUSTED and message is None and record is not None:
            message = _verdict_message(store, record, reason)
        rows.append({
            "device": device,
            "last_poll": poll_time(state),
            "last_status": status,
            "last_reason": reason,
            "last_message": message,
            "last_reached": record.received if record else None,
            "last_trusted": trusted[device].received if device in trusted else None,
            "days_leaf": record.days_leaf if record else None,
            "days_root": record.days_root if record else None,
            "latest_file": str(store.root / record.path) if record else None,
            "appraisal": appraised.get(record.path) if record else None,
            "record_findings": [],
        })
    return rows


def reason_text(row: dict[str, Any]) -> str:
    """A row's reason id with its message; for a failed poll, since when the device was not reached."""
    text = ": ".join(part for part in (row["last_reason"], row["last_message"]) if part)
    if row["last_status"] == FAILED_UNVERIFIED:
        since = f"not reached since {row['last_reached'][:19]}" if row["last_reached"] else "never reached"
        text = f"{text} ({since})" if text else since
    return text
