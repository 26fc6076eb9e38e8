"""`verify_envelope`: prove a signed envelope, or say precisely why not.

The checklist (each step is marked in the code):

  (1) Input bounds: size limit, nesting-depth limit, only blank lines and the device's
      timestamp line before the JSON object, nothing but whitespace after it.
  (2) Strict JSON (duplicate keys, NaN/Infinity, lone surrogates, trailing data, wrong types,
      unknown members), strict base64 (canonical padding, no stray characters), strict DER.
  (3) Signature over the signed bytes rebuilt as ENVELOPE.md section 3, with the algorithm the
      leaf key's type fixes, and a key the policy allows.
  (4) Chain: the root the envelope names is enrolled for the device (SHA-256 of its DER); the
      leaf chains to an enrolled root that was trusted at the chosen time (see `chain.py`).
  (5) Nonce: equals the expected nonce (constant time); the dossier's own `nonce` too. No
      expected nonce is an error ("freshness unknown"), unless the policy's insecure switch.
  (6) The dossier validates against schemas/dossier.schema.json. What a newer or older release
      could print (an unknown member or item, a missing payload member) is a warning
      (`dossier.unexpected_content`), an error only under `Policy.strict_dossier`; a value that
      breaks its rule is an error (`dossier.schema`). A failed item is a warning.
  (7) Expiry: days until leaf and root expire; warning at 60 days or less, alert at 7 or less.

Trusted means: no finding of severity "error". Every step that could not run (no leaf, no
root, ...) adds an error, so "could not check" is never trusted.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

import schemas

from ._schemacheck import ecma_validator, instance_depth_bound, numbers_within, yes_no_check
from ._strictjson import JSONProblem, brackets_outside_strings, check_depth, json_colons, loads_strict
from .chain import explain_chain_failure, fingerprint, is_weak_hash, per_certificate, utc_moment, validate_chain
from .departures import departures
from .envelope import MAX_NONCE_BYTES, MIN_NONCE_BYTES, Envelope, parse_envelope, signed_bytes
from .errors import ChainError, SignatureError, VerifierError
from .findings import Finding, FindingId, Severity
from .policy import DEFAULT_POLICY, Policy
from .signature import KeyPolicyError, algorithm_name, check_key_policy, verify_signature

if TYPE_CHECKING:
    import jsonschema  # imported by `ecma_validator` when a refused dossier needs explaining
from .truststore import TrustStore

__all__ = ["Verdict", "verify_envelope"]

_ONE_DAY = dt.timedelta(days=1)
_DOSSIER_MARKER = '"model-name"'
_FIRST_OBJECT = json.JSONDecoder()
# Blank lines and the timestamp IOS XR prints before a command's output ("Sun Oct 20 13:07:24.136 UTC").
_DATA_PREFIX = re.compile(
    r"(?:[ \t]*\r?\n)*"
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[ 0-3]?\d \d\d:\d\d:\d\d(?:\.\d{1,6})? [A-Z]{1,6}[ \t]*\r?\n)?"
    r"(?:[ \t]*\r?\n)*[ \t]*"
)
MAX_SCHEMA_ERRORS_REPORTED = 5  # the first few departures each get a finding; one more counts the rest


@dataclass
class Verdict:
    """The outcome of one verification. `trusted` is True only if no finding is an error."""

    findings: list[Finding] = field(default_factory=list)
    device: str | None = None
    dossier: dict[str, Any] | None = None
    data: str | None = None
    leaf: x509.Certificate | None = None
    root: x509.Certificate | None = None
    #: The root the envelope carries (its first certificate when it has two or more), trusted or
    #: not: what drift compares to report a replaced root. `root` is the one a chain reached.
    presented_root: x509.Certificate | None = None
    nonce: bytes | None = None
    signature_algorithm: str | None = None
    verified_at: dt.datetime | None = None
    envelope_sha256: str | None = None
    days_to_expiry: dict[str, int] = field(default_factory=dict)
    profile: str = "xr-dossier"  # which verifier profile was applied (verifier/profiles)

    @property
    def trusted(self) -> bool:
        return not any(finding.severity is Severity.ERROR for finding in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity is Severity.ERROR]

    def ids(self) -> list[str]:
        """The finding ids, in order (handy in tests and logs)."""
        return [str(finding.id) for finding in self.findings]

    def add(
        self, finding_id: str, severity: Severity, message: str,
        expected: str | None = None, found: str | None = None,
    ) -> None:
        self.findings.append(Finding(finding_id, severity, message, expected, found))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict that validates against schemas/verdict.schema.json."""

        def cert(c: x509.Certificate | None) -> dict[str, Any] | None:
            return None if c is None else dict(_certificate_json(c))

        return {
            "trusted": self.trusted,
            "device": self.device,
            "verified_at": self.verified_at.isoformat() if self.verified_at else None,
            "envelope_sha256": self.envelope_sha256,
            "nonce": self.nonce.hex() if self.nonce is not None else None,
            "signature_algorithm": self.signature_algorithm,
            "leaf": cert(self.leaf),
            "root": cert(self.root),
            "days_to_expiry": dict(self.days_to_expiry),
            "profile": self.profile,
            "is_dossier": self.dossier is not None,
            "findings": [finding.to_json() for finding in self.findings],
        }


