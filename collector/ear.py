"""Signed attestation results: an appraisal as an EAR (draft-ietf-rats-ear), signed as a JWT.

    signer = EarSigner.load_or_create(ear_key_path(trust_store))   # outside the store, mode 0600
    token = issue_ear(store, verdicts, record, policy, signer)      # appraised now, never re-parsed
    signer.jwks()                                                   # served at /.well-known/jwks.json

The claims come from what verification and appraisal return (`StoredVerdicts`,
`appraise_record`): the verdict's nonce and the appraisal's per-category tiers. How our
categories become AR4SI claims is `trustworthiness_vector` (docs/ear.md lists it); the
checking side, the claim names and the tier ranges are verifier/ear.py's.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from verifier.ear import EAT_PROFILE

from .errors import StoreError
from .insights.appraise import Appraisal
from .insights.findings import AppraisalId, Category, Severity, Status
from .insights.history import StoredVerdicts, appraise_record
from .insights.policy import AppraisalPolicy
from .records import check_key_outside, create_private_key_file, read_private_key
from .store import EnvelopeRecord, Store

__all__ = [
    "EAR_KEY_FILE_NAME",
    "IDENTITY_ONLY_POLICY",
    "EarSigner",
    "ear_claims",
    "ear_key_path",
    "ear_source",
    "issue_ear",
    "trustworthiness_vector",
]

log = logging.getLogger("collector.ear")

#: The EAR signing key's file, beside the trust store (as the collector key): never in the store,
#: where whoever writes evidence could swap it.
EAR_KEY_FILE_NAME = "ear-signing-key.pem"
#: The JWS algorithm of the P-256 key this module makes (draft-ietf-rats-ear's default).
SIGNING_ALGORITHM = "ES256"
DEVELOPER = "trust-dossier"
#: Finding ids carried in an EAR; an appraisal can list thousands (one per file), which would
#: make every EAR megabytes. The appraisal sidecar and the API hold all of them.
MAX_EAR_FINDINGS = 100
#: With no policy, only the evidence's verification is judged (instance-identity): an explicit,
#: named policy of no rules, never an empty user policy (those are refused).
IDENTITY_ONLY_POLICY = AppraisalPolicy(rules={}, name="identity-only")

# AR4SI values per claim for our tiers (the draft's named values: e.g. executables 2
# "approved_rt", 32 "unsafe_rt", 96 "contraindicated_rt"; file-system 32 "unrecognized_fs").
_VALUES: dict[str, dict[Status, int]] = {
    claim: {Status.AFFIRMING: 2, Status.WARNING: 32, Status.CONTRAINDICATED: 96}
    for claim in ("instance-identity", "configuration", "executables", "file-system", "hardware")
}
#: instance-identity 99: cryptographic validation of the evidence failed (signature, chain, nonce).
CRYPTO_VALIDATION_FAILED = 99
#: executables 3: only approved executables were loaded during boot (our boot category affirming,
#: nothing said about the packages).
APPROVED_BOOT = 3


def ear_key_path(trust_store: Path) -> Path:
    """The EAR signing key beside the trust store (e.g. state/ear-signing-key.pem)."""
    return Path(trust_store).parent / EAR_KEY_FILE_NAME


class EarSigner:
    """Signs EAR claims sets with the service's P-256 key; `jwks()` is its public half."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        from joserfc.jwk import ECKey

        self._jwk = ECKey.import_key(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
        self.key_id = self._jwk.thumbprint()  # RFC 7638: the same key always gets the same id

    def __repr__(self) -> str:  # never the key itself, in logs or tracebacks
        return f"EarSigner(kid={self.key_id})"

    @classmethod
    def load_or_create(cls, path: Path, *, store_root: Path | None = None) -> EarSigner:
        """The key at `path`, made on first use (mode 0600). Raises StoreError if it is inside
        `store_root`, readable by others, or not a P-256 private key."""
        path = Path(path)
        if store_root is not None:
            check_key_outside(path, store_root)
        key = ec.generate_private_key(ec.SECP256R1())
        if not create_private_key_file(path, key, "EAR signing key"):
            return cls(_read_key(path))
        signer = cls(key)
        log.info("created the EAR signing key %s (kid %s)", path, signer.key_id)
        return signer

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK Set (what /.well-known/jwks.json serves)."""
        public = self._jwk.as_dict(private=False)
        return {"keys": [{**public, "kid": self.key_id, "alg": SIGNING_ALGORITHM, "use": "sig"}]}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """The compact JWS of `claims`."""
        from joserfc import jwt

        return jwt.encode({"alg": SIGNING_ALGORITHM, "kid": self.key_id, "typ": "JWT"}, dict(claims), self._jwk)


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = read_private_key(path, "EAR signing key", "a P-256")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise StoreError(f"the EAR signing key {path}: expected a P-256 (ES256) key, found {type(key).__name__}")
    return key


def trustworthiness_vector(vector: Mapping[str, Status], *, untrusted: bool) -> dict[str, int]:
    """Our categories' tiers as AR4SI claims. A category with no claim (`none`) is left out;
    `boot` is folded into `executables` (the worse of the two; boot alone affirming is
    "approved boot", 3); an untrusted output's identity is "cryptographic validation failed"."""
    claims: dict[str, int] = {}
    for category in (Category.IDENTITY, Category.CONFIGURATION, Category.FILE_SYSTEM, Category.HARDWARE):
        status = Status(vector.get(str(category), Status.NONE))
        if status is not Status.NONE:
            claims[str(category)] = _VALUES[str(category)][status]
    if untrusted:
        claims[str(Category.IDENTITY)] = CRYPTO_VALIDATION_FAILED
    executables = Status(vector.get(str(Category.EXECUTABLES), Status.NONE))
    boot = Status(vector.get(str(Category.BOOT), Status.NONE))
    worst = Status.worst([executables, boot])
    if executables is Status.NONE and boot is Status.AFFIRMING:
        claims[str(Category.EXECUTABLES)] = APPROVED_BOOT
    elif worst is not Status.NONE:
        claims[str(Category.EXECUTABLES)] = _VALUES[str(Category.EXECUTABLES)][worst]
    return dict(sorted(claims.items()))


def _verifier_build() -> str:
    from . import __version__

    return f"trust-dossier {__version__}"


def _policy_id(policy: Mapping[str, Any]) -> str:
    name = str(policy.get("name") or "policy")
    digest = policy.get("sha256")
    return f"urn:trust-dossier:policy:{name}" + (f":sha256:{digest}" if digest else "")


def ear_claims(appraisal: Appraisal, *, nonce: bytes | None, envelope_sha256: str,
               issued_at: dt.datetime | None = None) -> dict[str, Any]:
    """The EAR claims set (schemas/ear.schema.json) of one appraisal, whose evidence was bound to
    `nonce` (the verdict's)."""
    untrusted = any(finding.id == AppraisalId.IDENTITY_UNTRUSTED for finding in appraisal.findings)
    ids = sorted({str(finding.id) for finding in appraisal.findings if finding.severity != Severity.INFO})
    verifier_claims: dict[str, Any] = {
        "envelope": appraisal.envelope,
        "envelope_sha256": envelope_sha256,
        "received": appraisal.received,
        "categories": {str(name): str(status) for name, status in sorted(appraisal.vector.items())},
        "findings": ids[:MAX_EAR_FINDINGS],
    }
    if len(ids) > MAX_EAR_FINDINGS:
        verifier_claims["findings_truncated"] = len(ids) - MAX_EAR_FINDINGS
    claims: dict[str, Any] = {
        "eat_profile": EAT_PROFILE,
        "iat": int((issued_at or dt.datetime.now(dt.UTC)).timestamp()),
        "jti": uuid.uuid4().hex,
        "ear_verifier_id": {"developer": DEVELOPER, "build": _verifier_build()},
        "submods": {appraisal.device: {
            "ear_status": str(appraisal.status),
            "ear_trustworthiness_vector": trustworthiness_vector(appraisal.vector, untrusted=untrusted),
            "ear_appraisal_policy_id": _policy_id(appraisal.policy),
            "ear_verifier_claims": verifier_claims,
        }},
    }
    if nonce:
        claims["eat_nonce"] = base64.urlsafe_b64encode(nonce).rstrip(b"=").decode("ascii")
    return claims


def issue_ear(store: Store, verdicts: StoredVerdicts, record: EnvelopeRecord, policy: AppraisalPolicy | None,
              signer: EarSigner, *, now: dt.datetime | None = None) -> str:
    """Appraise `record` now (against `policy`, identity only when None; nothing is saved) and
    return its signed EAR. Raises InsightsError or StoreError when the output cannot be appraised."""
    appraisal = appraise_record(store, verdicts, record, policy or IDENTITY_ONLY_POLICY, save=False, now=now)
    verdict = verdicts(record)  # cached: the verification the appraisal just used
    # An untrusted output's nonce is whatever it claims (a replay carries an old one): no echo.
    nonce = verdict.nonce if verdict.trusted else None
    return signer.sign(ear_claims(appraisal, nonce=nonce, envelope_sha256=verdict.envelope_sha256 or record.sha256,
                                  issued_at=now))


def ear_source(store: Store, trust_store: Any, policy: AppraisalPolicy | None,
               signer: EarSigner) -> Callable[[str, str], str | None]:
    """`(device, stored path) -> EAR` for webhook events (called from the sender's thread, so
    collection never waits for it); None when the path is not in the device's history."""

    def ear_for(device: str, path: str) -> str | None:
        record = next((r for r in store.history(device) if r.path == path), None)
        if record is None:
            return None
        return issue_ear(store, StoredVerdicts(store, trust_store), record, policy, signer)

    return ear_for
