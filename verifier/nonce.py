"""The nonce: one type from the collector that draws it to the verifier that checks it.

A `Nonce` is the raw bytes the device signs (a `bytes`, so it goes wherever bytes do), with the
forms it travels in: lower-case hex (the IOS XR command line, ENVELOPE.md's `nonce` member, the
stored metadata) and, for IOS XE, the unsigned 64-bit integer the device is given in decimal
and signs as 8 bytes big-endian.
"""

from __future__ import annotations

import secrets

from .errors import VerifierError

__all__ = ["MAX_NONCE_BYTES", "MIN_NONCE_BYTES", "XE_NONCE_MAX", "Nonce"]

MIN_NONCE_BYTES, MAX_NONCE_BYTES = 1, 64  # ENVELOPE.md section 1: 2 to 128 hex characters
#: The XR nonce the collector draws: 16 bytes from a CSPRNG never repeat in practice.
FRESH_NONCE_BYTES = 16
#: IOS XE signs the nonce as an 8-byte big-endian unsigned integer.
XE_NONCE_BYTES = 8
XE_NONCE_MAX = 2 ** (8 * XE_NONCE_BYTES) - 1


class Nonce(bytes):
    """The bytes a device signs as its nonce (see the module docstring)."""

    __slots__ = ()

    @classmethod
    def fresh(cls) -> Nonce:
        """A fresh IOS XR nonce from the OS CSPRNG."""
        return cls(secrets.token_bytes(FRESH_NONCE_BYTES))

    @classmethod
    def fresh_xe(cls) -> Nonce:
        """A fresh IOS XE nonce, 1 .. 2**64-1 (never 0: upstream tools read 0 as "no nonce")."""
        return cls.from_decimal(secrets.randbelow(XE_NONCE_MAX) + 1)

    @classmethod
    def from_hex(cls, text: str) -> Nonce:
        """A nonce from its hex (2 to 128 hex digits). Raises VerifierError otherwise."""
        try:
            raw = bytes.fromhex(text)
        except (TypeError, ValueError):
            raise VerifierError(f"expected hex digits, found {text!r}") from None
        if not MIN_NONCE_BYTES <= len(raw) <= MAX_NONCE_BYTES:
            raise VerifierError(f"expected {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes, found {len(raw)}")
        return cls(raw)

    @classmethod
    def from_decimal(cls, value: int) -> Nonce:
        """An IOS XE nonce from the integer sent in decimal. Raises VerifierError when it does not
        fit the 8 bytes the device signs."""
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= XE_NONCE_MAX:
            raise VerifierError(f"an IOS XE nonce is a decimal 64-bit integer 0..{XE_NONCE_MAX}; found {value!r}")
        return cls(value.to_bytes(XE_NONCE_BYTES, "big"))

    @property
    def decimal(self) -> int:
        """The nonce as the unsigned big-endian integer IOS XE takes (at most 8 bytes)."""
        if len(self) > XE_NONCE_BYTES:
            raise VerifierError(f"an IOS XE nonce is at most {XE_NONCE_BYTES} bytes; this one has {len(self)}")
        return int.from_bytes(self, "big")

    def __repr__(self) -> str:
        return f"Nonce({self.hex()!r})"