@per_certificate
def _certificate_json(c: x509.Certificate) -> dict[str, Any]:
    """A certificate as the verdict shows it. Cached: a collector sees the same device
    certificates at every poll, and formatting names costs more than verifying a signature."""
    return {
        "sha256": fingerprint(c),
        "subject": c.subject.rfc4514_string(),
        "issuer": c.issuer.rfc4514_string(),
        "serial": format(c.serial_number, "X"),
        "not_before": c.not_valid_before_utc.isoformat(),
        "not_after": c.not_valid_after_utc.isoformat(),
    }


@cache
def _dossier_validator() -> jsonschema.Draft202012Validator:
    return ecma_validator(schemas.load("dossier"))


@cache
def _dossier_is_valid() -> Callable[[Any], bool]:
    """The dossier schema's yes/no check (jsonschema then explains a no)."""
    return yes_no_check(schemas.load("dossier"))


@cache
def _dossier_numbers_bounded() -> bool:
    """Whether every number of a schema-valid dossier lies where orjson and json read numbers
    alike (see `loads_strict`): the schema bounds them to the uint64 range."""
    return numbers_within(schemas.load("dossier"), -(2**63 - 1), 2**64 - 1)


@cache
def _dossier_depth_bound() -> float:
    """How deep a dossier valid against the schema can nest (infinite if the schema allows any
    depth)."""
    bound = instance_depth_bound(schemas.load("dossier"))
    return float("inf") if bound is None else bound


def _select_anchors(
    verdict: Verdict,
    envelope: Envelope,
    trust_store: TrustStore | None,
    roots: Sequence[x509.Certificate],
    device: str | None,
    when: dt.datetime,
) -> tuple[list[x509.Certificate], list[x509.Certificate], x509.Certificate | None]:
    """Enrolled roots, enrolled intermediates and the pinned leaf to verify against."""
    if trust_store is None:
        return list(roots), [], None
    if device is None:
        # The store is keyed by device; without a name, the enrolled root the envelope carries
        # names the device (a root is made on one device, so this is unambiguous in practice).
        if len(envelope.certificates) < 2:
            verdict.add(FindingId.TRUST_DEVICE_UNKNOWN, Severity.ERROR,
                        "no device name given and the envelope carries no root to look it up by",
                        "a device name (--device) or an envelope with include-certificate", "neither")
            return [], [], None
        claimed = fingerprint(envelope.certificates[0])
        candidates = trust_store.devices_for_root(claimed)
        if not candidates:
            verdict.add(FindingId.TRUST_DEVICE_UNKNOWN, Severity.ERROR,
                        "no device in the trust store has the envelope's root enrolled",
                        "a device enrolled with this root", f"root SHA-256 {claimed}")
            return [], [], None
        if len(candidates) > 1:
            verdict.add(FindingId.TRUST_DEVICE_AMBIGUOUS, Severity.ERROR,
                        f"several devices ({', '.join(candidates)}) have the envelope's root enrolled; "
                        "say which with a device name",
                        "one device", ", ".join(candidates))
            return [], [], None
        device = candidates[0]
        verdict.add(FindingId.TRUST_DEVICE_INFERRED, Severity.INFO,
                    f"device {device!r} found by the envelope's enrolled root", None, device)
    verdict.device = device
    if device not in trust_store:
        verdict.add(FindingId.TRUST_DEVICE_UNKNOWN, Severity.ERROR,
                    f"device {device!r} is not enrolled in the trust store",
                    "an enrolled device", device)
        return [], [], None
    anchors = trust_store.roots_for(device, when)
    if not anchors:
        verdict.add(FindingId.TRUST_NO_ROOTS, Severity.ERROR,
                    f"device {device!r} has no root trusted at {when.isoformat()} (none enrolled, "
                    "or outside every root's validity window)",
                    f"a root trusted at {when.isoformat()}", "none")
    return anchors, trust_store.intermediates_for(device), trust_store.pinned_leaf(device)


