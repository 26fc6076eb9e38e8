"""The emulator reads a nonce one way per form: every IOS XR command that takes a hex nonce
refuses the same bad ones with the same `% Invalid nonce` line and accepts the same good ones
(ENVELOPE.md section 1: non-zero hex of even length, 2 to 128 digits); the NETCONF attestation
RPCs' base64 `<nonce>` meets the same bytes rule, with the model's lower bound of 0 bytes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu_ssh import run, strip_timestamp
from emulator.faults import Fault, parse_fault_spec
from emulator.nonce import (NonceError, check_nonce_bytes, parse_base64_nonce, parse_decimal_nonce,
                            parse_hex_nonce)

# Every XR command that takes `nonce <N>`, with the nonce as a placeholder.
XR_NONCE_COMMANDS = {
    "dossier": "show platform security integrity dossier include packages nonce {nonce}",
    "utility sign": "show version | utility sign nonce {nonce}",
    "utility sign (dossier)": "show platform security integrity dossier include packages nonce 01 "
                              "| utility sign include-certificate nonce {nonce}",
    "attest certificate": "show platform security attest certificate system-identity location all "
                          "nonce {nonce} json",
}
BAD_HEX_NONCES = ["0", "00", "0000", "158", "15g0", "0x1580", "ab" * 65]
GOOD_HEX_NONCES = ["01", "0001", "1580", "AbCd", "ff" * 64]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1580", b"\x15\x80"),
        ("ab", b"\xab"),
        ("AbCd", b"\xab\xcd"),
        ("0001", b"\x00\x01"),
        ("ff" * 64, b"\xff" * 64),
    ],
)
def test_valid_nonces(text: str, expected: bytes) -> None:
    assert parse_hex_nonce(text) == expected


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("0", "1 digits"),
        ("00", "zero"),
        ("0000", "zero"),
        ("158", "odd length"),
        ("15g0", "'g'"),
        ("15 80", "' '"),
        ("0x1580", "'x'"),
        ("", "0 digits"),
        ("ab" * 65, "130 digits"),
    ],
)
def test_malformed_nonces_are_refused(text: str, found: str) -> None:
    with pytest.raises(NonceError) as caught:
        parse_hex_nonce(text)
    assert caught.value.message.startswith("% Invalid")
    assert "expected a non-zero hex string of even length, 2 to 128 digits" in caught.value.message
    assert found in caught.value.message


@given(st.binary(min_size=1, max_size=64).filter(any), st.booleans())
def test_nonce_round_trips(value: bytes, upper: bool) -> None:
    text = value.hex().upper() if upper else value.hex()
    assert parse_hex_nonce(text) == value


@pytest.mark.parametrize("value", [b"", b"\x00", b"\x00" * 8, b"\x01" * 65])
def test_nonce_bytes_follow_the_same_rule(value: bytes) -> None:
    with pytest.raises(NonceError, match="expected a non-zero hex string of even length"):
        check_nonce_bytes(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FYA=", b"\x15\x80"),
        ("AAE=", b"\x00\x01"),
        ("q83v", b"\xab\xcd\xef"),
        ("+/8=", b"\xfb\xff"),
        (base64.b64encode(b"\xff" * 64).decode(), b"\xff" * 64),
        ("", b""),  # the model's `binary { length "0..64"; }` allows an empty nonce
    ],
)
def test_valid_base64_nonces(text: str, expected: bytes) -> None:
    assert parse_base64_nonce(text) == expected


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("AA==", "found zero"),
        ("AAAAAAAAAAA=", "found zero"),
        (base64.b64encode(bytes(64)).decode(), "found zero"),
        (base64.b64encode(b"\x01" * 65).decode(), "found 65 bytes"),
        ("%%%", "found the character '%'"),
        ("FY A=", "found the character ' '"),
        ("FYA=\n", "found the character '\\n'"),
        ("FYA-", "found the character '-'"),
        ("FYA", "found 3 characters, not a multiple of 4"),
        ("FYA=AAAA", "misplaced '=' padding"),
        ("A" * 92, "found 92 characters, more than the 88 that 64 bytes take"),
        ("F===", "misplaced '=' padding"),
    ],
)
def test_malformed_base64_nonces_are_refused(text: str, found: str) -> None:
    with pytest.raises(NonceError) as caught:
        parse_base64_nonce(text)
    assert caught.value.message.startswith("% Invalid nonce")
    assert "expected base64 of at most 64 bytes, not all zero" in caught.value.message
    assert found in caught.value.message


@given(st.binary(min_size=1, max_size=64).filter(any))
def test_base64_nonce_round_trips_and_agrees_with_hex(value: bytes) -> None:
    assert parse_base64_nonce(base64.b64encode(value).decode()) == value == parse_hex_nonce(value.hex())


@given(st.binary(max_size=80))
def test_base64_and_hex_forms_refuse_the_same_bytes_but_the_empty_nonce(value: bytes) -> None:
    def refused(parse, text: str) -> bool:
        try:
            parse(text)
        except NonceError:
            return True
        return False

    hex_refused = refused(parse_hex_nonce, value.hex())
    assert refused(parse_base64_nonce, base64.b64encode(value).decode()) == (hex_refused and value != b"")


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("1325", 1325), (str(2**64 - 1), 2**64 - 1)])
def test_decimal_nonces(text: str, value: int) -> None:
    assert parse_decimal_nonce(text) == value


@pytest.mark.parametrize(("text", "found"), [("12ab", "a decimal number"), ("-1", "a decimal number"),
                                             ("١٢", "a decimal number"), (str(2**64), "fit in 64 bits")])
def test_malformed_decimal_nonces(text: str, found: str) -> None:
    with pytest.raises(NonceError, match=found) as caught:
        parse_decimal_nonce(text)
    assert caught.value.message.startswith("% Invalid nonce")


@pytest.mark.parametrize("bad", BAD_HEX_NONCES)
def test_every_command_refuses_the_same_bad_nonce_with_the_same_line(fleet, bad: str) -> None:
    with pytest.raises(NonceError) as caught:
        parse_hex_nonce(bad)
    expected = caught.value.message + "\n"
    for name, command in XR_NONCE_COMMANDS.items():
        output = strip_timestamp(run(fleet.devices[0], command.format(nonce=bad)))
        assert output == expected, f"{name}: {output!r}"


@pytest.mark.parametrize("good", GOOD_HEX_NONCES)
def test_every_command_accepts_the_same_good_nonce(fleet, good: str) -> None:
    for name, command in XR_NONCE_COMMANDS.items():
        output = strip_timestamp(run(fleet.devices[0], command.format(nonce=good)))
        assert output.startswith("{") and "% Invalid" not in output, f"{name}: {output[:200]!r}"


def test_a_stale_nonce_fault_parameter_keeps_its_hex_digits() -> None:
    assert parse_fault_spec("xr-0001=wrong-nonce:nonce=1580") == ("xr-0001", Fault.WRONG_NONCE, {"nonce": "1580"})
