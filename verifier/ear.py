"""EAT Attestation Results (draft-ietf-rats-ear): the checking side, usable without the collector.

    from verifier.ear import load_jwks, verify_ear
    result = verify_ear(token, load_jwks("jwks.json"))      # raises EarInvalid, EarInputError
    result.claims["submods"]["r1"]["ear_status"], result.key_id

The checklist of `verify_ear`:
  (1) the token is a compact JWS of bounded size whose header names an allowed (asymmetric)
      algorithm and a key id;
  (2) that key id is in the JWKS, and the signature verifies with that key;
  (3) the claims set matches schemas/ear.schema.json (profile, iat, verifier id, one submodule,
      AR4SI claim names only);
  (4) `iat` is not in the future (beyond the clock-skew allowance);
  (5) each submodule's `ear_status` is no better than the worst tier of its trustworthiness vector.

The AR4SI value ranges (`tier_of`) and the claim names are spelled once, here; the issuing side
(collector/ear.py) uses them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import VerifierError

__all__ = [
    "AR4SI_CLAIMS",
    "EAT_PROFILE",
    "SIGNING_ALGORITHMS",
    "TIERS",
    "EarInputError",
    "EarInvalid",
    "EarProblem",
    "VerifiedEar",
    "load_jwks",
    "tier_of",
    "verify_ear",
]

#: The EAR profile this project issues (Veraison's registered EAR profile tag).
EAT_PROFILE = "tag:github.com,2023:veraison/ear"
#: The AR4SI trustworthiness claims, the only names a vector may carry.
AR4SI_CLAIMS: tuple[str, ...] = ("instance-identity", "configuration", "executables", "file-system",
                                 "hardware", "runtime-opaque", "storage-opaque", "sourced-data")
#: The tiers, best to worst (`ear_status` values).
TIERS: tuple[str, ...] = ("none", "affirming", "warning", "contraindicated")
#: Asymmetric JWS algorithms only: a symmetric one (HS256) would let anyone holding the "public"
#: JWKS forge results, and `none` signs nothing.
SIGNING_ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "EdDSA")
#: DoS bound: an EAR of one device is a few KB; nothing legitimate comes near this.
MAX_EAR_BYTES = 256 * 1024
#: DoS bound on a JWKS read from a file or a URL (a handful of public keys).
MAX_JWKS_BYTES = 64 * 1024
#: A JWKS URL that does not answer in this time is an input error, not a hang.
JWKS_TIMEOUT_S = 10.0
#: Clocks of the issuing service and the auditor may differ by this much.
CLOCK_SKEW_S = 300


class EarProblem(enum.StrEnum):
    """Why an EAR is not valid (stable ids: tools match on them)."""

    MALFORMED = "ear.malformed"
    ALGORITHM_NOT_ALLOWED = "ear.algorithm_not_allowed"
    KEY_UNKNOWN = "ear.key_unknown"
    SIGNATURE_INVALID = "ear.signature_invalid"
    CLAIMS_INVALID = "ear.claims_invalid"
    ISSUED_IN_FUTURE = "ear.issued_in_future"
    STATUS_BETTER_THAN_VECTOR = "ear.status_better_than_vector"


class EarInvalid(VerifierError):
    """The EAR is not valid: its signature, its key or its claims fail a check (`problem`)."""

    def __init__(self, problem: EarProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


class EarInputError(VerifierError):
    """An input cannot be read as asked (the EAR file, the JWKS file or URL): nothing was checked."""


@dataclasses.dataclass(frozen=True)
class VerifiedEar:
    """What a valid EAR says: its header's key id and algorithm, and its claims set."""

    key_id: str
    algorithm: str
    claims: dict[str, Any]

    @property
    def statuses(self) -> dict[str, str]:
        """Each submodule's (device's) `ear_status`."""
        return {name: body["ear_status"] for name, body in self.claims["submods"].items()}


