"""TPM 2.0 structures as TPM2_Quote returns them (TCG TPM 2.0 Library, Part 2), parsed with
bounds: `TPMS_ATTEST` (with `TPMS_QUOTE_INFO`) and `TPMT_SIGNATURE`, both big-endian, exactly
as `tpm2_quote -m/-s` write them. Every malformed input raises `TPMFormatError` naming what
was expected and what was found; nothing else escapes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = [
    "HASH_ALGORITHMS", "TPM_GENERATED_VALUE", "TPM_ST_ATTEST_QUOTE", "Attest", "PcrSelection", "QuoteSignature",
    "TPMFormatError", "extend", "parse_attest", "parse_signature", "pcr_digest", "verify_quote_signature",
]

#: TPMS_ATTEST.magic: the TPM made this structure (TPM2_Quote refuses to sign data starting so).
TPM_GENERATED_VALUE = 0xFF544347
#: TPMS_ATTEST.type of a quote (TPM_ST_ATTEST_QUOTE).
TPM_ST_ATTEST_QUOTE = 0x8018
#: TPM_ALG_ID -> hashlib name; the PCR banks and signature hashes we accept.
HASH_ALGORITHMS: dict[int, str] = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
#: Signature schemes (TPM_ALG_ID) a restricted signing key uses.
TPM_ALG_RSASSA, TPM_ALG_RSAPSS, TPM_ALG_ECDSA = 0x0014, 0x0016, 0x0018
#: TPMS_ATTEST is a few hundred bytes (TPM2B sizes are capped by the TPM's buffer of 1-4 KiB);
#: anything larger is not a quote (DoS bound).
MAX_ATTEST_BYTES = 4096
#: A TPML_PCR_SELECTION holds one entry per bank (TPM: at most HASH_COUNT, 4 or 5).
MAX_PCR_BANKS = 8
#: PCR select bitmaps are 3 bytes on PC client TPMs (24 PCRs); the TPM caps them at 4 bytes.
MAX_SELECT_BYTES = 4


class TPMFormatError(ValueError):
    """Bytes that are not the TPM structure expected: `expected` and `found` say how."""

    def __init__(self, what: str, expected: str, found: str) -> None:
        super().__init__(f"{what}: expected {expected}, found {found}")
        self.expected, self.found = expected, found


@dataclass(frozen=True)
class PcrSelection:
    """One bank of a TPML_PCR_SELECTION: its hash (hashlib name) and the PCR indexes selected,
    ascending (the order their values enter the quote's digest)."""

    bank: str
    indexes: tuple[int, ...]


@dataclass(frozen=True)
class Attest:
    """A parsed TPMS_ATTEST carrying TPMS_QUOTE_INFO."""

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    selections: tuple[PcrSelection, ...]
    pcr_digest: bytes


@dataclass(frozen=True)
class QuoteSignature:
    """A parsed TPMT_SIGNATURE: the scheme, its hash (hashlib name) and the signature value
    (RSA: the bytes; ECDSA: DER of r and s)."""

    scheme: int
    hash: str
    value: bytes


class _Reader:
    """Big-endian fields read off a buffer, never past its end."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.offset, self.what = data, 0, what

    def take(self, count: int, field: str) -> bytes:
        end = self.offset + count
        if end > len(self.data):
            raise TPMFormatError(self.what, f"{count} bytes of {field} at offset {self.offset}",
                                 f"{len(self.data) - self.offset} left")
        chunk, self.offset = self.data[self.offset:end], end
        return chunk

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def sized(self, field: str, limit: int) -> bytes:
        """A TPM2B: a u16 size, then that many bytes (at most `limit`)."""
        size = self.uint(2, f"{field} size")
        if size > limit:
            raise TPMFormatError(self.what, f"{field} of at most {limit} bytes", f"{size}")
        return self.take(size, field)

    def end(self) -> None:
        if self.offset != len(self.data):
            raise TPMFormatError(self.what, "no bytes after the structure", f"{len(self.data) - self.offset} more")


def _hash_name(alg: int, what: str, field: str) -> str:
    name = HASH_ALGORITHMS.get(alg)
    if name is None:
        raise TPMFormatError(what, f"a {field} of {', '.join(HASH_ALGORITHMS.values())}", f"TPM_ALG_ID 0x{alg:04x}")
    return name


def parse_attest(data: bytes) -> Attest:
    """The TPMS_ATTEST of a quote (any `magic`/`type`: the caller judges them). Raises TPMFormatError."""
    what = "pcr-quote (TPMS_ATTEST)"
    if len(data) > MAX_ATTEST_BYTES:
        raise TPMFormatError(what, f"at most {MAX_ATTEST_BYTES} bytes", f"{len(data)}")
    reader = _Reader(data, what)
    magic = reader.uint(4, "magic")
    kind = reader.uint(2, "type")
    signer = reader.sized("qualifiedSigner", 2 + 64)
    extra = reader.sized("extraData", 64)
    clock, resets, restarts = reader.uint(8, "clock"), reader.uint(4, "resetCount"), reader.uint(4, "restartCount")
    safe = reader.uint(1, "safe")
    firmware = reader.uint(8, "firmwareVersion")
    if kind != TPM_ST_ATTEST_QUOTE:  # another attestation: the rest is not a TPMS_QUOTE_INFO
        return Attest(magic, kind, signer, extra, clock, resets, restarts, bool(safe), firmware, (), b"")
    count = reader.uint(4, "pcrSelect count")
    if count > MAX_PCR_BANKS:
        raise TPMFormatError(what, f"at most {MAX_PCR_BANKS} PCR banks", f"{count}")
    selections = []
    for _ in range(count):
        bank = _hash_name(reader.uint(2, "pcrSelect hash"), what, "PCR bank")
        size = reader.uint(1, "sizeofSelect")
        if size > MAX_SELECT_BYTES:
            raise TPMFormatError(what, f"a PCR bitmap of at most {MAX_SELECT_BYTES} bytes", f"{size}")
        bitmap = reader.take(size, "pcrSelect")
        selections.append(PcrSelection(bank, tuple(byte * 8 + bit for byte in range(size) for bit in range(8)
                                                   if bitmap[byte] >> bit & 1)))
    digest = reader.sized("pcrDigest", 64)
    reader.end()
    return Attest(magic, kind, signer, extra, clock, resets, restarts, bool(safe), firmware, tuple(selections), digest)


def parse_signature(data: bytes) -> QuoteSignature:
    """A TPMT_SIGNATURE by RSASSA, RSAPSS or ECDSA. Raises TPMFormatError."""
    what = "pcr-quote-signature (TPMT_SIGNATURE)"
    if len(data) > MAX_ATTEST_BYTES:
        raise TPMFormatError(what, f"at most {MAX_ATTEST_BYTES} bytes", f"{len(data)}")
    reader = _Reader(data, what)
    scheme = reader.uint(2, "sigAlg")
    if scheme not in (TPM_ALG_RSASSA, TPM_ALG_RSAPSS, TPM_ALG_ECDSA):
        raise TPMFormatError(what, "sigAlg RSASSA (0x0014), RSAPSS (0x0016) or ECDSA (0x0018)", f"0x{scheme:04x}")
    hash_name = _hash_name(reader.uint(2, "hash"), what, "signature hash")
    if scheme == TPM_ALG_ECDSA:
        r = int.from_bytes(reader.sized("signatureR", 66), "big")
        s = int.from_bytes(reader.sized("signatureS", 66), "big")
        value = encode_dss_signature(r, s)
    else:
        value = reader.sized("sig", 512)
    reader.end()
    return QuoteSignature(scheme, hash_name, value)


def verify_quote_signature(key: PublicKeyTypes, attest: bytes, signature: QuoteSignature) -> None:
    """Check `signature` over the marshalled TPMS_ATTEST with `key`. Raises InvalidSignature,
    also for a key whose type does not match the scheme."""
    algorithm = _HASHES[signature.hash]()
    if signature.scheme == TPM_ALG_ECDSA:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidSignature("an ECDSA signature needs an EC key")
        key.verify(signature.value, attest, ec.ECDSA(algorithm))
        return
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidSignature("an RSA signature needs an RSA key")
    pad = (padding.PKCS1v15() if signature.scheme == TPM_ALG_RSASSA
           else padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO))
    key.verify(signature.value, attest, pad, algorithm)


def pcr_digest(hash_name: str, values: list[bytes]) -> bytes:
    """The quote's pcrDigest over PCR values in selection order, hashed with the signing hash."""
    return hashlib.new(hash_name, b"".join(values)).digest()


def extend(hash_name: str, pcr: bytes, digest: bytes) -> bytes:
    """PCR extend: H(pcr || digest)."""
    return hashlib.new(hash_name, pcr + digest).digest()