def _check_chain(
    verdict: Verdict,
    envelope: Envelope,
    leaf: x509.Certificate,
    anchors: list[x509.Certificate],
    enrolled_intermediates: list[x509.Certificate],
    pinned: x509.Certificate | None,
    when: dt.datetime,
    policy: Policy,
) -> bool:
    """Step (4); True only when a chain to an enrolled root was validated."""
    anchor_prints = {fingerprint(root) for root in anchors}
    if len(envelope.certificates) >= 2:
        # The device's trustpoint CA: its enrolled root, or (enterprise CA) an enrolled sub-CA.
        claimed = envelope.certificates[0]
        enrolled = anchor_prints | {fingerprint(cert) for cert in enrolled_intermediates}
        if fingerprint(claimed) not in enrolled:
            verdict.add(FindingId.CHAIN_ROOT_NOT_ENROLLED, Severity.ERROR,
                        "the envelope's root is not the root enrolled for this device; a new root "
                        "means the device must be enrolled again",
                        " or ".join(sorted(anchor_prints)), fingerprint(claimed))
            return False
    # Only enrolled intermediates: a CA the envelope carries is never trusted to build the path.
    intermediates = list(enrolled_intermediates)
    if len(intermediates) > policy.max_intermediates:
        verdict.add(FindingId.CHAIN_TOO_MANY_INTERMEDIATES, Severity.ERROR,
                    f"{len(intermediates)} intermediates; at most {policy.max_intermediates} are "
                    "considered, to bound path-building time",
                    f"at most {policy.max_intermediates}", str(len(intermediates)))
        return False
    chain = validate_or_report(verdict, leaf, anchors, intermediates, when, policy,
                               expected="a chain from the leaf to an enrolled root")
    if chain is None:
        return False
    verdict.root = chain[-1]
    weak = is_weak_hash(verdict.root)
    if weak:  # path validation does not check an anchor's self-signature; a device root must not be weak
        verdict.add(FindingId.CHAIN_WEAK_SIGNATURE_ALGORITHM, Severity.ERROR,
                    f"the enrolled root is self-signed with {weak}, which is refused",
                    "SHA-256 or stronger", weak)
    if pinned is not None and envelope.certificates and fingerprint(pinned) != fingerprint(leaf):
        verdict.add(FindingId.CHAIN_LEAF_ROTATED, Severity.INFO,
                    "the device signs with a new leaf under the same enrolled root (key rotation)",
                    fingerprint(pinned), fingerprint(leaf))
    return True


def validate_or_report(
    verdict: Verdict,
    leaf: x509.Certificate,
    anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    when: dt.datetime,
    policy: Policy,
    *,
    expected: str,
    prefix: str = "",
) -> list[x509.Certificate] | None:
    """`validate_chain`, or None with each reason it failed added to `verdict` as an error
    (`prefix` before each message; `expected` when no reason can be named)."""
    try:
        return validate_chain(leaf, anchors, intermediates, when, policy=policy)
    except ChainError as exc:
        reasons = explain_chain_failure(leaf, anchors, intermediates, when, policy)
        for finding_id, message, expected_value, found in reasons:
            verdict.add(finding_id, Severity.ERROR, prefix + message, expected_value, found)
        if not reasons:
            verdict.add(FindingId.CHAIN_INVALID, Severity.ERROR, prefix + str(exc), expected, "no valid chain")
        return None


