"""Findings: the stable, dotted ids a verification can report, spelled once, here.

A finding id is an API: tools and CI jobs match on it. Add ids; never rename one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["PROFILE_FINDING_IDS", "Finding", "FindingId", "Severity"]


class Severity(enum.StrEnum):
    """How much a finding matters.

    Only `ERROR` makes a verdict untrusted. `ALERT` (a certificate expires within 7 days) asks
    for action now but the envelope is still proven at the chosen time, so it does not by
    itself make the verdict untrusted; CI jobs that want it fatal can match on the severity.
    """

    ERROR = "error"
    ALERT = "alert"
    WARNING = "warning"
    INFO = "info"


class FindingId(enum.StrEnum):
    """Every finding id the verifier can emit."""

    # (1) input bounds and framing
    INPUT_TOO_LARGE = "input.too_large"
    INPUT_NOT_UTF8 = "input.not_utf8"
    INPUT_EMPTY = "input.empty"
    INPUT_UNEXPECTED_PREFIX = "input.unexpected_prefix"
    # (2) strict JSON and envelope structure
    ENVELOPE_INVALID_JSON = "envelope.invalid_json"
    ENVELOPE_TOO_DEEP = "envelope.too_deep"
    ENVELOPE_DUPLICATE_KEY = "envelope.duplicate_key"
    ENVELOPE_NON_FINITE_NUMBER = "envelope.non_finite_number"
    ENVELOPE_LONE_SURROGATE = "envelope.lone_surrogate"
    ENVELOPE_TRAILING_DATA = "envelope.trailing_data"
    ENVELOPE_WRONG_TYPE = "envelope.wrong_type"
    ENVELOPE_MISSING_MEMBER = "envelope.missing_member"
    ENVELOPE_UNKNOWN_MEMBER = "envelope.unknown_member"
    ENVELOPE_UNSUPPORTED_VERSION = "envelope.unsupported_version"
    ENVELOPE_BAD_BASE64 = "envelope.bad_base64"
    ENVELOPE_BAD_CERTIFICATE = "envelope.bad_certificate"
    ENVELOPE_TOO_MANY_CERTIFICATES = "envelope.too_many_certificates"
    # (3) signature
    SIGNATURE_INVALID = "signature.invalid"
    SIGNATURE_UNSUPPORTED_KEY = "signature.unsupported_key"
    SIGNATURE_WEAK_KEY = "signature.weak_key"
    # (4) chain and trust anchors
    TRUST_NO_ROOTS = "trust.no_roots"
    TRUST_DEVICE_UNKNOWN = "trust.device_unknown"
    TRUST_DEVICE_AMBIGUOUS = "trust.device_ambiguous"
    TRUST_DEVICE_INFERRED = "trust.device_inferred"
    CHAIN_NO_CERTIFICATE = "chain.no_certificate"
    CHAIN_ROOT_NOT_ENROLLED = "chain.root_not_enrolled"
    CHAIN_NOT_ISSUED_BY_ROOT = "chain.not_issued_by_root"
    CHAIN_LEAF_IS_CA = "chain.leaf_is_ca"
    CHAIN_LEAF_KEY_USAGE = "chain.leaf_key_usage"
    CHAIN_LEAF_EXPIRED = "chain.leaf_expired"
    CHAIN_LEAF_NOT_YET_VALID = "chain.leaf_not_yet_valid"
    CHAIN_ROOT_EXPIRED = "chain.root_expired"
    CHAIN_ROOT_NOT_YET_VALID = "chain.root_not_yet_valid"
    CHAIN_ROOT_NOT_CA = "chain.root_not_ca"
    CHAIN_ROOT_CANNOT_SIGN = "chain.root_cannot_sign"
    CHAIN_UNKNOWN_CRITICAL_EXTENSION = "chain.unknown_critical_extension"
    CHAIN_WEAK_SIGNATURE_ALGORITHM = "chain.weak_signature_algorithm"
    CHAIN_WEAK_KEY = "chain.weak_key"
    CHAIN_TOO_MANY_INTERMEDIATES = "chain.too_many_intermediates"
    CHAIN_INVALID = "chain.invalid"
    CHAIN_LEAF_ROTATED = "chain.leaf_rotated"
    # (4b) device identity (IOS XE: every device chains to the same vendor CA, so the chain
    # alone proves "some Cisco device"; the pinned SUDI identity says which one)
    IDENTITY_NOT_PINNED = "identity.not_pinned"
    IDENTITY_MISMATCH = "identity.mismatch"
    IDENTITY_NOT_CHECKED = "identity.not_checked"
    # (5) nonce
    NONCE_NOT_CHECKED = "nonce.not_checked"
    NONCE_MISMATCH = "nonce.mismatch"
    NONCE_INVALID = "nonce.invalid"
    NONCE_DOSSIER_MISMATCH = "nonce.dossier_mismatch"
    NONCE_DOSSIER_MISSING = "nonce.dossier_missing"
    # (6) the dossier
    DATA_NOT_DOSSIER = "data.not_dossier"
    DOSSIER_MISSING = "dossier.missing"
    DOSSIER_TOO_DEEP = "dossier.too_deep"
    DOSSIER_INVALID_JSON = "dossier.invalid_json"
    DOSSIER_SCHEMA = "dossier.schema"
    DOSSIER_UNEXPECTED_CONTENT = "dossier.unexpected_content"
    DOSSIER_ITEM_FAILED = "dossier.item_failed"
    # (7) expiry
    EXPIRY_LEAF_SOON = "expiry.leaf_soon"
    EXPIRY_LEAF_IMMINENT = "expiry.leaf_imminent"
    EXPIRY_ROOT_SOON = "expiry.root_soon"
    EXPIRY_ROOT_IMMINENT = "expiry.root_imminent"

    # (8) the collector's record log (verifier/records.py, docs/design/record-log.md)
    RECORD_MISSING = "record.missing"
    RECORD_BEFORE_LOG = "record.before_log"
    RECORD_MISMATCH = "record.mismatch"
    RECORD_NONCE_REUSED = "record.nonce_reused"
    RECORD_BAD_SIGNATURE = "record.bad_signature"
    RECORD_OTHER_KEY = "record.other_key"
    RECORD_LINE_DELETED = "record.line_deleted"
    RECORD_LINE_REORDERED = "record.line_reordered"
    RECORD_LINE_INSERTED = "record.line_inserted"
    RECORD_CHAIN_BROKEN = "record.chain_broken"
    RECORD_LINE_INVALID = "record.line_invalid"
    RECORD_LOG_TORN = "record.log_torn"
    RECORD_LOG_REPAIRED = "record.log_repaired"
    RECORD_LOG_MISSING = "record.log_missing"
    RECORD_KEY_NOT_PINNED = "record.key_not_pinned"
    RECORD_NOT_CHECKED = "record.not_checked"
    # (8b) the stored file against its metadata: bytes, SHA-256, file name, device folder
    STORED_MISMATCH = "stored.mismatch"

    # (9) the vendor profiles (verifier/profiles/): which profile, the printed output, measurements
    PROFILE_UNKNOWN = "profile.unknown"
    PROFILE_AMBIGUOUS = "profile.ambiguous"
    PROFILE_SHAPE_MISMATCH = "profile.shape_mismatch"
    OUTPUT_UNSIGNED = "output.unsigned"
    OUTPUT_DEVICE_ERROR = "output.device_error"
    OUTPUT_MISSING_FIELD = "output.missing_field"
    OUTPUT_MALFORMED_FIELD = "output.malformed_field"
    OUTPUT_DUPLICATE_FIELD = "output.duplicate_field"
    OUTPUT_UNAUTHENTICATED = "output.unauthenticated"
    OUTPUT_BAD_CERTIFICATE = "output.bad_certificate"
    OUTPUT_UNSUPPORTED_VERSION = "output.unsupported_version"
    MEASUREMENT_PCR_MISMATCH = "measurement.pcr_mismatch"
    # ... the SUDI chain (device -> pinned sub-CA -> pinned root)
    CHAIN_SUBCA_NOT_PINNED = "chain.subca_not_pinned"
    CHAIN_SUBCA_EXPIRED = "chain.subca_expired"
    CHAIN_LEAF_NOT_ISSUED_BY_SUBCA = "chain.leaf_not_issued_by_subca"
    CHAIN_LEGACY_PINNED_ANCHOR = "chain.legacy_pinned_anchor"
    # ... Known Good Values
    KGV_SIGNATURE_INVALID = "kgv.signature_invalid"
    KGV_SIGNER_UNTRUSTED = "kgv.signer_untrusted"
    KGV_UNAUTHENTICATED = "kgv.unauthenticated"
    KGV_HASH_UNKNOWN = "kgv.hash_unknown"
    KGV_MALFORMED = "kgv.malformed"

    # (10) TPM attestation (verifier/tpm/, the xr-tpm-* profiles; docs/design/tpm-verification.md)
    TPM_REPLY_MALFORMED = "tpm.reply_malformed"
    TPM_QUOTE_MALFORMED = "tpm.quote_malformed"
    TPM_NOT_GENERATED = "tpm.not_generated"
    TPM_NOT_A_QUOTE = "tpm.not_a_quote"
    TPM_NODE_MISSING = "tpm.node_missing"
    TPM_PCR_SELECTION = "tpm.pcr_selection"
    TPM_PCR_DIGEST_MISMATCH = "tpm.pcr_digest_mismatch"
    TPM_BOOT_LOG_MISMATCH = "tpm.boot_log_mismatch"
    TPM_IMA_LOG_MISMATCH = "tpm.ima_log_mismatch"
    TPM_IMA_TEMPLATE_MISMATCH = "tpm.ima_template_mismatch"
    TPM_IMA_UNSUPPORTED = "tpm.ima_unsupported"
    TPM_IMA_NOT_QUOTED = "tpm.ima_not_quoted"
    TPM_UPTIME_DECREASED = "tpm.uptime_decreased"
    TPM_REBOOTED = "tpm.rebooted"

    VERIFIER_INCOMPLETE = "verifier.incomplete"


# The ids only the vendor profiles emit (their test cases: tests/verifier_profiles/).
PROFILE_FINDING_IDS: frozenset[FindingId] = frozenset(
    finding_id for finding_id in FindingId
    if finding_id.startswith(("profile.", "output.", "measurement.", "kgv."))
) | {FindingId.CHAIN_SUBCA_NOT_PINNED, FindingId.CHAIN_SUBCA_EXPIRED,
     FindingId.CHAIN_LEAF_NOT_ISSUED_BY_SUBCA, FindingId.CHAIN_LEGACY_PINNED_ANCHOR}


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of one step: what was expected, what was found."""

    id: str
    severity: Severity
    message: str
    expected: str | None = None
    found: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the `findings[]` items of `schemas/verdict.schema.json`)."""
        return {
            "id": str(self.id),
            "severity": str(self.severity),
            "message": self.message,
            "expected": self.expected,
            "found": self.found,
        }
