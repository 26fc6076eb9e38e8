"""TPM 2.0 structures marshalled as a TPM returns them (TCG TPM 2.0 Library Part 2), big-endian.

Only what a quote needs: the AK's `TPMT_PUBLIC` (for its name), `TPMS_ATTEST` carrying a
`TPMS_QUOTE_INFO`, and an ECDSA `TPMT_SIGNATURE`. docs/tpm-attestation.md says which values
the emulator puts in them.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = [
    "PCR_BANK_SIZE",
    "TPM_ALG_ECDSA",
    "TPM_ALG_SHA256",
    "TPM_GENERATED_VALUE",
    "TPM_ST_ATTEST_QUOTE",
    "ClockInfo",
    "ecc_public_area",
    "object_name",
    "pcr_digest",
    "pcr_selection",
    "quote_attest",
    "sign_attest",
]

TPM_GENERATED_VALUE = 0xFF544347  # "\xffTCG": only the TPM signs data starting with this
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_SHA256 = 0x000B
TPM_ALG_ECDSA = 0x0018
TPM_ALG_ECC = 0x0023
TPM_ALG_NULL = 0x0010
TPM_ECC_NIST_P256 = 0x0003
# fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign: an AK.
AK_OBJECT_ATTRIBUTES = 0x00050072
# A PC Client TPM has 24 PCRs per bank: a selection bitmap of 3 bytes.
PCR_BANK_SIZE = 24
PCR_SELECT_BYTES = PCR_BANK_SIZE // 8
# The emulated TPM's firmware version (TPMS_ATTEST.firmwareVersion); any value is legal.
FIRMWARE_VERSION = 0x0001_0002_0003_0004


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def ecc_public_area(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The marshalled `TPMT_PUBLIC` of a P-256 restricted ECDSA-SHA256 signing key (an AK)."""
    numbers = public_key.public_numbers()
    return (
        struct.pack(">HHI", TPM_ALG_ECC, TPM_ALG_SHA256, AK_OBJECT_ATTRIBUTES)
        + _tpm2b(b"")  # authPolicy
        + struct.pack(">HHHHH", TPM_ALG_NULL, TPM_ALG_ECDSA, TPM_ALG_SHA256, TPM_ECC_NIST_P256, TPM_ALG_NULL)
        + _tpm2b(numbers.x.to_bytes(32, "big"))
        + _tpm2b(numbers.y.to_bytes(32, "big"))
    )


def object_name(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The key's TPM name: nameAlg || H(TPMT_PUBLIC)."""
    return struct.pack(">H", TPM_ALG_SHA256) + hashlib.sha256(ecc_public_area(public_key)).digest()


def pcr_selection(indexes: Iterable[int]) -> bytes:
    """`TPML_PCR_SELECTION` with one SHA-256 bank selecting `indexes`."""
    bitmap = bytearray(PCR_SELECT_BYTES)
    for index in indexes:
        if not 0 <= index < PCR_BANK_SIZE:
            raise ValueError(f"expected a PCR index 0-{PCR_BANK_SIZE - 1}, found {index}")
        bitmap[index // 8] |= 1 << (index % 8)
    return struct.pack(">IHB", 1, TPM_ALG_SHA256, PCR_SELECT_BYTES) + bytes(bitmap)


def pcr_digest(values: Iterable[bytes]) -> bytes:
    """SHA-256 of the selected PCR values concatenated in ascending index order."""
    return hashlib.sha256(b"".join(values)).digest()


@dataclass(frozen=True)
class ClockInfo:
    clock_ms: int
    reset_count: int
    restart_count: int = 0
    safe: bool = True

    def marshal(self) -> bytes:
        return struct.pack(">QIIB", self.clock_ms, self.reset_count, self.restart_count, 1 if self.safe else 0)


def quote_attest(*, signer_name: bytes, extra_data: bytes, clock: ClockInfo,
                 indexes: list[int], digest: bytes) -> bytes:
    """The marshalled `TPMS_ATTEST` of a quote (what `tpm2_quote -m` writes)."""
    return (
        struct.pack(">IH", TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE)
        + _tpm2b(signer_name)
        + _tpm2b(extra_data)
        + clock.marshal()
        + struct.pack(">Q", FIRMWARE_VERSION)
        + pcr_selection(indexes)
        + _tpm2b(digest)
    )


def sign_attest(key: ec.EllipticCurvePrivateKey, attest: bytes) -> bytes:
    """The marshalled ECDSA-SHA256 `TPMT_SIGNATURE` over `attest` (what `tpm2_quote -s` writes)."""
    r, s = decode_dss_signature(key.sign(attest, ec.ECDSA(hashes.SHA256())))
    return (struct.pack(">HH", TPM_ALG_ECDSA, TPM_ALG_SHA256)
            + _tpm2b(r.to_bytes(32, "big")) + _tpm2b(s.to_bytes(32, "big")))