def report_nonce_not_given(verdict: Verdict, policy: Policy, *, what: str, sent: str, how: str) -> None:
    """No expected nonce: freshness is unknown, an error unless the policy's insecure switch.
    `what` names the signed thing, `sent` the nonce expected, `how` how to pass it."""
    if policy.insecure_skip_nonce:
        policy.note_insecure_use()
        verdict.add(FindingId.NONCE_NOT_CHECKED, Severity.WARNING,
                    f"no expected nonce given (insecure_skip_nonce): freshness is not checked; "
                    f"this {what} may be a replay", sent, "none")
    else:
        verdict.add(FindingId.NONCE_NOT_CHECKED, Severity.ERROR,
                    f"no expected nonce given, so freshness is unknown; pass the nonce that was "
                    f"sent ({how})", sent, "none")


def _check_nonce(verdict: Verdict, envelope: Envelope, expected_nonce: bytes | None, policy: Policy) -> None:
    if expected_nonce is None:
        report_nonce_not_given(verdict, policy, what="envelope", sent="the nonce the collector sent",
                               how="--nonce HEX, or the collector's .meta.json")
        return
    if not hmac.compare_digest(envelope.nonce, expected_nonce):
        verdict.add(FindingId.NONCE_MISMATCH, Severity.ERROR,
                    "the envelope's nonce is not the one that was sent: a replay or a mix-up",
                    expected_nonce.hex(), envelope.nonce.hex())


def _check_data(verdict: Verdict, envelope: Envelope, expected_nonce: bytes | None, policy: Policy) -> None:
    data = envelope.data
    # The signed text is what the command printed: IOS XR prints its timestamp line (and blank
    # lines) before the dossier, exactly as before the envelope itself.
    prefix = _DATA_PREFIX.match(data)
    start = prefix.end() if prefix else 0
    stripped = data[start:] if start else data
    dossier: Any = None
    schema_valid = False
    if stripped.startswith("{"):
        raw = envelope.data_utf8 if envelope.data_utf8 and not start else stripped.encode("utf-8", "surrogatepass")
        checked: list[tuple[Any, bool]] = []

        def vouch(value: Any) -> int | None:
            """The schema check, and for a valid dossier its ':' count (duplicate keys, below)."""
            valid = _dossier_is_valid()(value)
            checked.append((value, valid))
            return json_colons(value) if valid else None

        try:
            # (2, duplicate keys) With the schema check on, a schema-valid dossier's colon count
            # rules duplicate keys out, and the schema's bounds on numbers let orjson read it
            # (see loads_strict); any other is read again by `json` with the per-object hook,
            # which names a duplicate.
            dossier = loads_strict(stripped, max_depth=policy.max_json_depth, signed=True,
                                   depth_id=FindingId.DOSSIER_TOO_DEEP, raw=raw, depth_counted_by_caller=True,
                                   vouch=vouch if policy.validate_dossier else None,
                                   vouch_bounds_numbers=_dossier_numbers_bounded())
            # (1, depth) A dossier the schema accepts nests no deeper than the schema allows;
            # anything else has its brackets counted (before jsonschema walks it for messages).
            if checked and checked[-1][0] is dossier:
                schema_valid = checked[-1][1]
            else:  # read again after the check, or not checked while reading
                schema_valid = policy.validate_dossier and _dossier_is_valid()(dossier)
            if not (schema_valid and _dossier_depth_bound() <= policy.max_json_depth):
                check_depth(brackets_outside_strings(raw), policy.max_json_depth, FindingId.DOSSIER_TOO_DEEP)
        except JSONProblem as problem:
            finding_id = (FindingId.DOSSIER_TOO_DEEP if problem.finding_id == FindingId.DOSSIER_TOO_DEEP
                          else FindingId.DOSSIER_INVALID_JSON)
            verdict.add(finding_id, Severity.ERROR, f"the signed data looks like JSON but: {problem.message}",
                        problem.expected, problem.found)
            return
    if not isinstance(dossier, dict) or "model-name" not in dossier:
        if _DOSSIER_MARKER in data or _embedded_dossier(data, policy):
            # Text that carries a dossier but is not exactly one (a BOM, other text around it)
            # would otherwise pass as plain text with its nonce never checked.
            verdict.add(FindingId.DOSSIER_INVALID_JSON, Severity.ERROR,
                        "the signed data contains a dossier ('\"model-name\"') but is not one: only the "
                        "device's timestamp line and blank lines may come before it, nothing after",
                        "a dossier, optionally after the timestamp line", repr(data[:40]))
            return
        if policy.require_dossier:
            verdict.add(FindingId.DOSSIER_MISSING, Severity.ERROR,
                        "the signed data is not a dossier", "a dossier (JSON object with model-name)",
                        repr(stripped[:40]))
        else:
            verdict.add(FindingId.DATA_NOT_DOSSIER, Severity.INFO,
                        "the signed data is not a dossier; it is returned as text", None, repr(stripped[:40]))
        verdict.data = data
        return
    # (5, dossier part) the dossier's own nonce
    reference = expected_nonce if expected_nonce is not None else envelope.nonce
    claimed = dossier.get("nonce")
    if not isinstance(claimed, str):
        verdict.add(FindingId.NONCE_DOSSIER_MISSING, Severity.ERROR,
                    "the dossier has no nonce string, so it is not bound to the request",
                    reference.hex(), type(claimed).__name__ if claimed is not None else "absent")
    else:
        try:
            claimed_bytes = bytes.fromhex(claimed)
        except ValueError:
            claimed_bytes = b""
        if not hmac.compare_digest(claimed_bytes, reference):
            verdict.add(FindingId.NONCE_DOSSIER_MISMATCH, Severity.ERROR,
                        "the dossier's nonce differs from the "
                        + ("expected nonce" if expected_nonce is not None else "envelope's nonce"),
                        reference.hex(), claimed)
    # (6) schema and failed items
    if policy.validate_dossier and not schema_valid:
        _report_departures(verdict, dossier, policy)
    for name, item in dossier.items():
        if isinstance(item, dict) and "result-code" in item and item["result-code"] != "Success":
            verdict.add(FindingId.DOSSIER_ITEM_FAILED, Severity.WARNING,
                        f"the device could not collect {name!r}: {item['result-code']}",
                        "Success", str(item["result-code"]))
    verdict.dossier = dossier
    verdict.data = data


