"""The signing certificate of outputs that carry none (XE integrity, compliance, measurement).

It comes from the same device's SUDI output (`show platform sudi certificate sign`, or the v2
`trust_chain` over CLI, NETCONF or RESTCONF), from a PEM file, or from the trust store's pinned
leaf. Only certificates are taken from it: the chain is checked by the profile that uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from ._common import ProfileError, ProfileVerdict, decode_text, pem_blocks

__all__ = ["Signer", "load_signers"]


@dataclass(frozen=True)
class Signer:
    """A device (SUDI) certificate, with the root and sub-CA printed beside it if any, and the
    v2 location it belongs to (None: any location)."""

    leaf: x509.Certificate
    root: x509.Certificate | None = None
    sub_ca: x509.Certificate | None = None
    location: str | None = None


def load_signers(source: bytes | x509.Certificate | Signer | Sequence[Signer] | None) -> list[Signer]:
    """Signers from a certificate, SUDI output bytes, PEM bytes or ready `Signer`s.

    Raises ProfileError when the bytes hold no usable certificate.
    """
    if source is None:
        return []
    if isinstance(source, Signer):
        return [source]
    if isinstance(source, x509.Certificate):
        return [Signer(source)]
    if not isinstance(source, bytes | bytearray):
        return [s if isinstance(s, Signer) else Signer(s) for s in source]
    scratch = ProfileVerdict(profile="signer")
    text = decode_text(bytes(source), scratch)
    if text is None:
        raise ProfileError("the signer file is not text: expected a SUDI output or PEM certificate(s)")
    stripped = text.lstrip()
    if stripped.startswith(("<", "{")) or "LOCATION FRU=" in text:
        from .xe_system_integrity import parse_v2

        parts = parse_v2(text, scratch)
        signers = [Signer(part.certificates[2][1], part.certificates[0][1], part.certificates[1][1], part.location)
                   for part in parts if part.kind == "trust_chain" and len(part.certificates) == 3]
        if not signers:
            raise ProfileError("the signer file holds no v2 trust chain with three certificates "
                               + "; ".join(f.message for f in scratch.findings))
        return signers
    blocks = pem_blocks(text.split("\n"), scratch)
    if not blocks:
        detail = "; ".join(f.message for f in scratch.findings) or "no PEM certificate found"
        raise ProfileError(f"the signer file holds no usable certificate ({detail}); expected the device's "
                           "'show platform sudi certificate sign' output or its SUDI certificate as PEM")
    if len(blocks) == 3:
        return [Signer(blocks[2].certificate, blocks[0].certificate, blocks[1].certificate)]
    if len(blocks) == 1:
        return [Signer(blocks[0].certificate)]
    raise ProfileError(f"the signer file holds {len(blocks)} certificates; expected 1 (the SUDI "
                       "certificate) or 3 (root, sub-CA, SUDI as the SUDI output prints them)")
