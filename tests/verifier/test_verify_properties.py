"""Property tests: tampering with signed bytes is always caught, re-encoding is harmless, and no
input crashes the verifier (only findings, or the one error root for caller mistakes)."""

from __future__ import annotations

import base64
import json
import random
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vbuilder import NOW, Device, b64, der, dossier, make_leaf
from verifier import FindingId, VerifierError, verify_envelope

_DEVICE = Device("p256", "p256")
_TEXT = "Cisco IOS XR Software, Version 7.3.2 — héllo ✓ 😀 \"quoted\" \\ back\tslash\n"
_DOCUMENT = dossier("1580", extra={"version": {"result-code": "Success", "version": _TEXT}})
_DATA = json.dumps(_DOCUMENT, ensure_ascii=False)
_VALID = _DEVICE.envelope(data=_DATA)
_PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _verify(raw: bytes, nonce: bytes = _DEVICE.nonce):
    return verify_envelope(raw, roots=[_DEVICE.root], expected_nonce=nonce, at=NOW)


def test_the_base_envelope_is_trusted() -> None:
    assert _verify(_VALID).trusted


def _body() -> dict:
    return json.loads(_VALID)["signed-envelope"]


@_PROPERTY
@given(position=st.integers(0, len(_DATA) - 1), replacement=st.characters(blacklist_categories=("Cs",)),
       mode=st.sampled_from(["replace", "insert", "delete"]))
def test_any_change_to_the_data_is_caught(position: int, replacement: str, mode: str) -> None:
    if mode == "replace":
        data = _DATA[:position] + replacement + _DATA[position + 1:]
    elif mode == "insert":
        data = _DATA[:position] + replacement + _DATA[position:]
    else:
        data = _DATA[:position] + _DATA[position + 1:]
    if data == _DATA:
        return
    body = _body()
    body["data"] = data
    verdict = _verify(json.dumps({"signed-envelope": body}).encode())
    assert not verdict.trusted
    assert FindingId.SIGNATURE_INVALID in verdict.ids()


@_PROPERTY
@given(nonce=st.binary(min_size=1, max_size=64))
def test_any_change_to_the_nonce_is_caught(nonce: bytes) -> None:
    if nonce == _DEVICE.nonce:
        return
    body = _body()
    body["nonce"] = b64(nonce)
    verdict = _verify(json.dumps({"signed-envelope": body}).encode(), nonce=nonce)
    assert FindingId.SIGNATURE_INVALID in verdict.ids()


@_PROPERTY
@given(index=st.integers(0, 1), position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_change_to_a_certificate_is_caught(index: int, position: int, bit: int) -> None:
    body = _body()
    value = bytearray(base64.b64decode(body["certificates"]["certificate"][index]["value"]))
    value[position % len(value)] ^= 1 << bit
    body["certificates"]["certificate"][index]["value"] = b64(bytes(value))
    assert not _verify(json.dumps({"signed-envelope": body}).encode()).trusted


@pytest.mark.parametrize("index, position, bit", [(0, 73, 4), (0, 193, 4), (1, 73, 4), (1, 188, 4)])
def test_a_name_attribute_flipped_to_a_bit_string_is_a_bad_certificate(index: int, position: int, bit: int) -> None:
    """The flips above that turn a name attribute into a BIT STRING under another OID than
    x500UniqueIdentifier: cryptography raised TypeError from `cert.subject` and the verifier
    crashed (found by the property test, about one run in 25; an exhaustive pass over every
    single-bit flip of both certificates now finds no crash and nothing trusted)."""
    body = _body()
    value = bytearray(base64.b64decode(body["certificates"]["certificate"][index]["value"]))
    value[position] ^= 1 << bit
    body["certificates"]["certificate"][index]["value"] = b64(bytes(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography's notice about non-positive serials
        verdict = _verify(json.dumps({"signed-envelope": body}).encode())
    assert not verdict.trusted
    assert FindingId.ENVELOPE_BAD_CERTIFICATE in verdict.ids()


def test_swapping_in_another_leaf_of_the_same_root_is_caught() -> None:
    other = make_leaf("p256#5", "p256", _DEVICE.root, serial=0x0B63)
    body = _body()
    body["certificates"]["certificate"][1]["value"] = b64(der(other))
    verdict = _verify(json.dumps({"signed-envelope": body}).encode())
    assert FindingId.SIGNATURE_INVALID in verdict.ids()


def test_changing_the_version_is_caught() -> None:
    body = _body()
    body["signature_version"] = 2
    assert not _verify(json.dumps({"signed-envelope": body}).encode()).trusted


def _shuffled(value, rng: random.Random):
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@_PROPERTY
@given(seed=st.integers(0, 2**32), indent=st.sampled_from([None, 0, 1, 2, 4, "\t"]),
       ensure_ascii=st.booleans(), compact=st.booleans(), crlf=st.booleans(), slash_escape=st.booleans())
def test_re_encoding_without_changing_values_stays_trusted(
    seed: int, indent, ensure_ascii: bool, compact: bool, crlf: bool, slash_escape: bool
) -> None:
    document = _shuffled(json.loads(_VALID), random.Random(seed))
    separators = (",", ":") if compact else (", ", ": ")
    text = json.dumps(document, indent=indent, ensure_ascii=ensure_ascii, separators=separators)
    if slash_escape:
        text = text.replace("/", "\\/")  # "\/" is a legal JSON escape for "/"
    if crlf:
        text = text.replace("\n", "\r\n")
    verdict = _verify(text.encode("utf-8"))
    assert verdict.trusted, verdict.findings


@_PROPERTY
@given(raw=st.binary(max_size=2048))
def test_random_bytes_never_crash(raw: bytes) -> None:
    try:
        verdict = _verify(raw)
    except VerifierError:
        return
    assert not verdict.trusted


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@_PROPERTY
@given(body=st.dictionaries(
    st.sampled_from(["signature_version", "nonce", "data", "signature", "certificates", "x"]),
    _json_values, max_size=6))
def test_random_envelope_shapes_never_crash(body: dict) -> None:
    verdict = _verify(json.dumps({"signed-envelope": body}).encode())
    assert not verdict.trusted


@_PROPERTY
@given(position=st.integers(0, len(_VALID) - 1), byte=st.integers(0, 255))
def test_byte_edits_never_crash(position: int, byte: int) -> None:
    raw = _VALID[:position] + bytes([byte]) + _VALID[position + 1:]
    verdict = _verify(raw)
    if verdict.trusted:
        # only bytes outside the signed content (whitespace, certificate names) may change
        assert json.loads(raw)["signed-envelope"]["data"] == _DATA