def _report_departures(verdict: Verdict, dossier: dict[str, Any], policy: Policy) -> None:
    """Say how the dossier departs from the schema (the fast check said it does): what a newer or
    older release could print is a warning, unless the policy is strict; the rest is an error."""
    found = departures(_dossier_validator().iter_errors(dossier))
    if not found:  # the two checks disagree: fail closed, say so
        verdict.add(FindingId.DOSSIER_SCHEMA, Severity.ERROR,
                    "the dossier does not match schemas/dossier.schema.json: the yes/no check refused "
                    "it, jsonschema names no error", "a dossier as ENVELOPE.md section 2", "a refused dossier")
        return
    for departure in found[:MAX_SCHEMA_ERRORS_REPORTED]:
        tolerated = departure.tolerable and not policy.strict_dossier
        verdict.add(FindingId.DOSSIER_UNEXPECTED_CONTENT if tolerated else FindingId.DOSSIER_SCHEMA,
                    Severity.WARNING if tolerated else Severity.ERROR,
                    f"the dossier departs from schemas/dossier.schema.json at {departure.message()}",
                    departure.expected, departure.found)
    rest = found[MAX_SCHEMA_ERRORS_REPORTED:]
    if rest:
        tolerated = all(departure.tolerable for departure in rest) and not policy.strict_dossier
        verdict.add(FindingId.DOSSIER_UNEXPECTED_CONTENT if tolerated else FindingId.DOSSIER_SCHEMA,
                    Severity.WARNING if tolerated else Severity.ERROR,
                    f"the dossier departs from schemas/dossier.schema.json in {len(rest)} more way(s), "
                    f"first at {rest[0].message()}", rest[0].expected, rest[0].found)


# Parsing attempts from every '{' of signed text may re-read text; past this many characters
# read (a multiple of the text's length) the text is refused rather than looked into further.
_EMBEDDED_SCAN_BUDGET = 8


