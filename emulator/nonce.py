"""The nonce a command is given, read one way per documented form.

- Hex (IOS XR, `../shared/spec/ENVELOPE.md` section 1): `show platform security integrity
  dossier ... nonce <N>`, `| utility sign nonce <N>` and `show platform security attest
  certificate ... nonce <N>`. A non-zero hex string of even length, 2 to 128 digits, any case;
  the bound value is `bytes.fromhex(N)`.
- Decimal (IOS XE): `nonce N` of the SUDI and integrity commands, which the device signs as an
  8-byte big-endian unsigned integer.

A malformed nonce raises NonceError, whose `message` is the device's `% Invalid nonce ...` line.
"""

from __future__ import annotations

import re

__all__ = [
    "DECIMAL_NONCE_MAX",
    "HEX_NONCE_MAX_DIGITS",
    "HEX_NONCE_MIN_DIGITS",
    "NonceError",
    "check_nonce_bytes",
    "parse_decimal_nonce",
    "parse_hex_nonce",
]

HEX_NONCE_MIN_DIGITS = 2
HEX_NONCE_MAX_DIGITS = 128
DECIMAL_NONCE_MAX = 2**64 - 1  # IOS XE signs the nonce as an 8-byte unsigned integer
_HEX_RE = re.compile(r"[0-9A-Fa-f]*")
# How much of a bad nonce the error line repeats (the rest is typed text of any length).
_SHOWN_CHARS = 40
_HEX_EXPECTED = (
    f"expected a non-zero hex string of even length, {HEX_NONCE_MIN_DIGITS} to "
    f"{HEX_NONCE_MAX_DIGITS} digits"
)


class NonceError(Exception):
    """A malformed nonce; `message` is the line the device prints (starts `% Invalid nonce`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "...")


def check_nonce_bytes(value: bytes, typed: str | None = None) -> bytes:
    """`value` if it is 1 to 64 bytes, not all zero; NonceError otherwise (`typed`: as typed)."""
    shown = "" if typed is None else " " + _shown(typed)
    if not HEX_NONCE_MIN_DIGITS // 2 <= len(value) <= HEX_NONCE_MAX_DIGITS // 2:
        raise NonceError(f"% Invalid nonce{shown}: {_HEX_EXPECTED}; found {len(value) * 2} digits")
    if not any(value):
        raise NonceError(f"% Invalid nonce{shown}: {_HEX_EXPECTED}; found zero")
    return value


def parse_hex_nonce(text: str) -> bytes:
    """The bytes of an IOS XR `nonce <N>`; NonceError saying what was wrong otherwise."""
    if not _HEX_RE.fullmatch(text):
        bad = next(char for char in text if not _HEX_RE.fullmatch(char))
        raise NonceError(f"% Invalid nonce {_shown(text)}: {_HEX_EXPECTED}; found the character {bad!r}")
    if not HEX_NONCE_MIN_DIGITS <= len(text) <= HEX_NONCE_MAX_DIGITS:
        raise NonceError(f"% Invalid nonce {_shown(text)}: {_HEX_EXPECTED}; found {len(text)} digits")
    if len(text) % 2:
        raise NonceError(f"% Invalid nonce {_shown(text)}: {_HEX_EXPECTED}; found an odd length ({len(text)})")
    return check_nonce_bytes(bytes.fromhex(text), text)


def parse_decimal_nonce(text: str) -> int:
    """The value of an IOS XE `nonce N`: a decimal number from 0 to 2**64-1; NonceError otherwise."""
    expected = f"expected a decimal number from 0 to {DECIMAL_NONCE_MAX}"
    if not text.isascii() or not text.isdigit():
        raise NonceError(f"% Invalid nonce {text[:_SHOWN_CHARS]!r}: {expected}")
    value = int(text)
    if value > DECIMAL_NONCE_MAX:
        raise NonceError(f"% Invalid nonce {text[:_SHOWN_CHARS]!r}: {expected} (it must fit in 64 bits)")
    return value
