"""The nonce a command is given, read one way per documented form.

- Hex (IOS XR, `../shared/spec/ENVELOPE.md` section 1): `show platform security integrity
  dossier ... nonce <N>`, `| utility sign nonce <N>` and `show platform security attest
  certificate ... nonce <N>`. A non-zero hex string of even length, 2 to 128 digits, any case;
  the bound value is `bytes.fromhex(N)`.
- Decimal (IOS XE): `nonce N` of the SUDI and integrity commands, which the device signs as an
  8-byte big-endian unsigned integer.
- Base64 (NETCONF): the `<nonce>` of the Cisco-IOS-XR-remote-attestation-act RPCs
  (docs/tpm-attestation.md), whose model types it `binary { length "0..64"; }`: RFC 4648
  base64 with padding, no whitespace inside. The model allows an empty nonce, which the hex form
  cannot spell; it says nothing of zero, so the shared rule refuses a non-empty all-zero one.

The hex and base64 forms' bytes meet one rule (`_checked`): at most 64 bytes, not all zero (and
at least one byte for hex). A malformed nonce raises NonceError, whose `message` is the device's
`% Invalid nonce ...` line; the NETCONF agent sends it, without the `% `, in an `<rpc-error>`.
"""

from __future__ import annotations

import base64
import re

__all__ = [
    "BASE64_NONCE_MIN_BYTES",
    "DECIMAL_NONCE_MAX",
    "HEX_NONCE_MAX_DIGITS",
    "HEX_NONCE_MIN_DIGITS",
    "NONCE_MAX_BYTES",
    "NonceError",
    "check_nonce_bytes",
    "parse_base64_nonce",
    "parse_decimal_nonce",
    "parse_hex_nonce",
]

NONCE_MAX_BYTES = 64  # hex (ENVELOPE.md section 1) and base64 (the model, below) alike
HEX_NONCE_MIN_DIGITS = 2
HEX_NONCE_MAX_DIGITS = 2 * NONCE_MAX_BYTES
# Cisco-IOS-XR-remote-attestation-act (2017-06-08), input leaf `nonce` of get-certificate and
# attest-platform-config-registers: `type binary { length "0..64"; }`. Zero bytes is the model's.
BASE64_NONCE_MIN_BYTES = 0
DECIMAL_NONCE_MAX = 2**64 - 1  # IOS XE signs the nonce as an 8-byte unsigned integer
_HEX_RE = re.compile(r"[0-9A-Fa-f]*")
_BASE64_ALPHABET_RE = re.compile(r"[A-Za-z0-9+/=]*")
# RFC 4648 section 4 with padding (YANG `binary`, RFC 7950 section 9.8.2).
_BASE64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# How much of a bad nonce the error line repeats (the rest is typed text of any length).
_SHOWN_CHARS = 40
_HEX_EXPECTED = (
    f"expected a non-zero hex string of even length, {HEX_NONCE_MIN_DIGITS} to "
    f"{HEX_NONCE_MAX_DIGITS} digits"
)
_BASE64_EXPECTED = f"expected base64 of at most {NONCE_MAX_BYTES} bytes, not all zero"
_BASE64_MAX_CHARS = 4 * -(-NONCE_MAX_BYTES // 3)


class NonceError(Exception):
    """A malformed nonce; `message` is the line the device prints (starts `% Invalid nonce`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "...")


def _checked(value: bytes, minimum: int, shown: str, expected: str, length: str) -> bytes:
    """The one rule of the byte forms (hex, base64): `minimum` to NONCE_MAX_BYTES bytes, not all zero.
    `length` is how the error line counts what was found (digits, bytes)."""
    if not minimum <= len(value) <= NONCE_MAX_BYTES:
        raise NonceError(f"% Invalid nonce{shown}: {expected}; found {length}")
    if value and not any(value):
        raise NonceError(f"% Invalid nonce{shown}: {expected}; found zero")
    return value


def check_nonce_bytes(value: bytes, typed: str | None = None) -> bytes:
    """`value` if it is 1 to 64 bytes, not all zero; NonceError otherwise (`typed`: as typed)."""
    shown = "" if typed is None else " " + _shown(typed)
    return _checked(value, HEX_NONCE_MIN_DIGITS // 2, shown, _HEX_EXPECTED, f"{len(value) * 2} digits")


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


def parse_base64_nonce(text: str) -> bytes:
    """The bytes of a remote-attestation RPC's `<nonce>` (its text, without surrounding
    whitespace): base64 of 0 to 64 bytes, not all zero; NonceError saying what was wrong otherwise."""
    shown = " " + _shown(text)
    if len(text) > _BASE64_MAX_CHARS:  # before any per-character work: the text can be any length
        raise NonceError(f"% Invalid nonce{shown}: {_BASE64_EXPECTED}; found {len(text)} characters, more than the "
                         f"{_BASE64_MAX_CHARS} that {NONCE_MAX_BYTES} bytes take")
    if not _BASE64_ALPHABET_RE.fullmatch(text):
        bad = next(char for char in text if not _BASE64_ALPHABET_RE.fullmatch(char))
        raise NonceError(f"% Invalid nonce{shown}: {_BASE64_EXPECTED}; found the character {bad!r}")
    if len(text) % 4:
        raise NonceError(f"% Invalid nonce{shown}: {_BASE64_EXPECTED}; found {len(text)} characters, "
                         "not a multiple of 4")
    if not _BASE64_RE.fullmatch(text):
        raise NonceError(f"% Invalid nonce{shown}: {_BASE64_EXPECTED}; found misplaced '=' padding")
    value = base64.b64decode(text, validate=True)
    return _checked(value, BASE64_NONCE_MIN_BYTES, shown, _BASE64_EXPECTED, f"{len(value)} bytes")


def parse_decimal_nonce(text: str) -> int:
    """The value of an IOS XE `nonce N`: a decimal number from 0 to 2**64-1; NonceError otherwise."""
    expected = f"expected a decimal number from 0 to {DECIMAL_NONCE_MAX}"
    if not text.isascii() or not text.isdigit():
        raise NonceError(f"% Invalid nonce {text[:_SHOWN_CHARS]!r}: {expected}")
    value = int(text)
    if value > DECIMAL_NONCE_MAX:
        raise NonceError(f"% Invalid nonce {text[:_SHOWN_CHARS]!r}: {expected} (it must fit in 64 bits)")
    return value
