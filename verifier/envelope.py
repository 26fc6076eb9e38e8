"""Read a signed envelope (ENVELOPE.md section 3) strictly and rebuild its signed bytes.

Steps (1) and (2) of the checklist in `verify.py`: input bounds and framing, strict JSON,
strict base64, strict DER. Problems come back as findings, never as exceptions.
"""

from __future__ import annotations

import base64
import json
import binascii
import re
import struct
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from ._strictjson import (
    JSONProblem,
    container_depth_within,
    loads_strict,
)
from .chain import CERTIFICATE_ERRORS, read_now
from .findings import Finding, FindingId, Severity
from .nonce import MAX_NONCE_BYTES, MIN_NONCE_BYTES
from .policy import DEFAULT_POLICY, MAX_CERTIFICATES, Policy

__all__ = ["Envelope", "ParseResult", "parse_envelope", "signed_bytes"]

SIGNATURE_VERSION = 1

# What a device may print before the object: blank lines and the timestamp IOS XR prints before
# every command's output, e.g. "Sun Oct 20 13:07:24.136 UTC". Nothing else is tolerated.
# "\r\n" line ends (an interactive terminal) are accepted here and in the JSON's whitespace:
# they cannot reach the signed bytes, which are inside JSON strings and base64.
_DEVICE_PREFIX = re.compile(
    rb"(?:[ \t]*\r?\n)*"
    rb"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    rb"[ 0-3]?\d \d\d:\d\d:\d\d(?:\.\d{1,6})? [A-Z]{1,6}[ \t]*\r?\n)?"
    rb"(?:[ \t]*\r?\n)*[ \t]*"
)
_DER = Encoding.DER
_ENVELOPE_KEY = "signed-envelope"
_REQUIRED = ("signature_version", "nonce", "data", "signature")
_KNOWN = frozenset((*_REQUIRED, "certificates"))


@dataclass(frozen=True, slots=True)
class Envelope:
    """A structurally valid envelope; nothing in it is trusted yet."""

    signature_version: int
    nonce: bytes
    data: str
    signature: bytes
    certificates: tuple[x509.Certificate, ...]  # as listed: root first, leaf last
    certificate_ders: tuple[bytes, ...]
    data_utf8: bytes = b""  # `data` encoded once (it can be megabytes): signed bytes, dossier

    @property
    def leaf(self) -> x509.Certificate | None:
        return self.certificates[-1] if self.certificates else None


@dataclass(frozen=True, slots=True)
class ParseResult:
    envelope: Envelope | None
    findings: tuple[Finding, ...]


def signed_bytes(envelope: Envelope) -> bytes:
    """nonce || uint32_be(signature_version) || utf8(data) || DER(cert_1) || ... (ENVELOPE.md 3)."""
    return b"".join(
        (
            envelope.nonce,
            struct.pack(">I", envelope.signature_version),
            envelope.data_utf8 or envelope.data.encode("utf-8"),
            *envelope.certificate_ders,
        )
    )


