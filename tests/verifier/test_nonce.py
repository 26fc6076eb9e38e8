"""verifier.nonce.Nonce: the one nonce type from the collector that draws it to the verifier,
in each form it travels in (raw bytes, hex, the IOS XE 64-bit integer)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verifier import VerifierError
from verifier.nonce import FRESH_NONCE_BYTES, MAX_NONCE_BYTES, MIN_NONCE_BYTES, XE_NONCE_MAX, Nonce


def test_a_fresh_nonce_is_bytes_of_the_fresh_size_and_never_repeats() -> None:
    drawn = {Nonce.fresh() for _ in range(200)}
    assert len(drawn) == 200
    assert all(isinstance(n, bytes) and len(n) == FRESH_NONCE_BYTES for n in drawn)


def test_a_fresh_xe_nonce_fits_the_eight_bytes_the_device_signs_and_is_never_zero() -> None:
    for _ in range(200):
        nonce = Nonce.fresh_xe()
        assert len(nonce) == 8 and 1 <= nonce.decimal <= XE_NONCE_MAX
        assert Nonce.from_decimal(nonce.decimal) == nonce


@given(st.binary(min_size=MIN_NONCE_BYTES, max_size=MAX_NONCE_BYTES))
def test_hex_round_trips_in_either_case(raw: bytes) -> None:
    assert Nonce.from_hex(raw.hex()) == raw
    assert Nonce.from_hex(raw.hex().upper()) == raw
    assert Nonce(raw).hex() == raw.hex()


@pytest.mark.parametrize("text, found", [
    ("", "found 0"),  # no bytes at all
    ("abc", "expected hex digits"),  # odd length
    ("zz", "expected hex digits"),
    ("ab" * (MAX_NONCE_BYTES + 1), f"found {MAX_NONCE_BYTES + 1}"),
])
def test_from_hex_names_what_it_expected_and_found(text: str, found: str) -> None:
    with pytest.raises(VerifierError, match=found):
        Nonce.from_hex(text)


@given(st.integers(min_value=0, max_value=XE_NONCE_MAX))
def test_the_xe_integer_is_eight_bytes_big_endian(value: int) -> None:
    nonce = Nonce.from_decimal(value)
    assert nonce == value.to_bytes(8, "big") and nonce.decimal == value


@pytest.mark.parametrize("value", [-1, XE_NONCE_MAX + 1, True, "5", 1.0])
def test_from_decimal_refuses_what_the_device_cannot_sign(value: object) -> None:
    with pytest.raises(VerifierError, match="64-bit integer"):
        Nonce.from_decimal(value)  # type: ignore[arg-type]


def test_a_nonce_longer_than_eight_bytes_has_no_xe_form() -> None:
    with pytest.raises(VerifierError, match="at most 8 bytes"):
        Nonce(bytes(range(1, 17))).decimal  # noqa: B018


def test_repr_shows_the_hex_a_log_line_would() -> None:
    assert repr(Nonce(b"\x15\x80")) == "Nonce('1580')"
