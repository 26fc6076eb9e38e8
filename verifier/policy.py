"""What the verifier accepts: key types and sizes, limits, and the few (named) unsafe switches."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

__all__ = ["DEFAULT_POLICY", "Policy"]

_log = logging.getLogger(__name__)

MAX_ENVELOPE_BYTES = 64 * 1024 * 1024  # DoS bound: a 2 MB dossier is large; 64 MiB leaves room
MAX_JSON_DEPTH = 32  # the envelope nests 5 deep and a dossier 8; deeper input is an attack
MAX_INTERMEDIATES = 4  # enrolled sub-CAs (an enterprise CA has 1-2); more only costs path-building time
MAX_CERTIFICATES = 2  # ENVELOPE.md 3: root first, then the leaf; sub-CAs are enrolled, never carried
WARN_DAYS = 60  # the seed's PKI expiry schedule: first warning at 60 days
ALERT_DAYS = 7  # ... and an alert at 7 days


@dataclass(frozen=True)
class Policy:
    """Verification policy; the default is the strict one.

    `insecure_skip_nonce` is the only switch that lowers a check: with it a missing expected
    nonce is a warning instead of an error, and a warning is logged every time it is used.
    """

    max_envelope_bytes: int = MAX_ENVELOPE_BYTES
    max_json_depth: int = MAX_JSON_DEPTH
    max_intermediates: int = MAX_INTERMEDIATES
    min_rsa_bits: int = 2048
    max_rsa_bits: int = 4096  # ENVELOPE.md: RSA 2048-4096; bigger keys only slow us down
    allowed_curves: frozenset[str] = field(
        default_factory=lambda: frozenset({"secp256r1", "secp384r1", "secp521r1"})
    )
    allow_dsa: bool = False  # ENVELOPE.md allows DSA-2048, but it is legacy: opt in
    min_dsa_bits: int = 2048
    require_dossier: bool = False  # True: a signed text that is not a dossier is an error
    validate_dossier: bool = True  # check the dossier against schemas/dossier.schema.json
    # True: an unknown member or item, or a missing payload member, is an error, not a warning
    strict_dossier: bool = False
    warn_days: int = WARN_DAYS
    alert_days: int = ALERT_DAYS
    insecure_skip_nonce: bool = False

    def __post_init__(self) -> None:
        if self.max_envelope_bytes <= 0 or self.max_json_depth <= 0:
            raise ValueError("Policy limits must be positive")
        if self.max_intermediates < 0:
            raise ValueError("Policy.max_intermediates must be >= 0")
        if not self.allowed_curves and self.min_rsa_bits > self.max_rsa_bits and not self.allow_dsa:
            raise ValueError("Policy allows no key type at all")
        if self.alert_days > self.warn_days:
            raise ValueError(
                f"Policy.alert_days ({self.alert_days}) must not exceed warn_days ({self.warn_days})"
            )

    def note_insecure_use(self) -> None:
        """Log the danger each time an unsafe switch changes an outcome."""
        if self.insecure_skip_nonce:
            _log.warning(
                "insecure_skip_nonce: verifying without an expected nonce; "
                "freshness (replay) is NOT checked"
            )


DEFAULT_POLICY = Policy()
