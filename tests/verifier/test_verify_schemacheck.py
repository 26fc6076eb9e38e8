"""The yes/no schema check (jsonschema-rs) must agree with jsonschema, which explains its no, on
every document (valid or not); the bounds read off a schema; the colon count."""

from __future__ import annotations

import copy
import json
import random

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from vbuilder import dossier
from verifier._schemacheck import ecma_regex, ecma_validator, numbers_within, pattern_search, yes_no_check
from verifier._strictjson import json_colons

_SCHEMA = schemas.load("dossier")
_CHECK = yes_no_check(_SCHEMA)
_REFERENCE = ecma_validator(_SCHEMA)  # jsonschema, with `$` as JSON Schema (ECMA-262) means it
_FULL = dossier("1580", files=3, extra={
    "reboot-history": {"result-code": "Success", "reboot-history": {"0/RP0/CPU0": [
        {"no": 1, "time": "Mon Jan 1", "cause-code": "0x1", "reason": "User reload"}]}},
    "rollback-history": {"result-code": "Success", "rollback-history": [
        {"commit-id": "1000000001", "user-id": "admin", "line": "vty0", "client-name": "CLI",
         "time": "Mon Jan 1", "label": "", "comment": ""}]},
    "system-integrity-snapshot": {"result-code": "Success", "system-integrity-snapshot": {"0/RP0/CPU0": {
        "secure-boot-status": "Enabled", "pcrs": [{"index": 0, "algorithm": "sha256", "value": "ab" * 32}],
        "ima-aggregate": "00"}}},
    "system-inventory": {"result-code": "Not supported"},
})
_VALUES = [None, True, False, 0, 1, -1, 1.0, 2.5, -0.5, 24, "", "x", "Success", "full", "created", "rpm",
           "0/RP0/CPU0", "ab" * 32, "FYA=", "2019-08-05", "http://cisco.com/ns/yang/Cisco-IOS-XR-ama", [], {},
           {"result-code": "Success"}, {"result-code": "Failed"}, [1], ["x"]]


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _mutate(document, seed: int, count: int):
    rng = random.Random(seed)
    document = copy.deepcopy(document)
    for _ in range(count):
        paths = list(_paths(document))
        path = rng.choice(paths[1:])
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        operation = rng.choice(["replace", "delete", "add", "replace"])
        if operation == "replace":
            parent[path[-1]] = copy.deepcopy(rng.choice(_VALUES))
        elif operation == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "nonce", "result-code", "packages", "uid"])] = copy.deepcopy(rng.choice(_VALUES))
        else:
            parent.append(copy.deepcopy(rng.choice(_VALUES)))
    return document


# A long file list: each record's mutations below.
_MANY = copy.deepcopy(_FULL)
_MANY["filesystem-inventory"] = dossier("1580", files=12)["filesystem-inventory"]


def test_valid_dossiers_agree() -> None:
    for document in (_FULL, _MANY, dossier("1580"), dossier("ab", files=50)):
        assert _REFERENCE.is_valid(document)
        assert _CHECK(document) is True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), count=st.integers(1, 3))
def test_mutated_dossiers_agree(seed: int, count: int) -> None:
    document = _mutate(_FULL, seed, count)
    assert _CHECK(document) == _REFERENCE.is_valid(document), json.dumps(document)[:500]


def _files(document):
    return document["filesystem-inventory"]["filesystem-inventory"]["0/RP0/CPU0"]["snapshots"][0]["files"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), count=st.integers(1, 3))
def test_mutated_file_lists_agree(seed: int, count: int) -> None:
    """Mutations inside a long list of files: yes only when every record is valid."""
    files = _mutate(_files(_MANY), seed, count)
    document = copy.deepcopy(_MANY)
    _files(document)[:] = files
    assert _CHECK(document) == _REFERENCE.is_valid(document), json.dumps(files)[:500]