def tier_of(value: int) -> str:
    """The AR4SI tier of a trustworthiness claim value (-128..127; negative values are the
    positive ranges shifted down by one: -32..-2 affirming, -96..-33 warning, -128..-97
    contraindicated)."""
    if -1 <= value <= 1:
        return "none"
    magnitude = value if value > 0 else -value - 1
    if magnitude <= 31:
        return "affirming"
    if magnitude <= 95:
        return "warning"
    return "contraindicated"


def load_jwks(source: str) -> dict[str, Any]:
    """A JWKS (`{"keys": [...]}`) from a file path or an http(s) URL; raises EarInputError."""
    if source.startswith(("http://", "https://")):
        data = _fetch(source)
    else:
        data = _read_bounded(source, MAX_JWKS_BYTES, "JWKS")
    if len(data) > MAX_JWKS_BYTES:
        raise EarInputError(f"--jwks {source}: expected at most {MAX_JWKS_BYTES} bytes, found more")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EarInputError(f"--jwks {source}: expected JSON, found {exc}") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        raise EarInputError(f"--jwks {source}: expected a JWK Set with at least one key in \"keys\", found "
                            f"{'an empty set' if keys == [] else 'none'}")
    try:
        _key_set(document)
    except EarInputError as exc:
        raise EarInputError(f"--jwks {source}: {exc}") from None
    return document


def _fetch(url: str) -> bytes:
    """Up to MAX_JWKS_BYTES + 1 bytes of the answer at `url`, within JWKS_TIMEOUT_S in all, no
    redirect followed; raises EarInputError."""
    import http.client

    from .http_fetch import Deadline, RedirectRefused, no_redirect_opener

    deadline = Deadline(JWKS_TIMEOUT_S)
    try:
        with no_redirect_opener(deadline).open(url, timeout=JWKS_TIMEOUT_S) as response:
            data = response.read(MAX_JWKS_BYTES + 1)
    except RedirectRefused as exc:
        exc.close()
        raise EarInputError(f"--jwks {url}: expected the JWKS at that URL, found a redirect ({exc.reason}); give "
                            "the URL it names if you trust it") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        if deadline.passed:
            raise EarInputError(f"--jwks {url}: expected a JWKS within {JWKS_TIMEOUT_S:g} s, found an answer "
                                "still arriving") from None
        raise EarInputError(f"--jwks {url}: expected a JWKS from that URL, found it unreachable "
                            f"({getattr(exc, 'reason', exc)})") from None
    finally:
        deadline.cancel()
    if deadline.passed:
        raise EarInputError(f"--jwks {url}: expected a JWKS within {JWKS_TIMEOUT_S:g} s, found an answer still "
                            "arriving")
    return data


def _read_bounded(path: str | Path, max_bytes: int, what: str) -> bytes:
    """Up to `max_bytes` + 1 bytes of a regular file (a FIFO put there would block a plain open)."""
    from .stored import StoredFileError, read_stored_bytes

    try:
        return read_stored_bytes(Path(path), max_bytes, what)
    except StoredFileError as exc:
        raise EarInputError(str(exc)) from None


def read_ear_file(path: str | Path) -> str:
    """The compact JWS in an EAR file (surrounding white space ignored); raises EarInputError."""
    data = _read_bounded(path, MAX_EAR_BYTES, "EAR")
    if len(data) > MAX_EAR_BYTES:
        raise EarInputError(f"{path}: expected an EAR of at most {MAX_EAR_BYTES} bytes, found more")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise EarInputError(f"{path}: expected a compact JWS (ASCII), found other bytes") from None