def _error(finding_id: str, message: str, expected: str | None, found: str | None) -> ParseResult:
    return ParseResult(None, (Finding(finding_id, Severity.ERROR, message, expected, found),))


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _strict_b64(text: str, where: str) -> bytes:
    """Decode standard base64 with padding; refuse stray characters and non-canonical forms."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JSONProblem(
            FindingId.ENVELOPE_BAD_BASE64,
            f"{where} is not standard base64 ({exc})",
            "standard base64 with '=' padding",
            repr(text[:40]),
        ) from None
    # b64decode tolerates non-zero pad bits ("FYB=" and "FYA=" both give 0x15 0x80): two
    # spellings of one value would make the envelope malleable, so insist on the canonical one.
    if base64.b64encode(raw).decode("ascii") != text:
        raise JSONProblem(
            FindingId.ENVELOPE_BAD_BASE64,
            f"{where} is not canonical base64 (unused bits set or wrong padding)",
            repr(base64.b64encode(raw).decode("ascii")[:40]),
            repr(text[:40]),
        )
    return raw


def _member(obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = obj[name]
    # bool is an int in Python, and 1.0 == 1: neither is the integer the format asks for
    if type(value) is not kind:
        expected = {int: "integer", str: "string", dict: "object", list: "array"}[kind]
        found = _type_name(value)
        raise JSONProblem(
            FindingId.ENVELOPE_WRONG_TYPE,
            f"{where.lstrip('.')}.{name} must be a JSON {expected}, found a {found}",
            expected,
            found if isinstance(value, dict | list) else f"{found} {json.dumps(value)[:40]}",
        )
    return value


def _check_members(obj: dict[str, Any], required: tuple[str, ...], known: frozenset[str], where: str) -> None:
    for name in required:
        if name not in obj:
            raise JSONProblem(
                FindingId.ENVELOPE_MISSING_MEMBER,
                f"{where} has no {name!r} member",
                f"members {', '.join(required)}",
                f"members {', '.join(obj) or '(none)'}",
            )
    unknown = [name for name in obj if name not in known]
    if unknown:
        raise JSONProblem(
            FindingId.ENVELOPE_UNKNOWN_MEMBER,
            f"{where} has unknown member {unknown[0]!r}; unsigned structure must be exactly "
            "as ENVELOPE.md section 3 defines it",
            f"only {', '.join(sorted(known))}",
            unknown[0],
        )


_CERT_CACHE_SIZE = 4096  # a device's root and leaf recur in every envelope it signs
# Certificates by their base64 text, as envelopes carry them: a repeat is neither decoded nor
# checked again. The text is canonical base64 (`_strict_b64`), so it names one DER exactly, and
# the same DER checked in full gives the same answer.
_cert_by_text: dict[str, tuple[bytes, x509.Certificate]] = {}


def _load_certificate(text: str, der: bytes, where: str) -> x509.Certificate:
    """Parse and check `der` (the decoded `text`) in full, and remember it by its text."""
    cert = _parse_certificate(der, where)
    if len(_cert_by_text) >= _CERT_CACHE_SIZE:
        _cert_by_text.clear()
    _cert_by_text[text] = (der, cert)
    return cert


def _parse_certificate(der: bytes, where: str) -> x509.Certificate:
    try:
        # Every part is parsed lazily: parse the ones the verifier reads now, so a malformed
        # part is reported as a bad certificate here rather than raising later.
        cert = read_now(x509.load_der_x509_certificate(der))  # names, validity, extensions
        cert.signature_hash_algorithm  # noqa: B018
        cert.public_key()
    except (*CERTIFICATE_ERRORS, UnsupportedAlgorithm) as exc:
        raise JSONProblem(
            FindingId.ENVELOPE_BAD_CERTIFICATE,
            f"{where} is not a valid DER X.509 certificate ({exc})",
            "a DER X.509 certificate",
            f"{len(der)} bytes starting {der[:8].hex()}",
        ) from None
    # cryptography's DER parser is strict (definite lengths, minimal encodings, no trailing bytes),
    # and public_bytes returns the bytes it parsed, so this is a cheap belt-and-braces check.
    if cert.public_bytes(_DER) != der:
        raise JSONProblem(
            FindingId.ENVELOPE_BAD_CERTIFICATE,
            f"{where} does not re-encode to the same DER",
            "canonical DER",
            "a non-canonical encoding",
        )
    return cert


def _frame(raw: bytes, policy: Policy) -> tuple[str | None, int, ParseResult | None]:
    if len(raw) > policy.max_envelope_bytes:
        return None, 0, _error(
            FindingId.INPUT_TOO_LARGE,
            f"input is {len(raw)} bytes, over the {policy.max_envelope_bytes}-byte limit",
            f"at most {policy.max_envelope_bytes} bytes",
            f"{len(raw)} bytes",
        )
    if not raw or raw.isspace():  # (not raw.strip(): that copies megabytes)
        return None, 0, _error(FindingId.INPUT_EMPTY, "input is empty", "one JSON envelope", "nothing")
    prefix = _DEVICE_PREFIX.match(raw)
    start = prefix.end() if prefix else 0
    if raw[start : start + 1] != b"{":
        line = raw[start : start + 60].split(b"\n", 1)[0]
        return None, 0, _error(
            FindingId.INPUT_UNEXPECTED_PREFIX,
            "input does not start with the envelope's '{' (only blank lines and the device's "
            "timestamp line may come before it)",
            "'{' or a line like 'Sun Oct 20 13:07:24.136 UTC'",
            repr(line.decode("utf-8", "replace")),
        )
    try:
        text = (raw[start:] if start else raw).decode("utf-8")  # no copy without a prefix
    except UnicodeDecodeError as exc:
        return None, 0, _error(
            FindingId.INPUT_NOT_UTF8,
            f"input is not UTF-8 (byte {exc.start + start}: {exc.reason})",
            "UTF-8 text",
            repr(raw[start + exc.start : start + exc.start + 4]),
        )
    return text, start, None


def parse_envelope(raw: bytes, policy: Policy = DEFAULT_POLICY) -> ParseResult:
    """Parse `raw` strictly. Returns the envelope, or None and the findings that explain why not."""
    text, start, problem = _frame(raw, policy)
    if problem is not None:
        return problem
    assert text is not None
    document: Any = None
    try:
        # `text`'s UTF-8 is the input itself (after any prefix): not encoded a second time.
        document = loads_strict(text, max_depth=policy.max_json_depth, raw=raw[start:] if start else raw)
        if type(document) is not dict:
            raise JSONProblem(
                FindingId.ENVELOPE_WRONG_TYPE,
                f"the envelope must be a JSON object, found a {_type_name(document)}",
                "object",
                _type_name(document),
            )
        _check_members(document, (_ENVELOPE_KEY,), frozenset((_ENVELOPE_KEY,)), "the top level")
        body = _member(document, _ENVELOPE_KEY, dict, "")
        where = _ENVELOPE_KEY
        _check_members(body, _REQUIRED, _KNOWN, where)
        version = _member(body, "signature_version", int, where)
        if version != SIGNATURE_VERSION:
            raise JSONProblem(
                FindingId.ENVELOPE_UNSUPPORTED_VERSION,
                f"signature_version {version} is not supported",
                str(SIGNATURE_VERSION),
                str(version),
            )
        nonce = _strict_b64(_member(body, "nonce", str, where), f"{where}.nonce")
        if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
            raise JSONProblem(
                FindingId.NONCE_INVALID,
                f"the envelope's nonce is {len(nonce)} bytes",
                f"{MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes",
                f"{len(nonce)} bytes",
            )
        data = _member(body, "data", str, where)
        if not data:
            # Domain separation: with no data the signed bytes are nonce || version || DER(root)
            # || DER(leaf), exactly what `show platform security attest certificate ... json`
            # signs; a converted attest answer would otherwise verify as a signed envelope.
            raise JSONProblem(
                FindingId.ENVELOPE_MISSING_MEMBER,
                f"{where}.data is empty: an envelope carries the text the signed command printed "
                "(signed bytes without it are those of another signed format, the attest certificate)",
                "signed data (the command's output)",
                "an empty string",
            )
        signature = _strict_b64(_member(body, "signature", str, where), f"{where}.signature")
        certificates: list[x509.Certificate] = []
        ders: list[bytes] = []
        if "certificates" in body:
            holder = _member(body, "certificates", dict, where)
            _check_members(holder, ("certificate",), frozenset(("certificate",)), f"{where}.certificates")
            listed = _member(holder, "certificate", list, f"{where}.certificates")
            if not listed:
                raise JSONProblem(
                    FindingId.ENVELOPE_MISSING_MEMBER,
                    "certificates.certificate is empty; include-certificate lists root and leaf",
                    "at least one certificate",
                    "an empty list",
                )
            # Exactly [root, leaf]: an extra certificate could steer path building through a CA
            # nobody enrolled, and a repeated one makes the list ambiguous.
            if len(listed) > MAX_CERTIFICATES:
                raise JSONProblem(
                    FindingId.ENVELOPE_TOO_MANY_CERTIFICATES,
                    f"the envelope lists {len(listed)} certificates; include-certificate lists the "
                    "root then the leaf (sub-CAs are enrolled in the trust store, not carried)",
                    f"exactly {MAX_CERTIFICATES}: root, leaf",
                    str(len(listed)),
                )
            if len(listed) < MAX_CERTIFICATES:
                raise JSONProblem(
                    FindingId.ENVELOPE_MISSING_MEMBER,
                    f"the envelope lists {len(listed)} certificate; include-certificate lists the "
                    "root then the leaf",
                    f"exactly {MAX_CERTIFICATES}: root, leaf",
                    str(len(listed)),
                )
            for index, entry in enumerate(listed):
                item_where = f"{where}.certificates.certificate[{index}]"
                if type(entry) is not dict:
                    raise JSONProblem(
                        FindingId.ENVELOPE_WRONG_TYPE,
                        f"{item_where} must be an object, found a {_type_name(entry)}",
                        "object",
                        _type_name(entry),
                    )
                _check_members(entry, ("name", "value"), frozenset(("name", "value")), item_where)
                _member(entry, "name", str, item_where)
                value = _member(entry, "value", str, item_where)
                known = _cert_by_text.get(value)
                der = known[0] if known is not None else _strict_b64(value, f"{item_where}.value")
                if der in ders:
                    raise JSONProblem(
                        FindingId.ENVELOPE_TOO_MANY_CERTIFICATES,
                        f"{item_where} repeats an earlier certificate; the list is the root then the leaf",
                        "two different certificates: root, leaf",
                        "the same certificate twice",
                    )
                certificates.append(known[1] if known is not None else _load_certificate(value, der, item_where))
                ders.append(der)
        data_utf8 = data.encode("utf-8")  # loads_strict refused lone surrogates: this cannot fail
    except JSONProblem as problem:
        if document is not None and problem.finding_id != FindingId.ENVELOPE_TOO_DEEP:
            try:
                container_depth_within(document, policy.max_json_depth)
            except JSONProblem as too_deep:
                problem = too_deep
        return _error(problem.finding_id, problem.message, problem.expected, problem.found)
    envelope = Envelope(version, nonce, data, signature, tuple(certificates), tuple(ders), data_utf8)
    return ParseResult(envelope, ())
