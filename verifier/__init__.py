"""Verifier: prove a signed dossier envelope (signature, two-tier chain, nonce).

    from verifier import verify_envelope, TrustStore
    verdict = verify_envelope(raw, trust_store=TrustStore.open(path), device="r1",
                              expected_nonce=bytes.fromhex("1580"))
    verdict.trusted, verdict.findings, verdict.dossier
"""

from .errors import ChainError, EnvelopeError, SignatureError, TrustStoreError, VerifierError
from .findings import Finding, FindingId, Severity
from .policy import Policy
from .truststore import TrustStore
from .verify import Verdict, verify_envelope

__all__ = [
    "ChainError",
    "EnvelopeError",
    "Finding",
    "FindingId",
    "Policy",
    "Severity",
    "SignatureError",
    "TrustStore",
    "TrustStoreError",
    "Verdict",
    "VerifierError",
    "verify_envelope",
]
