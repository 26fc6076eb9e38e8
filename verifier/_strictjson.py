"""A strict JSON reader for the unsigned envelope structure.

The envelope's structure is not covered by the signature's framing, so ambiguity there is an
attack surface: duplicate keys (which one wins?), NaN/Infinity (not JSON), lone surrogates (not
Unicode), trailing data (two documents, one signature). Each is rejected with its own id.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .findings import FindingId

__all__ = ["JSONProblem", "check_depth", "find_lone_surrogate", "loads_strict"]

# A JSON string token, written as an unrolled loop so long strings cost one regex step per escape.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_ALL_BYTES = bytes(range(256))
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Decoded UTF-8 never holds surrogates; only a \uD800-\uDFFF escape can put one in a string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_WHITESPACE = " \t\r\n"


class JSONProblem(ValueError):
    """One strictness violation, with the finding id it maps to."""

    def __init__(self, finding_id: str, message: str, expected: str | None, found: str | None):
        super().__init__(message)
        self.finding_id = finding_id
        self.message = message
        self.expected = expected
        self.found = found


def check_depth(text: str, max_depth: int, finding_id: str = FindingId.ENVELOPE_TOO_DEEP) -> None:
    """Raise JSONProblem if arrays/objects nest deeper than `max_depth` (counted before parsing,
    because the stdlib parser recurses and would raise RecursionError on hostile input)."""
    raw = text.encode("utf-8", "surrogatepass")
    brackets = _STRING.sub(b"", raw).translate(_ALL_BYTES, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= max_depth:
        return  # cannot nest deeper than the number of openers
    depth = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                raise JSONProblem(
                    finding_id,
                    f"JSON nests deeper than {max_depth} levels; "
                    "a device never prints that, so the input is refused unparsed",
                    f"at most {max_depth} levels",
                    f"more than {max_depth}",
                )
        else:
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise JSONProblem(
        FindingId.ENVELOPE_NON_FINITE_NUMBER,
        f"JSON contains {name}, which is not a JSON number",
        "finite numbers only",
        name,
    )


def _pairs_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONProblem(
                    FindingId.ENVELOPE_DUPLICATE_KEY,
                    f"JSON object has the key {key!r} more than once; "
                    "which value counts would be ambiguous",
                    "each key once",
                    f"{key!r} repeated",
                )
            seen.add(key)
    return result


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999 parses to inf: same ambiguity as Infinity
        _reject_constant(text)
    return value


# For signed text (the dossier) duplicate keys cannot be an attack on the signature, and the
# object hook costs a third of the parse time on large dossiers, so that decoder omits it.
_SIGNED_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs_no_duplicates,
    parse_constant=_reject_constant,
    parse_float=_finite_float,
)


def find_lone_surrogate(value: Any) -> str | None:
    """Return a description of the first lone surrogate in any key or string, else None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            match = _SURROGATE.search(item)
            if match:
                return f"U+{ord(match.group()):04X} in {item[:40]!r}"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def loads_strict(
    text: str, *, max_depth: int, signed: bool = False, depth_id: str = FindingId.ENVELOPE_TOO_DEEP
) -> Any:
    """Parse one JSON value from `text` (leading/trailing whitespace allowed) or raise JSONProblem.

    `signed=True` is for text covered by a verified signature: duplicate keys are then allowed.
    """
    check_depth(text, max_depth, depth_id)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = (_SIGNED_DECODER if signed else _DECODER).raw_decode(text, start)
    except JSONProblem:
        raise
    except json.JSONDecodeError as exc:
        raise JSONProblem(
            FindingId.ENVELOPE_INVALID_JSON,
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            "one JSON object",
            repr(text[exc.pos : exc.pos + 20]),
        ) from None
    rest = text[end:]
    if rest.strip(_WHITESPACE):
        offset = end + len(rest) - len(rest.lstrip(_WHITESPACE))
        raise JSONProblem(
            FindingId.ENVELOPE_TRAILING_DATA,
            f"data follows the JSON object at offset {offset}; one object is signed, "
            "so anything after it is refused",
            "nothing but whitespace after the object",
            repr(text[offset : offset + 20]),
        )
    surrogate = find_lone_surrogate(value) if _SURROGATE_ESCAPE.search(text) else None
    if surrogate is not None:
        raise JSONProblem(
            FindingId.ENVELOPE_LONE_SURROGATE,
            f"JSON string holds a lone surrogate escape ({surrogate}), which is not Unicode text",
            "valid Unicode scalar values",
            surrogate,
        )
    return value