@pytest.mark.parametrize("change", [
    lambda f: f[3].update({"change-kind": "renamed"}),
    lambda f: f[5]["meta"].update({"uid": -1}),
    lambda f: f[5]["meta"].update({"uid": True}),
    lambda f: f[5]["meta"].update({"atime": "1"}),
    lambda f: f[5]["meta"].update({"size": 2**64}),  # past the uint64 bound
    lambda f: f[5]["meta"].update({"mtime": -0.5}),
    lambda f: f[6]["meta"].update({"gid": 1.5}),
    lambda f: f[7]["digest"].update({"digest-value": "AA=A"}),
    lambda f: f[7]["digest"].update({"digest-value": "A==="}),
    lambda f: f[7]["digest"].update({"digest-value": "AAA"}),
    lambda f: f[7]["digest"].update({"digest-value": "AAAA\x00"}),
    lambda f: f[7]["digest"].update({"digest-value": "AAAA\n"}),  # JSON Schema's `$` is the end of the text
    lambda f: f[2].pop("package-name"),
    lambda f: f[2].update({"extra": 1}),
    lambda f: f[2].update({"name": ""}),
    lambda f: f.append(None),
    lambda f: f.__setitem__(4, list(f[4])),  # the member names, as a list
    lambda f: f.__setitem__(4, "name"),
    lambda f: f[6].__setitem__("meta", list(f[6]["meta"].values())),
])
def test_one_bad_record_is_refused(change) -> None:
    document = copy.deepcopy(_MANY)
    change(_files(document))
    assert not _REFERENCE.is_valid(document)
    assert _CHECK(document) is False


@pytest.mark.parametrize("change", [
    lambda f: f[3]["meta"].update({"uid": 7.0}),  # an integral float is a JSON integer
    lambda f: f[3]["meta"].update({"size": 2**64 - 1, "mtime": 2**64 - 1}),  # the bounds are inclusive
    lambda f: f.__setitem__(2, dict(reversed(list(f[2].items())))),  # another key order
])
def test_valid_records_edge_cases(change) -> None:
    document = copy.deepcopy(_MANY)
    change(_files(document))
    assert _REFERENCE.is_valid(document)
    assert _CHECK(document) is True

@pytest.mark.parametrize("text", ["\ud800", "a\udfffb"])
def test_a_lone_surrogate_is_not_valid_and_does_not_raise(text: str) -> None:
    """jsonschema-rs cannot take in a string that is not Unicode text: the answer is no (the
    verifier then asks jsonschema, and fails closed if the two disagree)."""
    assert yes_no_check({"type": "string"})(text) is False


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@pytest.mark.parametrize(("schema", "bound"), [
    ({"type": "string"}, 0),
    ({"enum": ["a", "b"]}, 0),
    ({"type": "array", "items": {"type": "integer"}}, 1),
    ({"type": "object", "additionalProperties": False, "properties": {"a": {"type": "array", "items": {"type": "null"}}}}, 2),
    ({"type": "object"}, None),  # any member, any depth
    ({"type": "array"}, None),
    ({}, None),
    ({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "additionalProperties": False}}]}, 2),
    ({"oneOf": [{"type": "string"}, {}]}, None),
    ({"allOf": [{}, {"type": "string"}]}, 0),
    ({"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}, None),  # recursive
])
def test_instance_depth_bound(schema, bound) -> None:
    from verifier._schemacheck import instance_depth_bound

    assert instance_depth_bound(schema) == bound


def test_valid_dossiers_nest_within_the_schema_bound() -> None:
    from verifier._schemacheck import instance_depth_bound

    limit = instance_depth_bound(_SCHEMA)
    assert limit is not None
    for document in (_FULL, _MANY):
        assert _depth(document) <= limit
    assert _depth(_FULL) == limit  # the bound is tight for a dossier with every item