def _embedded_dossier(data: str, policy: Policy) -> bool:
    """Whether a JSON object with `model-name` starts at any '{' of text that is not a dossier
    as a whole (after a BOM, behind a decoy object, with its key spelled with escapes).

    Every '{' is tried, not only the first: a decoy '{}' or a stray '{' must not hide a dossier
    after it. Objects found are searched for nested ones too (a dossier inside another object).
    The depth is bounded first, and the total work is bounded by `_EMBEDDED_SCAN_BUDGET`:
    text that would cost more to look into is refused rather than passed as plain text.
    """
    brace = data.find("{")
    if brace < 0:
        return False
    text = data[brace:]
    try:
        # depth bounded first, as everywhere; whatever follows an object is ignored here
        check_depth(brackets_outside_strings(text.encode("utf-8", "surrogatepass")), policy.max_json_depth)
    except JSONProblem:
        return True  # cannot be looked into safely: refuse rather than pass it as plain text
    budget = _EMBEDDED_SCAN_BUDGET * len(text)
    position = 0
    while position >= 0:
        try:
            value, end = _FIRST_OBJECT.raw_decode(text, position)
        except ValueError as exc:  # not JSON from this '{': the parser read up to exc.pos
            end, after = getattr(exc, "pos", position), position + 1
        else:
            if _holds_dossier(value):  # searched at every depth: go on after the object
                return True
            after = end
        budget -= max(end - position, 1)
        if budget < 0:
            return True  # too costly to look into: refuse rather than pass it as plain text
        position = text.find("{", after)
    return False


