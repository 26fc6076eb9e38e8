"""A stored (or just received) TPM output through `verifier.evidence.verify_evidence`: the
anchors from the trust store or the roots given, the side inputs from the metadata (`pcrs`,
`ima_start`, `tpm_previous`) and from the outputs of the same poll (`signer`, `quote`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509

from ..errors import VerifierError
from ..policy import Policy
from ..profiles._common import ProfileError, load_anchors
from ..truststore import TrustStore
from ..verify import Verdict
from .attestation import TPMInputs, verify_tpm_output

__all__ = ["verify_tpm_evidence"]


def verify_tpm_evidence(
    raw: bytes, meta: Mapping[str, Any], kind: str | None, *, trust_store: TrustStore | None,
    roots: Sequence[x509.Certificate], device: str | None, nonce: bytes | None, at: dt.datetime | None,
    policy: Policy, signer: bytes | None, quote: bytes | None, previous_quote: bytes | None, where: str,
) -> Verdict:
    """The verdict on one TPM output. Raises VerifierError for the caller's mistakes (no kind,
    no anchors configured); anything about the output is a finding."""
    if kind is None:
        raise VerifierError(f"{where}: a TPM output is verified by its kind (xr-tpm-quote, ...): its metadata "
                            "names none")
    when = at or dt.datetime.now(dt.UTC)
    try:
        anchors = load_anchors(roots, trust_store, device, when)
    except ProfileError as exc:
        raise VerifierError(f"{where}: {exc}") from None
    if trust_store is not None and device is not None and anchors:
        # Every device's attestation key chains to the same vendor root: the key must also be the
        # one pinned for this device's node, or a quote relayed from another device would verify.
        pinned = tuple(sorted(trust_store.pinned_attestation_keys(device).items()))
        anchors = dataclasses.replace(anchors, device=device, from_trust_store=True, attestation_keys=pinned)
    inputs = TPMInputs(certificate=signer, quote=quote, requested_pcrs=_pcrs(meta.get("pcrs")),
                       previous_quote=previous_quote, previous=_previous(meta.get("tpm_previous")),
                       ima_start=meta.get("ima_start") if isinstance(meta.get("ima_start"), Mapping) else None)
    verdict = verify_tpm_output(kind, raw, inputs, anchors=anchors, nonce=nonce, when=when, policy=policy)
    verdict.device = device
    return verdict


def _pcrs(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(i for i in value if type(i) is int and 0 <= i < 24)


def _previous(value: Any) -> dict[str, tuple[int, int]] | None:
    """`tpm_previous` ({node: {"up_time": s, "reset_count": n}}) as (up-time, resetCount) by node;
    a member that is not two whole numbers is left out (it says nothing)."""
    if not isinstance(value, Mapping):
        return None
    result = {}
    for node, entry in value.items():
        if isinstance(entry, Mapping) and type(entry.get("up_time")) is int and type(entry.get("reset_count")) is int:
            result[str(node)] = (entry["up_time"], entry["reset_count"])
    return result
