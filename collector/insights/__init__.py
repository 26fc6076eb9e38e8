"""Trust insights: drift between dossiers, appraisal against a policy, the fleet report.

    from collector.insights import load_policy, appraise_record, diff_evidence, build_report
    policy = load_policy("policy.yaml")
    appraisal = appraise_record(store, record, policy)   # stored beside the envelope
    appraisal.status, appraisal.vector, appraisal.findings, appraisal.drift

Errors derive from `InsightsError` (a `CollectorError`).
"""

from __future__ import annotations

from .appraise import APPRAISAL_FORMAT, Appraisal, appraise
from .diff import Evidence, FileSystemState, diff_dossiers, diff_evidence, evidence_from_envelope
from .errors import InsightsError, PolicyError
from .findings import CATEGORIES, AppraisalId, Category, DriftId, Finding, Severity, Status
from .history import HistoryStep, appraise_record, replay, stored_evidence
from .policy import AppraisalPolicy, KnownGood, Level, Rule, load_hash_list, load_policy, register_reference_provider

__all__ = [
    "APPRAISAL_FORMAT",
    "CATEGORIES",
    "Appraisal",
    "AppraisalId",
    "AppraisalPolicy",
    "Category",
    "DriftId",
    "Evidence",
    "FileSystemState",
    "Finding",
    "HistoryStep",
    "InsightsError",
    "KnownGood",
    "Level",
    "PolicyError",
    "Rule",
    "Severity",
    "Status",
    "appraise",
    "appraise_record",
    "diff_dossiers",
    "diff_evidence",
    "evidence_from_envelope",
    "load_hash_list",
    "load_policy",
    "register_reference_provider",
    "replay",
    "stored_evidence",
]
