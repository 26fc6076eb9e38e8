"""Stable ids for drift and appraisal findings, spelled once, here (severities are the verifier's).

A finding id is an API (tools, CI jobs and dashboards match on it): add ids, never rename one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from verifier.findings import Finding as VerifierFinding
from verifier.findings import Severity

__all__ = ["CATEGORIES", "AppraisalId", "Category", "ConsensusId", "DriftId", "Finding", "Severity", "Status"]


class Status(enum.StrEnum):
    """EAR trustworthiness tiers (IETF RATS attestation results), worst last."""

    NONE = "none"  # no claim: nothing in the policy looked at this category
    AFFIRMING = "affirming"
    WARNING = "warning"
    CONTRAINDICATED = "contraindicated"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def worst(cls, statuses: list[Status]) -> Status:
        return max(statuses, key=lambda s: _RANK[s], default=cls.NONE)


_RANK = {Status.NONE: 0, Status.AFFIRMING: 1, Status.WARNING: 2, Status.CONTRAINDICATED: 3}


class Category(enum.StrEnum):
    """The trustworthiness vector's categories (EAR names where EAR has one)."""

    IDENTITY = "instance-identity"  # signature, chain, nonce, certificates
    CONFIGURATION = "configuration"  # commits, rollbacks, who commits
    EXECUTABLES = "executables"  # software release, packages, package integrity
    FILE_SYSTEM = "file-system"  # file inventory against known-good hashes
    HARDWARE = "hardware"  # inventory serial numbers
    BOOT = "boot"  # secure boot, PCRs, reboots


CATEGORIES: tuple[Category, ...] = tuple(Category)


class DriftId(enum.StrEnum):
    """What changed between two dossiers of one device."""

    CONTENT_NOT_COMPARED = "drift.content.not_compared"
    ITEM_UNAVAILABLE = "drift.item.unavailable"
    SOFTWARE_VERSION_CHANGED = "drift.software.version_changed"
    PACKAGE_ADDED = "drift.package.added"
    PACKAGE_REMOVED = "drift.package.removed"
    PACKAGE_VERSION_CHANGED = "drift.package.version_changed"
    PACKAGE_RUNTIME_MISMATCH = "drift.package.runtime_mismatch"
    FILE_CREATED = "drift.file.created"
    FILE_MODIFIED = "drift.file.modified"
    FILE_DELETED = "drift.file.deleted"
    FILE_METADATA_CHANGED = "drift.file.metadata_changed"
    FILE_BLOCK_GAP = "drift.file.block_gap"
    FILE_BLOCK_REPEATED = "drift.file.block_repeated"
    FILE_NO_BASELINE = "drift.file.no_baseline"
    REBOOT_NEW = "drift.reboot.new"
    COMMIT_NEW = "drift.config.commit"
    COMMIT_ROLLBACK = "drift.config.rollback"
    HARDWARE_PART_SWAPPED = "drift.hardware.part_swapped"
    HARDWARE_PART_ADDED = "drift.hardware.part_added"
    HARDWARE_PART_REMOVED = "drift.hardware.part_removed"
    SECURE_BOOT_CHANGED = "drift.boot.secure_boot_changed"
    PCR_CHANGED = "drift.boot.pcr_changed"
    BOOT_MEASUREMENT_CHANGED = "drift.boot.measurement_changed"
    OS_MEASUREMENT_CHANGED = "drift.software.measurement_changed"
    IMA_CHANGED = "drift.boot.ima_aggregate_changed"
    TPM_BOOT_EVENT_CHANGED = "drift.tpm.boot_event_changed"
    LEAF_REKEYED = "drift.cert.leaf_rekeyed"
    ROOT_CHANGED = "drift.cert.root_changed"


class AppraisalId(enum.StrEnum):
    """Why a category got the status it got."""

    IDENTITY_UNTRUSTED = "appraisal.identity.untrusted"
    IDENTITY_EXPIRY = "appraisal.identity.certificate_expiring"
    IDENTITY_ROOT_CHANGED = "appraisal.identity.root_changed"
    EVIDENCE_MISSING = "appraisal.evidence_missing"
    SOFTWARE_NOT_ALLOWED = "appraisal.software.version_not_allowed"
    PACKAGE_MISSING = "appraisal.package.required_missing"
    PACKAGE_FORBIDDEN = "appraisal.package.forbidden_present"
    PACKAGE_TAMPERED = "appraisal.package.runtime_mismatch"
    FILE_HASH_MISMATCH = "appraisal.file.hash_mismatch"
    FILE_UNEXPLAINED_CHANGE = "appraisal.file.unexplained_change"
    FILE_HISTORY_GAP = "appraisal.file.history_gap"
    SECURE_BOOT_DISABLED = "appraisal.boot.secure_boot_disabled"
    PCR_UNEXPLAINED_CHANGE = "appraisal.boot.pcr_unexplained_change"
    REBOOTS_OVER_LIMIT = "appraisal.boot.reboots_over_limit"
    COMMITS_OVER_LIMIT = "appraisal.config.commits_over_limit"
    COMMIT_USER_NOT_ALLOWED = "appraisal.config.user_not_allowed"
    HARDWARE_CHANGED = "appraisal.hardware.changed"
    REFERENCE_VALUES = "appraisal.reference_values.mismatch"
    TPM_MEASUREMENT_UNKNOWN = "appraisal.tpm.measurement_unknown"
    TPM_MEASUREMENT_CHANGED = "appraisal.tpm.measurement_changed"
    TRUNCATED = "appraisal.truncated"


class ConsensusId(enum.StrEnum):
    """Where one device differs from the rest of the fleet on its release and platform
    (`collector.insights.consensus`): flagged with no reference value to compare with."""

    FILE_DIFFERS = "consensus.file.differs"
    PACKAGE_DIFFERS = "consensus.package.differs"


@dataclass(frozen=True, slots=True, init=False)
class Finding(VerifierFinding):
    """One drift or appraisal finding: the verifier's `Finding` (one class for every finding of
    the project: id, severity, message, and `before`/`after` as its expected/found values) with
    the trustworthiness category and the subject (a file, package, node, rule) it concerns."""

    category: Category = Category.IDENTITY
    subject: str = ""

    def __init__(self, id: str, severity: Severity, category: Category, subject: str, message: str,
                 before: Any = None, after: Any = None) -> None:
        for name, value in (("id", id), ("severity", severity), ("message", message), ("expected", before),
                            ("found", after), ("category", category), ("subject", subject)):
            object.__setattr__(self, name, value)

    @property
    def before(self) -> Any:
        return self.expected

    @property
    def after(self) -> Any:
        return self.found

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "severity": str(self.severity), "category": str(self.category),
                "subject": self.subject, "message": self.message, "before": self.before,
                "after": self.after}
