"""JSON Schema `pattern` as the schema check means it: ECMA-262's `$`, and plain-Python forms of
the patterns the dossier's large lists use.

JSON Schema's `pattern` is an ECMA-262 regular expression searched in the string. Python's `re`
differs in one way that matters here: its `$` also matches before a final newline, so
"0/RP0/CPU0\n" would pass for a node name and alias "0/RP0/CPU0" in a dossier's maps.
`ecma_regex` rewrites `$` to the end of the text; `pattern_search` and `ecma_validator` (the
`jsonschema` side, which explains what the compiled check refused) both use it, so the two
sides agree. `FAST_PATTERNS` and `COLUMN_PATTERNS` check the hottest patterns without the regex
engine, one string or a whole column at a time (tests compare each with `pattern_search`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "BASE64_PATTERN", "COLUMN_PATTERNS", "FAST_PATTERNS", "NO_COLON_PATTERNS", "SHA256_HEX_PATTERN", "ecma_regex",
    "ecma_validator", "pattern_search",
]

_BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def ecma_regex(pattern: str) -> str:
    """`pattern` for Python's `re` with ECMA-262's `$` (the end of the text, `\\Z`): an
    unescaped `$` outside a character class is rewritten."""
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index:index + 2])
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            out.append(char)
            index += 1
            for literal in ("^", "]"):  # "[^" and a ']' first in a class are not its end
                if pattern[index:index + 1] == literal:
                    out.append(literal)
                    index += 1
            continue
        elif char == "$":
            char = "\\Z"
        out.append(char)
        index += 1
    return "".join(out)


def pattern_search(pattern: str) -> Callable[[str], Any]:
    """The `search` of `pattern` with JSON Schema's (ECMA-262's) meaning of `$`."""
    return re.compile(ecma_regex(pattern)).search


def ecma_validator(schema: dict[str, Any]) -> Any:
    """A `jsonschema` Draft 2020-12 validator for `schema` whose `pattern` means what the
    compiled check's does (`ecma_regex`): the two must agree, as the compiled check says yes or
    no and `jsonschema` explains a no."""
    return _ecma_validator_class()(schema)


def _ecma_validator_class() -> Any:
    global _ECMA_CLASS
    if _ECMA_CLASS is None:
        import jsonschema
        from jsonschema.exceptions import ValidationError

        def pattern(validator: Any, expected: str, instance: Any, _schema: Any) -> Any:
            if validator.is_type(instance, "string") and not pattern_search(expected)(instance):
                yield ValidationError(f"{instance!r} does not match {expected!r}")

        _ECMA_CLASS = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": pattern})
    return _ECMA_CLASS


_ECMA_CLASS: Any = None


def _standard_base64(text: str) -> bool:
    """pattern_search(BASE64_PATTERN)(text) without the regex engine (the dossier's hottest
    check)."""
    core = text.rstrip("=")
    return len(text) % 4 == 0 and len(text) - len(core) <= 2 and not core.strip(_BASE64_ALPHABET)


def _sha256_hex(text: str) -> bool:
    """pattern_search(SHA256_HEX_PATTERN)(text) without the regex engine."""
    return len(text) == 64 and not text.strip("0123456789abcdef")


# Patterns the dossier schema uses in its large lists, with equivalent plain-Python checks
# (tests compare each with `pattern_search` on random strings). Any other pattern uses `re`.
BASE64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
SHA256_HEX_PATTERN = "^[0-9a-f]{64}$"
FAST_PATTERNS: dict[str, Callable[[str], bool]] = {
    BASE64_PATTERN: _standard_base64,
    SHA256_HEX_PATTERN: _sha256_hex,
}


# Whole-column forms of the fast patterns: C-speed string operations on the column joined.
_B64_ALPHABET_BYTES = _BASE64_ALPHABET.encode()


def _base64_column(column: list[str]) -> bool:
    """Whether every string of `column` matches BASE64_PATTERN. Equivalent, per string: length
    a multiple of 4, only alphabet characters and '=', and the '=' a trailing
    run of at most two. With NUL (not in the alphabet) after each string, the last is: no
    "===", and every '=' followed by '=' or NUL (with no "===", each "==" is one '=' followed
    by '=')."""
    if any(length % 4 for length in set(map(len, column))):
        return False
    joined = "\x00".join(column) + "\x00"
    return (
        joined.isascii()
        and not joined.encode().translate(None, _B64_ALPHABET_BYTES + b"=\x00")
        and joined.count("\x00") == len(column)
        and "===" not in joined
        and joined.count("=") == joined.count("==") + joined.count("=\x00")
    )


def _sha256_hex_column(column: list[str]) -> bool:
    """Whether every string of `column` matches SHA256_HEX_PATTERN."""
    joined = "".join(column)
    return (set(map(len, column)) == {64} and joined.isascii()
            and not joined.encode().translate(None, b"0123456789abcdef"))


COLUMN_PATTERNS: dict[str, Callable[[list[str]], bool]] = {
    BASE64_PATTERN: _base64_column,
    SHA256_HEX_PATTERN: _sha256_hex_column,
}


# Patterns no string matching them can contain a ':' in (the compiled colon counters use it).
NO_COLON_PATTERNS = frozenset({BASE64_PATTERN, SHA256_HEX_PATTERN})
