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
    record = records[-1]
    try:
        result = appraise_record(store, verdicts, record, policy)
    except (InsightsError, StoreError) as exc:
        state["appraisal_status"] = None
        state["appraisal_error"] = str(exc)
        alerts.failed(record.device, exc.reason, f"appraisal failed: {exc}")
        return {"status": None, "error": str(exc)}
    status = str(result.status)
    state["appraisal_status"] = status
    state["appraisal_path"] = record.path
    state.pop("appraisal_error", None)
    if previous == str(Status.AFFIRMING) and result.status.rank > Status.AFFIRMING.rank:
        state["appraisal_degradations"] = int(state.get("appraisal_degradations", 0)) + 1
        worst = [f"{c}={s}" for c, s in result.vector.items() if s.rank > Status.AFFIRMING.rank]
        alerts.degraded(record.device, previous, status, worst,
                        [str(f.id) for f in result.findings if f.severity != "info"], record.path)
    return {"status": status, "trust_vector": {k: str(v) for k, v in result.vector.items()}}
