"""The verifier's exceptions: one root, one subclass per failure a caller can act on.

Verification of an envelope does not raise for a bad envelope: it returns a `Verdict` with
findings. These exceptions are for the caller's own mistakes and for lower-level helpers
(`validate_chain`, `verify_signature`) whose callers want an exception.
"""

from __future__ import annotations

__all__ = [
    "ChainError",
    "EnvelopeError",
    "SignatureError",
    "TrustStoreError",
    "VerifierError",
]


class VerifierError(Exception):
    """Root of every error the verifier raises."""


class EnvelopeError(VerifierError):
    """An input file or its metadata cannot be read as an envelope (not a verdict: nothing was checked)."""


class ChainError(VerifierError):
    """The certificate chain does not validate against the given roots."""


class SignatureError(VerifierError):
    """A signature does not verify, or its key is not allowed by the policy."""


class TrustStoreError(VerifierError):
    """The trust store is missing, damaged, or asked for something it does not hold."""
