"""The compiled dossier check must agree with jsonschema on every document (valid or not)."""

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
from verifier._schemacheck import UnsupportedSchema, compile_schema

_SCHEMA = schemas.load("dossier")
_CHECK = compile_schema(_SCHEMA)
_REFERENCE = jsonschema.Draft202012Validator(_SCHEMA)
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


def test_valid_dossiers_agree() -> None:
    for document in (_FULL, dossier("1580"), dossier("ab", files=50)):
        assert _REFERENCE.is_valid(document)
        assert _CHECK(document) is True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), count=st.integers(1, 3))
def test_mutated_dossiers_agree(seed: int, count: int) -> None:
    document = _mutate(_FULL, seed, count)
    assert _CHECK(document) == _REFERENCE.is_valid(document), json.dumps(document)[:500]


@pytest.mark.parametrize("schema", [
    {"type": "object", "patternProperties": {"a": {}}},
    {"$ref": "https://example.com/other.json"},
    {"enum": [1, 2]},
])
def test_unsupported_keywords_are_refused(schema) -> None:
    with pytest.raises(UnsupportedSchema):
        compile_schema(schema)


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n -_é"


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=_ALPHABET, max_size=12) | st.text(alphabet="0123456789abcdefABC\n ", min_size=60, max_size=66))
def test_fast_patterns_equal_the_regex(text: str) -> None:
    import re

    from verifier._schemacheck import FAST_PATTERNS

    for pattern, fast in FAST_PATTERNS.items():
        assert fast(text) == (re.search(pattern, text) is not None), (pattern, text)


@pytest.mark.parametrize("text", ["", "AAAA", "AA==", "AAA=", "AAAA\n", "A===", "AAAA=", "AA=A", "====", "AAAAAA==",
                                  "ab" * 32, "ab" * 32 + "\n", "AB" * 32, "ab" * 31, "ab" * 32 + "\n\n"])
def test_fast_patterns_on_edges(text: str) -> None:
    import re

    from verifier._schemacheck import FAST_PATTERNS

    for pattern, fast in FAST_PATTERNS.items():
        assert fast(text) == (re.search(pattern, text) is not None), (pattern, text)
