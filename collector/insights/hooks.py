"""What the collector calls after storing and verifying a poll's outputs when it runs with a policy."""

from __future__ import annotations

from typing import Any

from ..alerts import AlertSink
from ..errors import StoreError
from ..store import EnvelopeRecord, Store
from .errors import InsightsError
from .findings import Status
from .history import StoredVerdicts, appraise_record
from .policy import AppraisalPolicy

__all__ = ["appraise_collected"]


def appraise_collected(store: Store, verdicts: StoredVerdicts, records: list[EnvelopeRecord],
                       policy: AppraisalPolicy, alerts: AlertSink, state: dict[str, Any]) -> dict[str, Any]:
    """Appraise the poll stored as `records`, store the result, and alert when the device got
    worse than affirming. The poll's last output is appraised: a poll stores the outputs that
    sign another (IOS XE: the SUDI output) before it.

    Updates the device `state` (appraisal status, degradation count) for metrics. An appraisal
    that cannot run is reported in the result and the state, never as affirming.
    """
    previous = state.get("appraisal_status")
    chosen = _appraised(store, records)
    results = []
    try:
        for record in chosen:
            results.append(appraise_record(store, verdicts, record, policy))
    except (InsightsError, StoreError) as exc:
        state["appraisal_status"] = None
        state["appraisal_error"] = str(exc)
        alerts.failed(chosen[0].device, exc.reason, f"appraisal failed: {exc}")
        return {"status": None, "error": str(exc)}
    result = max(results, key=lambda one: one.status.rank)  # the device is as good as its worst evidence
    record = chosen[results.index(result)]
    vector = {name: str(Status.worst([one.vector[name] for one in results])) for name in result.vector}
    status = str(result.status)
    state["appraisal_status"] = status
    state["appraisal_path"] = record.path
    state.pop("appraisal_error", None)
    if previous == str(Status.AFFIRMING) and result.status.rank > Status.AFFIRMING.rank:
        state["appraisal_degradations"] = int(state.get("appraisal_degradations", 0)) + 1
        worst = [f"{c}={s}" for c, s in vector.items() if Status(s).rank > Status.AFFIRMING.rank]
        alerts.degraded(record.device, previous, status, worst,
                        [str(f.id) for one in results for f in one.findings if f.severity != "info"], record.path)
    return {"status": status, "trust_vector": vector}


def _appraised(store: Store, records: list[EnvelopeRecord]) -> list[EnvelopeRecord]:
    """The outputs of a poll that are appraised: the platform's last one (IOS XE stores the SUDI
    output that signs the integrity output before it) and each TPM event log (the certificate
    and quote they rest on say nothing to appraise by themselves)."""
    from .history import _kind

    kinds = [_kind(store, record) for record in records]
    platform = [r for r, k in zip(records, kinds, strict=True) if not (k or "").startswith("xr-tpm-")]
    logs = [r for r, k in zip(records, kinds, strict=True) if k in ("xr-tpm-boot-log", "xr-tpm-ima-log")]
    return platform[-1:] + logs or records[-1:]
