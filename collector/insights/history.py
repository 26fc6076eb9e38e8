"""A device's history in the store, replayed in order: evidence, drift since the last trusted
collection, and the file state those drifts are built on.

Content comes only from what verification returns: each stored output is verified again, at
the time it was received, against the trust store (`StoredVerdicts`, `verifier.verify_stored`,
which also checks the collector's signed record), and its verdict's dossier or measurements
are the evidence (`Evidence.from_verdict`). An untrusted output contributes its certificate
fingerprints and nothing else; nothing here parses stored bytes itself.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..store import EnvelopeRecord, Store, write_file_atomically
from .appraise import Appraisal, appraise
from .diff import Evidence, FileSystemState, diff_evidence
from .errors import InsightsError
from .findings import DriftId, Finding
from .policy import AppraisalPolicy

__all__ = ["MAX_STORED_DRIFT", "HistoryStep", "StoredVerdicts", "appraise_record", "diff_history", "file_state_at",
           "pick_record", "replay", "stored_evidence"]

log = logging.getLogger("collector.insights")

#: Drift findings kept in an appraisal file (all are counted); 20,000 file changes would make
#: the sidecar megabytes for no reader's benefit. `dossier diff` always shows them all.
MAX_STORED_DRIFT = 500
#: Verdicts kept per process (an appraisal needs the newest and the previous trusted output
#: of a device; a history replay each output once, in order).
_VERDICT_CACHE = 256


class StoredVerdicts:
    """The verdicts of a store's outputs, each verified again at the time it was received against
    `trust_store` (a path, or an open `verifier.TrustStore`), as `dossier verify --at received`
    does; each output verified once while it stays in the cache.

    Raises InsightsError (when first used) if there is no trust store there: content is only
    ever what verification returns."""

    def __init__(self, store: Store, trust_store: Any) -> None:
        self.store = store
        self._trust_store = trust_store
        self._opened: Any = None
        self._logs: dict[Any, Any] = {}
        self._cache: dict[tuple[str, str], Any] = {}

    def _anchors(self) -> Any:
        if self._opened is None:
            from verifier import TrustStore, VerifierError

            if self._trust_store is None:
                raise InsightsError("expected a trust store to verify the stored outputs with (--trust-store, "
                                    "or $DOSSIER_TRUST_STORE), found none; content is only compared once verified")
            if isinstance(self._trust_store, TrustStore):
                self._opened = self._trust_store
            else:
                try:
                    self._opened = TrustStore.open(Path(self._trust_store))
                except VerifierError as exc:
                    raise InsightsError(str(exc)) from None
        return self._opened

    def trust_store(self) -> Any:
        """The trust store, opened (`verifier.TrustStore`); raises InsightsError as `__call__`."""
        return self._anchors()

    def __call__(self, record: EnvelopeRecord) -> Any:
        """The verdict of `record`'s output. Raises InsightsError when the output or its metadata
        cannot be read as stored."""
        from verifier import VerifierError
        from verifier.evidence import verify_stored

        key = (record.path, record.sha256)
        verdict = self._cache.get(key)
        if verdict is None:
            try:
                verdict = verify_stored(self.store.root / record.path, trust_store=self._anchors(), at="received",
                                        record_logs=self._logs)
            except VerifierError as exc:  # unreadable file or metadata: the store needs looking at
                raise InsightsError(f"cannot verify the stored output {record.path}: {exc}") from None
            if len(self._cache) >= _VERDICT_CACHE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = verdict
        return verdict


def stored_evidence(verdicts: StoredVerdicts, record: EnvelopeRecord) -> Evidence:
    """The evidence of one stored output: what its verification returns (content only when
    trusted)."""
    return Evidence.from_verdict(verdicts(record), label=record.path, received=record.received)


@dataclass
class HistoryStep:
    """One collection with its drift since the previous trusted one (None: the first)."""

    record: EnvelopeRecord
    evidence: Evidence
    drift: list[Finding] = field(default_factory=list)
    previous: EnvelopeRecord | None = None


def comparable_history(store: Store, record: EnvelopeRecord) -> list[EnvelopeRecord]:
    """The device's stored outputs of `record`'s kind, oldest first: the ones a drift compares
    it with (an IOS XE integrity output with the earlier integrity outputs, never with the SUDI
    outputs that sign them)."""
    wanted = _kind(store, record)
    return [r for r in reversed(store.history(record.device)) if _kind(store, r) == wanted]


def _kind(store: Store, record: EnvelopeRecord) -> str | None:
    """The kind of the stored output (`verifier.stored.kind_of`); None when its metadata is
    missing or unusable (such outputs are compared with each other)."""
    from verifier import VerifierError
    from verifier.stored import META_SUFFIX, kind_of, read_sidecar, sidecar_path

    try:
        kind = kind_of(read_sidecar(sidecar_path(store.root / record.path, META_SUFFIX)))
    except VerifierError:
        return None
    return kind.name if kind is not None else None


def replay(store: Store, verdicts: StoredVerdicts, device: str, *, files: FileSystemState | None = None,
           until: EnvelopeRecord | None = None) -> Iterator[HistoryStep]:
    """Walk `device`'s outputs of `until`'s kind (the newest output's when None) oldest first,
    advancing `files`, up to and including `until`."""
    files = files if files is not None else FileSystemState()
    last: tuple[EnvelopeRecord, Evidence] | None = None
    newest = until or next(iter(store.history(device, limit=1)), None)
    for record in comparable_history(store, newest) if newest is not None else []:
        if until is not None and record.received > until.received:
            break
        evidence = stored_evidence(verdicts, record)
        if last is None:
            drift: list[Finding] = []
            if evidence.dossier is not None:
                files.apply(evidence.dossier, report=False)
        else:
            drift = diff_evidence(last[1], evidence, files)
            if last[1].dossier is None and evidence.dossier is not None:
                files.apply(evidence.dossier, report=False)
        yield HistoryStep(record, evidence, drift, last[0] if last else None)
        if evidence.has_content or last is None:
            last = (record, evidence)
        if until is not None and record.path == until.path:
            break


#: The file state as of a device's newest trusted envelope, in the store's state directory.
#: Derived (rebuilt by replaying the history when missing or stale), so losing it costs time only.
FILE_STATE_SUFFIX = ".files-state"
FILE_STATE_FORMAT = "trust-dossier/file-state/1"


def _file_state_path(store: Store, device: str) -> Path:
    return store.root / "state" / f"{device}{FILE_STATE_SUFFIX}"


def _load_file_state(store: Store, device: str, upto: str) -> FileSystemState | None:
    try:
        data = json.loads(_file_state_path(store, device).read_text("utf-8"))
        if data.get("format") != FILE_STATE_FORMAT or data.get("upto") != upto:
            return None
        return FileSystemState.from_json(data["nodes"])
    except (OSError, ValueError, AttributeError, KeyError, InsightsError):
        return None  # stale or damaged: the caller replays the history instead


def _save_file_state(store: Store, device: str, upto: str, files: FileSystemState) -> None:
    path = _file_state_path(store, device)
    try:
        path.parent.mkdir(exist_ok=True)
        write_file_atomically(path, json.dumps({"format": FILE_STATE_FORMAT, "upto": upto,
                                                "nodes": files.to_json()}, separators=(",", ":")).encode(),
                              replace=True, sync=False)
    except (OSError, StoreError) as exc:
        log.warning("cannot save the file state of %s (%s); the next appraisal replays the history",
                    device, exc)


def file_state_at(store: Store, verdicts: StoredVerdicts, record: EnvelopeRecord) -> FileSystemState:
    """The device's files as of its stored output `record`: the saved state when it was saved
    after `record`, otherwise the history replayed up to it."""
    files = _load_file_state(store, record.device, record.path)
    if files is None:
        files = FileSystemState()
        for _step in replay(store, verdicts, record.device, files=files, until=record):
            pass
    return files


def appraise_record(store: Store, verdicts: StoredVerdicts, record: EnvelopeRecord, policy: AppraisalPolicy, *,
                    save: bool = True, now: dt.datetime | None = None) -> Appraisal:
    """Appraise one stored output against `policy`, with drift since the device's previous
    trusted output of its kind; stores the result beside the output and in the index when `save`.

    Costs the verification of the output and of the previous trusted one, plus the file state
    saved after it (`state/<device>.files-state`); only when that is missing or stale is the
    history replayed.
    """
    records = comparable_history(store, record)  # oldest first
    position = next((i for i, r in enumerate(records) if r.path == record.path), None)
    if position is None:
        raise InsightsError(f"expected {record.path} in the history of {record.device}, found it missing; "
                            "run `dossier store reindex`")
    earlier = records[:position]
    trusted_before = [r for r in earlier if r.trusted]
    # As `replay`: compare with the newest trusted envelope, or the first one while none is.
    previous = trusted_before[-1] if trusted_before else (earlier[0] if earlier else None)
    files: FileSystemState | None = None
    if trusted_before:
        files = _load_file_state(store, record.device, trusted_before[-1].path)
    if files is None:
        files = FileSystemState()
        for older in trusted_before:
            files.apply(stored_evidence(verdicts, older).dossier, report=False)
    evidence = stored_evidence(verdicts, record)
    packages = None
    if evidence.tpm_kind is not None:  # TPM evidence is judged against the device's dossier files
        files, packages = _dossier_references(store, verdicts, record)
    drift: list[Finding] = []
    if previous is not None:
        before = stored_evidence(verdicts, previous)
        drift = diff_evidence(before, evidence, files)
        if before.dossier is None and evidence.dossier is not None:
            files.apply(evidence.dossier, report=False)
    elif evidence.dossier is not None:
        files.apply(evidence.dossier, report=False)
    if evidence.dossier is not None and save:
        _save_file_state(store, record.device, record.path, files)
    result = appraise(evidence, drift, policy, device=record.device, files=files, packages=packages,
                      has_previous=previous is not None, previous=previous.path if previous else None, now=now)
    if save:
        store.save_appraisal(record, result.to_json(max_drift=MAX_STORED_DRIFT))
    return result


def _dossier_references(store: Store, verdicts: StoredVerdicts,
                        record: EnvelopeRecord) -> tuple[FileSystemState | None, dict[str, str] | None]:
    """The device's files and packages (`tpm.package_references`) as of its newest trusted
    dossier received no later than `record` (None, None: no trusted dossier yet); the files
    from the saved file state or else the history."""
    from .tpm import package_references

    dossiers = [r for r in reversed(store.history(record.device))
                if r.trusted and r.received <= record.received and _kind(store, r) == "xr-dossier"]
    if not dossiers:
        return None, None
    files = _load_file_state(store, record.device, dossiers[-1].path)
    if files is None:
        files = FileSystemState()
        for older in dossiers:
            files.apply(stored_evidence(verdicts, older).dossier, report=False)
    return files, package_references(stored_evidence(verdicts, dossiers[-1]).dossier)


def pick_record(records: list[EnvelopeRecord], reference: str, device: str) -> EnvelopeRecord:
    """A record of `records` (oldest first) by position (`-1` newest, `0` oldest), by envelope
    file name, or by the start of its received time (`2026-11-27T02`); raises InsightsError."""
    if not records:
        raise InsightsError(f"expected envelopes of {device} in the store, found none; check the "
                            "device name (`dossier status`)")
    try:
        position = int(reference)
    except ValueError:
        matches = [r for r in records if r.path.endswith(reference) or r.path.split("/")[-1].startswith(reference)
                   or r.received.startswith(reference)]
        if len(matches) != 1:
            raise InsightsError(f"expected {reference!r} to name one envelope of {device}, found "
                                f"{len(matches)}; use a position (-1 newest, -2 the one before) or a "
                                "longer time or file name") from None
        return matches[0]
    if not -len(records) <= position < len(records):
        raise InsightsError(f"expected a position between {-len(records)} and {len(records) - 1} "
                            f"({len(records)} envelopes of {device}), found {position}")
    return records[position]


def diff_history(store: Store, verdicts: StoredVerdicts, device: str, before: EnvelopeRecord,
                 after: EnvelopeRecord) -> list[Finding]:
    """Drift between two stored outputs of `device`, files applied block by block in between."""
    if before.received > after.received:
        before, after = after, before
    files = FileSystemState()
    steps = list(replay(store, verdicts, device, files=FileSystemState(), until=after))
    # The file state as of `before`, then every trusted dossier's blocks up to `after`, in order.
    evidence_before = evidence_after = None
    file_changes: list[Finding] = []
    started = False
    for step in steps:
        if step.evidence.dossier is not None:
            changes = files.apply(step.evidence.dossier, report=started)
            file_changes.extend(changes)
        if step.record.path == before.path:
            evidence_before, started = step.evidence, True
        if step.record.path == after.path:
            evidence_after = step.evidence
    if evidence_before is None or evidence_after is None:
        raise InsightsError(f"expected {before.path} and {after.path} in the history of {device}; run "
                            "`dossier store reindex`")
    out = diff_evidence(evidence_before, evidence_after, FileSystemState())
    # diff_evidence compared files from scratch; replace those with the in-order application.
    file_ids = {finding_id for finding_id in DriftId if finding_id.startswith("drift.file.")}
    kept = [finding for finding in out if finding.id not in file_ids]
    if evidence_before.dossier is None or evidence_after.dossier is None:
        return kept
    return kept + file_changes
