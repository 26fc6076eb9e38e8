"""A lone surrogate escape (high or low, any case) is not Unicode text: wherever it is, in the
unsigned envelope or in the signed dossier, the verifier refuses it with its finding and never
raises. (A review found low surrogates, \\uDC00-\\uDFFF, passing the strict reader's escape
search: a certificate name holding one was trusted, one in `data` raised UnicodeEncodeError.)"""

from __future__ import annotations

import json

import pytest
import vbuilder as vb

from verifier import verify_envelope

ESCAPES = [r"\ud800", r"\uD800", r"\udbff", r"\udc00", r"\uDC00", r"\udfff", r"\uDFFF", r"\udc00\u003a",
           r"\u003a\udc00", r"\ude00x\ud83d"]


@pytest.fixture(scope="module")
def device() -> vb.Device:
    return vb.Device()


def _insert_after(text: str, marker: str, escape: str) -> bytes:
    at = text.index(marker) + len(marker)
    return (text[:at] + escape + text[at:]).encode()


@pytest.mark.parametrize("escape", ESCAPES)
@pytest.mark.parametrize("where", ["data", "certificate name", "unknown key", "top-level key", "nonce"])
def test_a_lone_surrogate_in_the_envelope_is_refused(device: vb.Device, escape: str, where: str) -> None:
    text = device.envelope().decode()
    raw = {
        "data": lambda: _insert_after(text, '"data": "', escape),
        "certificate name": lambda: _insert_after(text, '"name": "', escape),
        "unknown key": lambda: text.replace('"signed-envelope": {', '"signed-envelope": {"x' + escape + '": 1, ',
                                            1).encode(),
        "top-level key": lambda: text.replace('{"signed-envelope"', '{"a' + escape + '": 1, "signed-envelope"',
                                              1).encode(),
        "nonce": lambda: _insert_after(text, '"nonce": "', escape),
    }[where]()
    verdict = verify_envelope(raw, roots=[device.root], expected_nonce=device.nonce, at=vb.NOW)
    assert not verdict.trusted
    assert [str(f.id) for f in verdict.errors] == ["envelope.lone_surrogate"]


@pytest.mark.parametrize("escape", [r"\ud800", r"\udc00", r"\uDFFF"])
def test_a_lone_surrogate_in_a_signed_dossier_is_refused(device: vb.Device, escape: str) -> None:
    text = json.dumps(vb.dossier(device.nonce.hex())).replace("Version 7.3.2", "Version 7.3.2" + escape, 1)
    assert escape in text
    verdict = verify_envelope(device.envelope(text), roots=[device.root], expected_nonce=device.nonce, at=vb.NOW)
    assert not verdict.trusted
    assert "dossier.invalid_json" in [str(f.id) for f in verdict.errors]


def test_an_escaped_backslash_before_u_is_not_a_surrogate(device: vb.Device) -> None:
    """`\\\\udc00` is a backslash and the letters "udc00": nothing to refuse (the signature
    still fails: the data changed)."""
    text = device.envelope().decode()
    verdict = verify_envelope(_insert_after(text, '"data": "', r"\\udc00"), roots=[device.root],
                              expected_nonce=device.nonce, at=vb.NOW)
    assert "envelope.lone_surrogate" not in [str(f.id) for f in verdict.errors]
