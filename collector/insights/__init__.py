"""Trust insights: drift between dossiers, appraisal against a policy, the fleet report.

    from collector.insights import StoredVerdicts, load_policy, appraise_record
    policy = load_policy("policy.yaml")
    verdicts = StoredVerdicts(store, "state/truststore")  # content only as verification returns it
    appraisal = appraise_record(store, verdicts, record, policy)   # stored beside the envelope
    appraisal.status, appraisal.vector, appraisal.findings, appraisal.drift

Errors derive from `InsightsError` (a `CollectorError`).
"""

from __future__ import annotations

from .appraise import APPRAISAL_FORMAT, Appraisal, appraise
from .consensus import FleetConsensus, fleet_consensus
from .diff import Evidence, FileSystemState, diff_dossiers, diff_evidence, diff_measurements
from .errors import InsightsError, PolicyError
from .findings import CATEGORIES, AppraisalId, Category, ConsensusId, DriftId, Finding, Severity, Status
from .history import HistoryStep, StoredVerdicts, appraise_record, replay, stored_evidence
from .policy import AppraisalPolicy, KnownGood, Level, Rule, load_hash_list, load_policy, register_reference_provider

__all__ = [
    "APPRAISAL_FORMAT",
    "CATEGORIES",
    "Appraisal",
    "AppraisalId",
    "AppraisalPolicy",
    "Category",
    "ConsensusId",
    "DriftId",
    "Evidence",
    "FileSystemState",
    "Finding",
    "FleetConsensus",
    "HistoryStep",
    "InsightsError",
    "KnownGood",
    "Level",
    "PolicyError",
    "Rule",
    "Severity",
    "Status",
    "StoredVerdicts",
    "appraise",
    "appraise_record",
    "diff_dossiers",
    "diff_evidence",
    "diff_measurements",
    "fleet_consensus",
    "load_hash_list",
    "load_policy",
    "register_reference_provider",
    "replay",
    "stored_evidence",
]