@pytest.mark.parametrize("value", [1, 1.0, True, 2, "1", None, 0, False])
def test_integer_const_follows_json_schema_equality(value) -> None:
    schema = {"type": "object", "properties": {"v": {"const": 1}}, "required": ["v"]}
    assert yes_no_check(schema)({"v": value}) == jsonschema.Draft202012Validator(schema).is_valid({"v": value})


@pytest.mark.parametrize(("value", "valid"), [("2026-06-01T12:00:00+00:00", True), ("not a time", True), (1, False)])
def test_format_is_an_annotation_on_both_sides(value, valid: bool) -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "string", "format": "date-time"}
    assert yes_no_check(schema)(value) is valid
    assert ecma_validator(schema).is_valid(value) is valid


# --- colon counts: json_colons is exactly json.dumps(value).count(":") ----------------------

_COLON_TEXT = st.text(alphabet="ab:/ -0\u00e9\"\\", max_size=8)


def _strings(value):
    """The paths of every string in `value`."""
    def at(path):
        node = value
        for part in path:
            node = node[part]
        return node

    return [path for path in _paths(value) if isinstance(at(path), str)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), texts=st.lists(_COLON_TEXT, min_size=1, max_size=6),
       document=st.sampled_from(["full", "many"]), count=st.integers(0, 2))
def test_colon_count_of_valid_dossiers_is_exact(seed: int, texts: list[str], document: str, count: int) -> None:
    """Strings replaced by text with colons (in lists long enough for the column count too),
    plus random mutations: the count is exact."""
    rng = random.Random(seed)
    base = copy.deepcopy(_FULL if document == "full" else _MANY)
    paths = _strings(base)
    for text in texts:
        path = rng.choice(paths)
        parent = base
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = text
    mutated = _mutate(base, seed, count) if count else base
    assert json_colons(mutated) == json.dumps(mutated).count(":"), json.dumps(mutated)[:500]


@settings(max_examples=200, deadline=None)
@given(value=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _COLON_TEXT
    | st.text(max_size=4),  # any code point, lone surrogates included (orjson does not write them)
    lambda children: st.lists(children, max_size=10) | st.dictionaries(_COLON_TEXT | st.sampled_from(["a", "k", "c", "x", "y", "a:b"]),
                                                                     children, max_size=4),
    max_leaves=20))
def test_colon_count_is_exact_for_any_value(value) -> None:
    assert json_colons(value) == json.dumps(value).count(":")


def test_the_dossier_schema_bounds_every_number() -> None:
    """What lets the verifier read dossiers with orjson (see loads_strict): no valid dossier
    holds a number orjson and json read differently."""
    assert numbers_within(_SCHEMA, -(2**63 - 1), 2**64 - 1)


@pytest.mark.parametrize(("schema", "bounded"), [
    ({"type": "number"}, False),
    ({"type": "integer", "minimum": 0, "maximum": 10}, True),
    ({"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}}}, False),  # open
    ({"type": "object", "additionalProperties": False,
      "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}}}, True),
    ({"type": "array"}, False),
    ({"type": "array", "items": {"type": "string"}}, True),
    ({"oneOf": [{"type": "string"}, {"type": "number"}]}, False),
    ({"allOf": [{}, {"type": "string"}]}, True),
    ({"const": 12}, True),
    ({"enum": [1, 2**70]}, False),
])
def test_numbers_within(schema, bounded: bool) -> None:
    assert numbers_within(schema, 0, 2**64 - 1) is bounded


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("^a$", "a", True), ("^a$", "a\n", False), ("^[$]$", "$", True), ("^\\$$", "$", True),
    ("a$|^b", "b\n", True), ("^[^]$]+$", "x]", False), ("^[^]$]+$", "xy", True),
])
def test_dollar_is_the_end_of_the_text(pattern: str, text: str, matches: bool) -> None:
    assert (pattern_search(pattern)(text) is not None) is matches, ecma_regex(pattern)
    assert ecma_validator({"pattern": pattern}).is_valid(text) is matches