def verify_ear(token: str, jwks: Mapping[str, Any], *, now: dt.datetime | None = None) -> VerifiedEar:
    """Check `token` against `jwks`, steps (1)-(5) above; returns what it says or raises EarInvalid
    (EarInputError when the JWKS itself holds no usable key)."""
    from joserfc import jws
    from joserfc.errors import BadSignatureError, JoseError

    key_set = _key_set(jwks)
    # (1) bounded compact JWS with an allowed algorithm and a key id
    if len(token) > MAX_EAR_BYTES:
        raise EarInvalid(EarProblem.MALFORMED, f"expected an EAR of at most {MAX_EAR_BYTES} bytes, found {len(token)}")
    try:
        header = jws.extract_compact(token.encode("ascii")).protected
    except (JoseError, ValueError, UnicodeError) as exc:
        raise EarInvalid(EarProblem.MALFORMED, f"expected a compact JWS (three base64url parts), found {exc}") from None
    algorithm, key_id = header.get("alg"), header.get("kid")
    if algorithm not in SIGNING_ALGORITHMS:
        raise EarInvalid(EarProblem.ALGORITHM_NOT_ALLOWED, f"expected a JWS algorithm among "
                         f"{', '.join(SIGNING_ALGORITHMS)}, found {algorithm!r}")
    # (2) the key named, and its signature
    candidates = [key for key in key_set.keys if key.kid == key_id]
    if not isinstance(key_id, str) or not candidates:
        known = ", ".join(str(key.kid) for key in key_set.keys) or "none"
        raise EarInvalid(EarProblem.KEY_UNKNOWN, f"expected the EAR's key id among the JWKS's ({known}), found {key_id!r}")
    try:
        verified = jws.deserialize_compact(token.encode("ascii"), candidates[0], algorithms=[algorithm])
    except BadSignatureError:
        raise EarInvalid(EarProblem.SIGNATURE_INVALID, f"expected a signature that verifies with key {key_id}, "
                         "found one that does not (the EAR was altered or signed by another key)") from None
    except (JoseError, ValueError) as exc:
        raise EarInvalid(EarProblem.SIGNATURE_INVALID, f"expected a signature that verifies with key {key_id}, "
                         f"found {exc}") from None
    # (3) the claims set's shape
    try:
        claims = json.loads(verified.payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EarInvalid(EarProblem.CLAIMS_INVALID, f"expected a JSON claims set, found {exc}") from None
    problems = claims_problems(claims)
    if problems:
        raise EarInvalid(EarProblem.CLAIMS_INVALID, "expected claims matching schemas/ear.schema.json, found "
                         + "; ".join(problems))
    # (4) issued in the past
    moment = (now or dt.datetime.now(dt.UTC)).timestamp()
    if claims["iat"] > moment + CLOCK_SKEW_S:
        issued = dt.datetime.fromtimestamp(claims["iat"], dt.UTC).isoformat(timespec="seconds")
        raise EarInvalid(EarProblem.ISSUED_IN_FUTURE, f"expected iat at most {CLOCK_SKEW_S} s ahead of now, "
                         f"found {issued}")
    # (5) no status better than its vector
    for name, body in claims["submods"].items():
        vector = body["ear_trustworthiness_vector"]
        worst = max((tier_of(value) for value in vector.values()), key=TIERS.index, default="none")
        if TIERS.index(body["ear_status"]) < TIERS.index(worst):
            raise EarInvalid(EarProblem.STATUS_BETTER_THAN_VECTOR, f"submodule {name!r}: expected ear_status "
                             f"{worst} or worse (its vector's worst claim), found {body['ear_status']}")
    return VerifiedEar(key_id=key_id, algorithm=algorithm, claims=claims)


def _key_set(jwks: Mapping[str, Any]) -> Any:
    """The JWKS as joserfc keys; raises EarInputError when a key cannot be read or is private."""
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    try:
        key_set = KeySet.import_key_set(dict(jwks))
    except (JoseError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise EarInputError(f"expected a JWK Set of public keys, found one that cannot be read ({exc})") from None
    if any(key.is_private for key in key_set.keys):
        raise EarInputError("expected a JWK Set of public keys, found a private key in it: publish only the "
                            "public half (`dossier ear jwks`)")
    return key_set


@functools.cache
def _claims_validator() -> Any:
    import jsonschema

    import schemas

    return jsonschema.Draft202012Validator(schemas.load("ear"))


def claims_problems(claims: Any) -> list[str]:
    """What in `claims` departs from schemas/ear.schema.json (empty: it matches)."""
    errors = sorted(_claims_validator().iter_errors(claims), key=lambda error: list(error.absolute_path))
    return [f"/{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}" for error in errors[:5]]