def _holds_dossier(value: Any) -> bool:
    """Whether `value` is, or contains at any depth, an object with a `model-name` member."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            if "model-name" in item:
                return True
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return False


_EXPIRY_IDS = {
    "leaf": (FindingId.EXPIRY_LEAF_SOON, FindingId.EXPIRY_LEAF_IMMINENT),
    "root": (FindingId.EXPIRY_ROOT_SOON, FindingId.EXPIRY_ROOT_IMMINENT),
}


@per_certificate
def _not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc  # a new datetime from the DER at every call otherwise


def _check_expiry(verdict: Verdict, when: dt.datetime, policy: Policy) -> None:
    for role, cert in (("leaf", verdict.leaf), ("root", verdict.root)):
        if cert is None:
            continue
        days = (_not_after(cert) - when) // _ONE_DAY
        verdict.days_to_expiry[role] = days
        if days < 0 or days > policy.warn_days:
            continue  # already expired (the chain step reported it as an error), or not soon
        soon, imminent = _EXPIRY_IDS[role]
        expires = cert.not_valid_after_utc.isoformat()
        if days <= policy.alert_days:
            verdict.add(imminent, Severity.ALERT,
                        f"the {role} certificate expires in {days} day(s), at {expires}: renew it now",
                        f"more than {policy.alert_days} days", f"{days} days")
        else:
            verdict.add(soon, Severity.WARNING,
                        f"the {role} certificate expires in {days} day(s), at {expires}",
                        f"more than {policy.warn_days} days", f"{days} days")


# Below this size a dossier allocates too little for the collector to matter; pausing it
# would cost more than it saves.
_GC_PAUSE_FROM_BYTES = 256 * 1024


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while one envelope is verified.

    Parsing a 2 MB dossier allocates ~100,000 dicts, lists and strings, all acyclic (a tree)
    and all kept; the collector would walk them again and again as they accumulate. Reference
    counting still frees everything as usual; cycles (an exception's traceback) wait for the
    next collection. If the caller has the collector off, or another thread paused it, it is
    left as it is: only a pause this call started is ended here, so threads verifying at once
    always leave it on.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def verify_envelope(
    raw: bytes,
    *,
    trust_store: TrustStore | None = None,
    roots: Sequence[x509.Certificate] = (),
    device: str | None = None,
    expected_nonce: bytes | None = None,
    at: dt.datetime | None = None,
    policy: Policy | None = None,
) -> Verdict:
    """Verify one envelope (bytes as the device printed them) and return the verdict.

    Anchors come from `trust_store` (for `device`, or the device whose enrolled root the
    envelope carries) or from `roots`. `at` (aware; default now) is the time validity is judged
    at. Raises VerifierError only for the caller's own mistakes: no anchors configured at all,
    a naive `at`, an `expected_nonce` that is not bytes or of the wrong length. A bad envelope
    never raises.
    """
    if len(raw) < _GC_PAUSE_FROM_BYTES:
        return _verify(raw, trust_store, roots, device, expected_nonce, at, policy)
    with _gc_paused():
        return _verify(raw, trust_store, roots, device, expected_nonce, at, policy)


def _verify(
    raw: bytes,
    trust_store: TrustStore | None,
    roots: Sequence[x509.Certificate],
    device: str | None,
    expected_nonce: bytes | None,
    at: dt.datetime | None,
    policy: Policy | None,
) -> Verdict:
    policy = policy or DEFAULT_POLICY
    when = utc_moment(at)
    if trust_store is None and not roots:
        raise VerifierError(
            "no trust anchor configured: pass trust_store= or roots= (an empty trust is not "
            "'trust everything')"
        )
    if trust_store is not None and roots:
        raise VerifierError("pass trust_store= or roots=, not both")
    if expected_nonce is not None:
        if not isinstance(expected_nonce, (bytes, bytearray, memoryview)):
            raise VerifierError(
                "expected_nonce must be bytes (the nonce's raw bytes; use bytes.fromhex for hex "
                f"text), found {type(expected_nonce).__name__}"
            )
        expected_nonce = bytes(expected_nonce)  # one type from here on (hmac, .hex(), ==)
        if not MIN_NONCE_BYTES <= len(expected_nonce) <= MAX_NONCE_BYTES:
            raise VerifierError(
                f"expected_nonce is {len(expected_nonce)} bytes; a nonce is {MIN_NONCE_BYTES} to "
                f"{MAX_NONCE_BYTES} bytes"
            )
    verdict = Verdict(device=device, verified_at=when, envelope_sha256=hashlib.sha256(raw).hexdigest())
    # (1) (2) bounds, framing, strict JSON, base64, DER
    parsed = parse_envelope(raw, policy)
    verdict.findings.extend(parsed.findings)
    envelope = parsed.envelope
    if envelope is None:
        return verdict
    verdict.nonce = envelope.nonce
    anchors, enrolled_intermediates, pinned = _select_anchors(
        verdict, envelope, trust_store, roots, device, when
    )
    leaf = envelope.leaf or pinned
    verdict.leaf = leaf
    verdict.presented_root = envelope.certificates[0] if len(envelope.certificates) >= 2 else None
    # (3) signature, with the algorithm the leaf key's type fixes
    signature_ok = chain_ok = False
    if leaf is None:
        verdict.add(FindingId.CHAIN_NO_CERTIFICATE, Severity.ERROR,
                    "the envelope carries no certificate and no leaf is pinned for the device, so the "
                    "signature cannot be checked", "include-certificate, or a pinned leaf",
                    "no certificate")
    else:
        try:
            key = leaf.public_key()
            verdict.signature_algorithm = algorithm_name(key)
            check_key_policy(key, policy)
            verify_signature(key, envelope.signature, signed_bytes(envelope))
            signature_ok = True
        except KeyPolicyError as exc:
            verdict.add(exc.finding_id, Severity.ERROR, str(exc), exc.expected, exc.found)
        except (ValueError, UnsupportedAlgorithm) as exc:  # only a pinned leaf can get here
            verdict.add(FindingId.SIGNATURE_UNSUPPORTED_KEY, Severity.ERROR,
                        f"the leaf's public key cannot be loaded ({exc})", "an RSA, ECDSA or DSA key",
                        "an unreadable key")
        except SignatureError as exc:
            verdict.add(FindingId.SIGNATURE_INVALID, Severity.ERROR,
                        f"{exc}: the signed bytes were changed, or signed by another key",
                        "a valid signature by the leaf", "a signature that does not verify")
        # (4) chain
        if anchors:
            chain_ok = _check_chain(verdict, envelope, leaf, anchors, enrolled_intermediates, pinned, when, policy)
    # (5) nonce
    _check_nonce(verdict, envelope, expected_nonce, policy)
    # (6) the dossier: only signed text is worth parsing
    if signature_ok:
        _check_data(verdict, envelope, expected_nonce, policy)
    # (7) expiry
    _check_expiry(verdict, when, policy)
    # Defence in depth: "trusted" also needs positive proof of the signature and the chain, so
    # a step that was skipped without saying why can never read as a pass.
    if verdict.trusted and not (signature_ok and chain_ok):
        verdict.add(FindingId.VERIFIER_INCOMPLETE, Severity.ERROR,
                    "a verification step did not run to completion, so the envelope is not trusted",
                    "signature and chain both proven",
                    f"signature {'proven' if signature_ok else 'not proven'}, chain {'proven' if chain_ok else 'not proven'}")
    if not verdict.trusted:
        verdict.dossier = None
        verdict.data = None
    return verdict
