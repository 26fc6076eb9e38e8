"""A strict JSON reader for the unsigned envelope structure.

The envelope's structure is not covered by the signature's framing, so ambiguity there is an
attack surface: duplicate keys (which one wins?), NaN/Infinity (not JSON), lone surrogates (not
Unicode), trailing data (two documents, one signature). Each is rejected with its own id.
"""

from __future__ import annotations

import json
from json.decoder import scanstring as _scanstring
import math
import re
from typing import Any

from .findings import FindingId

__all__ = ["JSONProblem", "check_depth", "find_lone_surrogate", "lone_surrogate_problem", "loads_strict"]

_BACKSLASH_PAIR, _ESCAPED_QUOTE = b"\\\\", b'\\"'
_NOT_QUOTE_OR_BRACKET = bytes(b for b in range(256) if b not in b'"[]{}')
_OPEN_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
_STRUCTURAL = re.compile(r'["\[\]{}]')
_SURROGATE = re.compile("[\ud800-\udfff]")
# Decoded UTF-8 never holds surrogates; only a \uD800-\uDFFF escape can put one in a string.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]")
_WHITESPACE = " \t\r\n"
_TOKEN_WALK_FROM = 256 * 1024  # measured: below this the byte operations win on envelopes


class JSONProblem(ValueError):
    """One strictness violation, with the finding id it maps to."""

    def __init__(self, finding_id: str, message: str, expected: str | None, found: str | None):
        super().__init__(message)
        self.finding_id = finding_id
        self.message = message
        self.expected = expected
        self.found = found


def _brackets_outside_strings(raw: bytes) -> bytes:
    """The brackets of a JSON text that are outside strings, '{' and '}' mapped to '[' and ']'.

    For texts with many short strings (a dossier): C-speed byte operations, no per-token loop.
    A backslash always starts a two-character escape, so dropping `\\` pairs and then `\"`
    leaves only the quotes that open and close strings. Deleting everything but quotes and
    brackets, and then adjacent quote pairs, keeps the parity of quotes before every bracket, so
    splitting on quotes still tells inside from outside. On invalid JSON this may misclassify
    what follows the first syntax error, which the parser never gets past anyway.
    """
    reduced = (
        raw.replace(_BACKSLASH_PAIR, b"")
        .replace(_ESCAPED_QUOTE, b"")
        .translate(_OPEN_TO_SQUARE, _NOT_QUOTE_OR_BRACKET)
        .replace(b'""', b"")
    )
    return b"".join(reduced.split(b'"')[0::2])


def _brackets_by_tokens(text: str) -> bytes:
    """The same for texts with few but possibly huge strings (an envelope): jump over each
    string with the json module's C string scanner."""
    found = bytearray()
    position = 0
    search = _STRUCTURAL.search
    while (match := search(text, position)) is not None:
        char = match.group()
        if char == '"':
            try:
                position = _scanstring(text, match.end())[1]
            except ValueError:
                break  # unterminated or invalid string: the parser stops here too
        else:
            found += b"[" if char in "[{" else b"]"
            position = match.end()
    return bytes(found)


def check_depth(brackets: bytes, max_depth: int, finding_id: str = FindingId.ENVELOPE_TOO_DEEP) -> None:
    """Raise JSONProblem if `brackets` (from outside strings) nest deeper than `max_depth`.

    Counted before parsing, because the stdlib parser recurses and would raise RecursionError.
    """
    if brackets.count(b"[") <= max_depth:
        return  # cannot nest deeper than the number of openers
    depth = 0
    while depth <= max_depth:
        inner_removed = brackets.replace(b"[]", b"")  # one pass peels exactly one level
        if inner_removed == brackets:
            break
        brackets, depth = inner_removed, depth + 1
    # Balanced input is now empty. What is left of unbalanced input ("]]][[[") could still be
    # entered by the parser before it fails: count its openers as depth too.
    if depth + brackets.count(b"[") > max_depth:
        raise JSONProblem(
            finding_id,
            f"JSON nests deeper than {max_depth} levels; "
            "a device never prints that, so the input is refused unparsed",
            f"at most {max_depth} levels",
            f"more than {max_depth}",
        )


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


# Signed text (the dossier) is parsed without the float and object hooks: they cost a third of
# a large dossier's parse, duplicate keys there cannot be an attack on the signature, and an
# overflowing number (1e999 -> inf) fails the dossier schema's number checks downstream.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs_no_duplicates, parse_constant=_reject_constant, parse_float=_finite_float
)
_SIGNED_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


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
    text: str,
    *,
    max_depth: int,
    signed: bool = False,
    depth_id: str = FindingId.ENVELOPE_TOO_DEEP,
    raw: bytes | None = None,
    check_surrogates: bool = True,
) -> Any:
    """Parse one JSON value from `text` (leading/trailing whitespace allowed) or raise JSONProblem.

    `signed=True` is for text covered by a verified signature (a dossier: many small strings,
    duplicate keys allowed); otherwise the text is an envelope (few, possibly huge strings).
    `raw` is `text` as UTF-8 when the caller has it. `check_surrogates=False` leaves the lone
    surrogate check to the caller (the envelope checks its few strings itself).
    """
    # Two ways to find the brackets outside strings, each faster where it is used: byte
    # operations for texts with many strings, a token walk for big texts with few strings.
    if signed or len(text) < _TOKEN_WALK_FROM:
        if raw is None:
            raw = text.encode("utf-8", "surrogatepass")
        check_depth(_brackets_outside_strings(raw), max_depth, depth_id)
    else:
        check_depth(_brackets_by_tokens(text), max_depth, depth_id)
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
    except ValueError as exc:  # e.g. an integer over sys.get_int_max_str_digits() digits
        raise JSONProblem(
            FindingId.ENVELOPE_INVALID_JSON, f"not acceptable JSON: {exc}", "one JSON object", "a number too long"
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
    if check_surrogates:
        if raw is None:
            raw = text.encode("utf-8", "surrogatepass")
        surrogate = find_lone_surrogate(value) if _SURROGATE_ESCAPE.search(raw) else None
        if surrogate is not None:
            raise lone_surrogate_problem(surrogate)
    return value


def lone_surrogate_problem(where: str) -> JSONProblem:
    """The finding for a lone surrogate escape (see `find_lone_surrogate`)."""
    return JSONProblem(
        FindingId.ENVELOPE_LONE_SURROGATE,
        f"JSON string holds a lone surrogate escape ({where}), which is not Unicode text",
        "valid Unicode scalar values",
        where,
    )
