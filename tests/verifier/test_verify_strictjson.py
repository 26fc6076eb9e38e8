"""The envelope's strict parser agrees with the stdlib parser made strict the obvious way."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier._strictjson import JSONProblem, brackets_outside_strings, check_depth, loads_strict

MAX_DEPTH = 8


def _reference(text: str):
    """json.loads made strict the slow, obvious way; None if it refuses."""
    def pairs(items):
        keys = [key for key, _ in items]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate")
        return dict(items)

    def constant(name):
        raise ValueError(name)

    def depth(value, level=1):
        if isinstance(value, dict):
            return max([level, *(depth(v, level + 1) for v in value.values())])
        if isinstance(value, list):
            return max([level, *(depth(v, level + 1) for v in value)])
        return level - 1

    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError):
        return None
    if depth(value) > MAX_DEPTH or any(isinstance(v, float) and math.isinf(v) for v in _leaves(value)):
        return None
    if not _is_unicode(value):  # a lone surrogate escape: not Unicode text
        return None
    return value


def _is_unicode(value) -> bool:
    strings = [*_keys(value), *(v for v in _leaves(value) if isinstance(v, str))]
    try:
        "".join(strings).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _keys(value):
    if isinstance(value, dict):
        for key, child in value.items():
            yield key
            yield from _keys(child)
    elif isinstance(value, list):
        for child in value:
            yield from _keys(child)


def _leaves(value):
    if isinstance(value, dict):
        for child in value.values():
            yield from _leaves(child)
    elif isinstance(value, list):
        for child in value:
            yield from _leaves(child)
    else:
        yield value


def _ours(text: str):
    try:
        return loads_strict(text, max_depth=MAX_DEPTH)
    except JSONProblem:
        return None


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(value=_values, indent=st.sampled_from([None, 0, 2]), ensure_ascii=st.booleans())
def test_agrees_on_valid_json(value, indent, ensure_ascii) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)
    assert _ours(text) == _reference(text)


@settings(max_examples=300, deadline=None)
@given(value=_values, position=st.integers(0, 200), insert=st.sampled_from(
    ["", ",", "]", "}", "[", "{", '"', "\\", ":", "NaN", "1e999", "-", "0", "tru", " ", '"a":1,', "\x01"]),
    delete=st.integers(0, 3))
def test_agrees_on_damaged_json(value, position: int, insert: str, delete: int) -> None:
    text = json.dumps(value)
    position %= len(text) + 1
    text = text[:position] + insert + text[position + delete:]
    assert _ours(text) == _reference(text)


@pytest.mark.parametrize(("text", "depth", "deep"), [
    ('[1, "[[[[", {"a": ["]]]]"]}]', 3, False),
    ('[[["\\"]]]"]]]', 3, False),
    ('[[["\\\\"], [[]]]]', 3, True),
    ("[" * 50, 8, True),
    ("]]]" + "[" * 9, 8, True),
])
def test_byte_level_depth_count(text: str, depth: int, deep: bool) -> None:
    brackets = brackets_outside_strings(text.encode())
    if deep:
        with pytest.raises(JSONProblem):
            check_depth(brackets, depth)
    else:
        check_depth(brackets, depth)


@pytest.mark.parametrize("text", ["[" * 9 + "]" * 9, '{"a": ' * 9 + "1" + "}" * 9, "[" * 5000 + "]" * 5000])
def test_too_deep_is_one_finding_however_deep(text: str) -> None:
    with pytest.raises(JSONProblem) as caught:
        loads_strict(text, max_depth=MAX_DEPTH)
    assert caught.value.finding_id == "envelope.too_deep"
    loads_strict("[" * 8 + "]" * 8, max_depth=MAX_DEPTH)  # exactly the limit is fine


# --- reading signed text with `vouch` (colon counts instead of the duplicate-key hook) -------

_LIMITS = (-(2**63 - 1), 2**64 - 1)


def _oracle(value):
    """A vouch that keeps loads_strict's contract by brute force: the ':' count of `value` as
    JSON, or None when a number lies outside the range both parsers read alike."""
    return None if any(type(leaf) in (int, float) and not _LIMITS[0] <= leaf <= _LIMITS[1]
                       for leaf in _leaves(value)) else json.dumps(value).count(":")


def _signed(text: str, **vouching):
    try:
        return ("value", json.dumps(loads_strict(text, max_depth=MAX_DEPTH, signed=True, **vouching)))
    except JSONProblem as problem:
        return ("problem", problem.finding_id)


@settings(max_examples=300, deadline=None)
@given(value=_values, position=st.integers(0, 200), insert=st.sampled_from(
    ["", ",", "]", "}", '"', "\\", ":", "NaN", "1e999", "-", "0", " ", '"a":1,', '"a":"\\u003a",', '"\\u003A":',
     "123456789012345678901234567890", "-9223372036854775809", "18446744073709551616", '"\\ud800"']),
    delete=st.integers(0, 3))
def test_vouched_reading_agrees_with_the_hooked_reading(value, position: int, insert: str, delete: int) -> None:
    """Same value (types included) or the same finding as the reference reading with the
    per-object hook, whichever parser read it (orjson or json) and whatever the counts."""
    text = json.dumps(value)
    position %= len(text) + 1
    text = text[:position] + insert + text[position + delete:]
    reference = _signed(text)
    assert _signed(text, vouch=_oracle, vouch_bounds_numbers=True) == reference
    assert _signed(text, vouch=_oracle) == reference


@pytest.mark.parametrize("text", [
    '{"a": 1, "a": 2}',
    '{"a": ":", "a": "\\u003a"}',           # an escaped colon must not make up for a lost member
    '{"b": {"a": 1, "a": 1}, "c": "::"}',
    '[{"x": [], "x": []}]',
])
def test_vouched_reading_still_names_duplicate_keys(text: str) -> None:
    with pytest.raises(JSONProblem) as caught:
        loads_strict(text, max_depth=MAX_DEPTH, signed=True, vouch=_oracle, vouch_bounds_numbers=True)
    assert caught.value.finding_id == "envelope.duplicate_key"


def test_big_integers_keep_their_exact_value() -> None:
    """orjson reads integers past 64 bits as floats; such a text is never vouched for, so the
    reading returned is json's, with the exact integer."""
    big = 123456789012345678901234567890
    value = loads_strict(f'{{"n": {big}}}', max_depth=MAX_DEPTH, signed=True, vouch=_oracle, vouch_bounds_numbers=True)
    assert value == {"n": big} and type(value["n"]) is int


def test_vouch_is_for_signed_text_only() -> None:
    with pytest.raises(ValueError):
        loads_strict("{}", max_depth=MAX_DEPTH, vouch=_oracle)
