"""A strict JSON reader for the unsigned envelope structure.

The envelope's structure is not covered by the signature's framing, so ambiguity there is an
attack surface: duplicate keys (which one wins?), NaN/Infinity (not JSON), lone surrogates (not
Unicode), trailing data (two documents, one signature). Each is rejected with its own id.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from .findings import FindingId

try:  # an optional speed-up (see loads_strict); `json` alone gives the same answers
    from orjson import dumps as _orjson_dumps
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - orjson is a dependency, but a platform may lack a wheel
    _orjson_dumps = _orjson_loads = None

__all__ = [
    "JSONProblem",
    "brackets_outside_strings",
    "check_depth",
    "json_colons",
    "container_depth_within",
    "loads_strict",
]

_BACKSLASH_PAIR, _ESCAPED_QUOTE = b"\\\\", b'\\"'
_NOT_QUOTE_OR_BRACKET = bytes(b for b in range(256) if b not in b'"[]{}')
_OPEN_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Decoded UTF-8 never holds surrogates; only a \uD800-\uDFFF escape can put one in a string.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_WHITESPACE = " \t\r\n"


class JSONProblem(ValueError):
    """One strictness violation, with the finding id it maps to."""

    def __init__(self, finding_id: str, message: str, expected: str | None, found: str | None):
        super().__init__(message)
        self.finding_id = finding_id
        self.message = message
        self.expected = expected
        self.found = found


def brackets_outside_strings(raw: bytes) -> bytes:
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


def json_colons(value: Any) -> int:
    """The ':' characters of `value` written as JSON: one per object member, plus those inside
    strings (keys and values); neither writer escapes ':', and no number holds one. A text that
    reads as `value` holds exactly as many when no key repeats and no ':' is escaped (see
    `loads_strict`'s `vouch`)."""
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(value).count(b":")
        except TypeError:  # what orjson does not write (a lone surrogate, an integer past 64 bits)
            pass
    return json.dumps(value).count(":")


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


# Signed text (the dossier): duplicate keys are refused there too (a stale `nonce` first and the
# expected one last would read differently to a first-wins parser). The float hook is left out:
# it costs a third of a large dossier's parse, and 1e999 is valid JSON grammar that the signer
# chose; NaN/Infinity, which are not JSON, are still refused.
_SIGNED_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_no_duplicates, parse_constant=_reject_constant)
# The same without the duplicate-key hook, for a caller that rules duplicates out by counting
# colons (`loads_strict(vouch=...)`): the C parser builds dicts directly.
_SIGNED_DECODER_UNHOOKED = json.JSONDecoder(parse_constant=_reject_constant)
# One pass finds both escapes that need a closer look: a surrogate (\uD800-\uDFFF) and a colon
# (\u003a: a colon in a string that the text's colon count does not see).
_ESCAPES_OF_INTEREST = re.compile(rb"\\u(?:[dD][89a-fA-F]|003[aA])")
_COLON_ESCAPE = re.compile(rb"\\u003[aA]")


def find_lone_surrogate(value: Any) -> str | None:
    """Return a description of the first lone surrogate in any key or string, else None."""
    strings: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            strings.append(item)
        elif kind is dict:
            strings.extend(item.keys())
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    try:
        "".join(strings).encode("utf-8")  # one C pass: only a lone surrogate cannot be encoded
        return None
    except UnicodeEncodeError:
        pass
    for item in strings:
        match = _SURROGATE.search(item)
        if match:
            return f"U+{ord(match.group()):04X} in {item[:40]!r}"
    return None  # unreachable: encoding failed on one of them


_WS = re.compile(r"[ \t\n\r]*")
# The envelope and other unsigned text: every hook (floats too: 1e999 would read as infinity).
_STRICT_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs_no_duplicates, parse_constant=_reject_constant, parse_float=_finite_float
)


