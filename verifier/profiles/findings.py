"""Finding ids of the vendor profiles: stable, dotted, spelled once here (add; never rename).

Kept apart from `verifier.findings.FindingId` (which lists the envelope checks); both are
plain strings on a `Finding`, and the profiles also use the envelope ids where they mean the
same thing (`signature.invalid`, `nonce.mismatch`, `chain.leaf_expired`, ...).
"""

from __future__ import annotations

import enum

__all__ = ["ProfileFindingId"]


class ProfileFindingId(enum.StrEnum):
    """Every finding id only the vendor profiles emit."""

    # which profile
    PROFILE_UNKNOWN = "profile.unknown"
    PROFILE_AMBIGUOUS = "profile.ambiguous"
    PROFILE_SHAPE_MISMATCH = "profile.shape_mismatch"
    # the printed output
    OUTPUT_UNSIGNED = "output.unsigned"
    OUTPUT_DEVICE_ERROR = "output.device_error"
    OUTPUT_MISSING_FIELD = "output.missing_field"
    OUTPUT_MALFORMED_FIELD = "output.malformed_field"
    OUTPUT_DUPLICATE_FIELD = "output.duplicate_field"
    OUTPUT_UNAUTHENTICATED = "output.unauthenticated"
    OUTPUT_BAD_CERTIFICATE = "output.bad_certificate"
    OUTPUT_UNSUPPORTED_VERSION = "output.unsupported_version"
    # measurements
    MEASUREMENT_PCR_MISMATCH = "measurement.pcr_mismatch"
    # the SUDI chain (device -> pinned sub-CA -> pinned root)
    CHAIN_SUBCA_NOT_PINNED = "chain.subca_not_pinned"
    CHAIN_SUBCA_EXPIRED = "chain.subca_expired"
    CHAIN_LEAF_NOT_ISSUED_BY_SUBCA = "chain.leaf_not_issued_by_subca"
    CHAIN_LEGACY_PINNED_ANCHOR = "chain.legacy_pinned_anchor"
    # Known Good Values
    KGV_SIGNATURE_INVALID = "kgv.signature_invalid"
    KGV_SIGNER_UNTRUSTED = "kgv.signer_untrusted"
    KGV_UNAUTHENTICATED = "kgv.unauthenticated"
    KGV_HASH_UNKNOWN = "kgv.hash_unknown"
    KGV_MALFORMED = "kgv.malformed"