def container_depth_within(value: Any, max_depth: int, finding_id: str = FindingId.ENVELOPE_TOO_DEEP) -> None:
    """Raise JSONProblem if `value` nests deeper than `max_depth` (a scalar is 0, `{}` is 1).

    For parsed text with few containers (an envelope: 6): walks containers only, never the
    strings, however large."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else None
        if children is None:
            continue
        if depth + 1 > max_depth:
            raise _too_deep(max_depth, finding_id)
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))


def _too_deep(max_depth: int, finding_id: str) -> JSONProblem:
    return JSONProblem(
        finding_id,
        f"JSON nests deeper than {max_depth} levels; a device never prints that",
        f"at most {max_depth} levels",
        f"more than {max_depth}",
    )


def loads_strict(
    text: str,
    *,
    max_depth: int,
    signed: bool = False,
    depth_id: str = FindingId.ENVELOPE_TOO_DEEP,
    raw: bytes | None = None,
    depth_counted_by_caller: bool = False,
    vouch: Callable[[Any], int | None] | None = None,
    vouch_bounds_numbers: bool = False,
) -> Any:
    """Parse one JSON value from `text` (leading/trailing whitespace allowed) or raise JSONProblem.

    `signed=True` is for text covered by a verified signature (a dossier: many small strings;
    C parser after a byte-level depth count); otherwise the text is an envelope (few
    containers, possibly huge strings: C parser, then its containers' depth).
    `raw` is `text` as UTF-8 when the caller has it. A lone surrogate escape (not Unicode)
    anywhere is refused.
    `depth_counted_by_caller=True` skips the depth count (bytes before parsing signed text,
    containers after parsing other text), for a caller that bounds the depth after parsing,
    e.g. by a schema whose valid instances cannot nest deeper
    (`_schemacheck.instance_depth_bound`), counting only when that does not hold.
    The C parser itself never recurses without limit: it raises RecursionError at the
    interpreter's recursion limit, which is reported here as too deep.

    `vouch` (signed text only) rules duplicate keys out without looking at every object while
    parsing: given the parsed value, it returns the number of ':' the value holds written as
    JSON (one per member, plus those in strings: `json_colons`), or None when it cannot say
    (the verifier counts only schema-valid dossiers). The text holds one ':' per member
    it spells plus those in its strings, and the parser keeps every member unless a key
    repeats, so with no \\u003a escape equal counts prove there is no duplicate key. When
    they are not equal or the count is unknown, the text is parsed again with the hook, which
    names the duplicate (or finds none), and that reading is returned.

    `vouch_bounds_numbers=True` says `vouch` counts only values whose numbers all lie within
    [-(2**63 - 1), 2**64 - 1] (a schema that bounds them, `_schemacheck.numbers_within`). The
    text is then read by orjson when it is installed (faster than `json`): orjson
    and `json` read such a text alike (orjson reads only integers past 64 bits differently, as
    floats, and those fall outside the range, so are never vouched for); anything orjson
    refuses, and anything not vouched for, is read again by `json` as above.
    """
    if vouch is not None and not signed:
        raise ValueError("vouch= is for signed text (a dossier) only")
    # Two ways to bound the depth, each faster where it is used: byte operations before
    # parsing texts with many strings, a walk of the containers after parsing the others.
    if signed:
        # Many small strings: count the depth with byte operations, then the C parser.
        if raw is None:
            raw = text.encode("utf-8", "surrogatepass")
        if not depth_counted_by_caller:
            check_depth(brackets_outside_strings(raw), max_depth, depth_id)
        start = len(text) - len(text.lstrip(_WHITESPACE))
        decoder = _SIGNED_DECODER if vouch is None else _SIGNED_DECODER_UNHOOKED
    else:
        # Few containers, possibly one huge string: the C parser (it stops at the interpreter's
        # recursion limit, below), then the depth of the containers it built.
        start = _WS.match(text, 0).end()
        decoder = _STRICT_DECODER
    value: Any = _NOT_READ
    if vouch is not None and vouch_bounds_numbers and _orjson_loads is not None:
        try:
            value = _orjson_loads(text)
        except ValueError:
            pass  # not plain JSON to orjson (NaN, 1e999, a lone surrogate, too deep, ...): see below
    if value is _NOT_READ:
        value = _parse(decoder, text, start, raw, max_depth, depth_id)
    if not signed and not depth_counted_by_caller:
        container_depth_within(value, max_depth, depth_id)
    if raw is None:
        raw = text.encode("utf-8", "surrogatepass")
    escape = _ESCAPES_OF_INTEREST.search(raw)
    if vouch is not None:
        counted = vouch(value)
        if counted is None or (escape is not None and _COLON_ESCAPE.search(raw)) or text.count(":") != counted:
            # Not vouched for: the reference reading, with the hook (it names a duplicate key).
            value = _parse(_SIGNED_DECODER, text, start, raw, max_depth, depth_id)
    if escape is not None and _SURROGATE_ESCAPE.search(raw):
        surrogate = find_lone_surrogate(value)
        if surrogate is not None:
            raise lone_surrogate_problem(surrogate)
    return value


_NOT_READ = object()


def _parse(decoder: json.JSONDecoder, text: str, start: int, raw: bytes | None, max_depth: int, depth_id: str) -> Any:
    """One JSON value from `text` at `start` with `decoder`, nothing but whitespace after it;
    every failure as a JSONProblem."""
    try:
        value, end = decoder.raw_decode(text, start)
    except JSONProblem:
        raise
    except RecursionError:
        # Deeper than the interpreter allows (about 1,000 levels, less the caller's own stack):
        # far past any policy limit. Should the count disagree, the stack was nearly full
        # anyway, and that is the caller's condition to see, not a finding about the input.
        check_depth(brackets_outside_strings(raw if raw is not None else text.encode("utf-8", "surrogatepass")),
                    max_depth, depth_id)
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
    return value


def lone_surrogate_problem(where: str) -> JSONProblem:
    """The finding for a lone surrogate escape (see `find_lone_surrogate`)."""
    return JSONProblem(
        FindingId.ENVELOPE_LONE_SURROGATE,
        f"JSON string holds a lone surrogate escape ({where}), which is not Unicode text",
        "valid Unicode scalar values",
        where,
    )
