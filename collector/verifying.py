"""Verification as the collector uses it: the verifier library on one output, reduced to what
the collector keeps (`Checked`), against one view of the trust store per run.

Kept apart from the polling code (no paramiko here).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from verifier.chain import per_certificate

__all__ = ["FILESYSTEM_ITEM", "Checked", "checked_from", "freeze_trust_store", "release_trust_store",
           "stored_verdict", "trust_store_for", "verify_many", "verify_polled"]

FILESYSTEM_ITEM = "filesystem-inventory"
log = logging.getLogger(__name__)


@dataclass
class Checked:
    """What the collector keeps from a verdict."""

    trusted: bool
    verdict_json: dict[str, Any]
    findings: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    days_to_expiry: dict[str, int]
    leaf_der: bytes | None
    root_der: bytes | None
    filesystem_blocks: dict[str, int]
    refused: str | None = None


_TRUST_STORES: dict[str, Any] = {}
_BASE_TRUST_STORES: dict[str, Any] = {}  # per trust store: the parsed files, kept across runs


def freeze_trust_store(trust_store_path: str, *, opened: Any = None) -> Any:
    """Take this process's view of the trust store for a run: each file read once (only files
    that changed since the last run are read again), no file-system call per envelope;
    changes made during the run apply from the next run. `opened`: the store just opened
    there (kept as the base when this process has none yet). Raises TrustStoreError if
    damaged."""
    base = _BASE_TRUST_STORES.get(trust_store_path)
    if base is None:
        if opened is None:
            from verifier import TrustStore

            opened = TrustStore.open(Path(trust_store_path))
        base = _BASE_TRUST_STORES[trust_store_path] = opened
    frozen = _TRUST_STORES[trust_store_path] = base.frozen()
    return frozen


def release_trust_store(trust_store_path: str) -> None:
    """End of a run: the next one takes a fresh view."""
    _TRUST_STORES.pop(trust_store_path, None)


def trust_store_for(trust_store_path: str | None) -> Any:
    """The trust store at `trust_store_path` (None for none): the run's frozen view when a
    collection run is on, else opened once per process."""
    if trust_store_path is None:
        return None
    trust_store = _TRUST_STORES.get(trust_store_path)
    if trust_store is None:
        from verifier import TrustStore

        trust_store = _TRUST_STORES[trust_store_path] = TrustStore.open(Path(trust_store_path))
    return trust_store


def verify_polled(raw: bytes, kind: str, trust_store_path: str | None, device: str, nonce: bytes,
                  received: datetime, signer: bytes | None = None, quote: bytes | None = None,
                  extra: Mapping[str, Any] | None = None) -> Checked:
    """Verify one polled output, at the time it was received, the way a stored one is verified
    (`verifier.evidence.verify_evidence`): its `kind` (what the metadata about to be written
    says) picks the verifier profile and whether its text must be a dossier; `signer` is the
    same poll's output whose certificate signs it (IOS XE integrity: its SUDI output; a TPM
    output: the certificate reply), `quote` a TPM log's quote reply, `extra` the metadata
    members about to be written with it (a TPM output's `pcrs`, `ima_start`, `tpm_previous`)."""
    from verifier import VerifierError
    from verifier.evidence import verify_evidence

    try:
        verdict = verify_evidence(raw, {**(extra or {}), "kind": kind}, trust_store=trust_store_for(trust_store_path),
                                  device=device, nonce=nonce, at=received, signer=signer, where=device, quote=quote)
        blocks = _filesystem_blocks(verdict.dossier) if verdict.trusted and verdict.dossier else {}
        return checked_from(verdict, filesystem_blocks=blocks)
    except VerifierError as exc:
        return Checked(False, {}, [], [], {}, None, None, {}, refused=str(exc))
    except Exception as exc:  # a verifier bug on one device's output: that device's failure only
        return _unexpected(exc, device)


def verify_many(calls: list[tuple[Any, ...]]) -> list[Checked]:
    """`verify_polled` for each of `calls` (its arguments), back to back: the caches stay warm
    from one to the next."""
    return [verify_polled(*call) for call in calls]


def _unexpected(exc: Exception, device: str) -> Checked:
    """A verification that raised something other than VerifierError (a bug the device's
    output reached): refused, so never trusted, with the exception named; logged with its
    traceback for a bug report. The run goes on with the other devices."""
    log.error("verifying %s's output raised %s", device, type(exc).__name__, exc_info=exc)
    return Checked(False, {}, [], [], {}, None, None, {},
                   refused=f"the verifier failed on this output ({type(exc).__name__}: {str(exc)[:200]}); "
                           "expected a verdict: please report this as a verifier bug")


def stored_verdict(checked: Checked) -> Any:
    """What the store records of `checked` (a `collector.store.StoredVerdict`: the verdict JSON
    and the index's summary), or None when the verifier refused to judge (nothing to record)."""
    from .store import StoredVerdict

    if checked.refused is not None:
        return None
    days = checked.days_to_expiry
    return StoredVerdict(checked.verdict_json, checked.trusted, [finding["id"] for finding in checked.errors],
                         days.get("leaf"), days.get("root"))


def checked_from(verdict: Any, *, filesystem_blocks: dict[str, int]) -> Checked:
    """What the collector keeps of a verdict (envelope or signed-output profile alike)."""
    findings = [_finding_json(f) for f in verdict.findings]
    trusted = bool(verdict.trusted)
    return Checked(
        trusted=trusted,
        verdict_json=verdict.to_json(),
        findings=findings,
        errors=[f for f in findings if f.get("severity") == "error"],
        days_to_expiry=dict(verdict.days_to_expiry or {}),
        leaf_der=_der(verdict.leaf) if verdict.leaf is not None and trusted else None,
        root_der=_der(verdict.root) if verdict.root is not None and trusted else None,
        filesystem_blocks=filesystem_blocks,
    )


def _finding_json(finding: Any) -> dict[str, Any]:
    if hasattr(finding, "to_json"):
        return finding.to_json()
    return {"id": str(finding.id), "severity": str(finding.severity), "message": finding.message}


def _filesystem_blocks(dossier: Mapping[str, Any]) -> dict[str, int]:
    """The newest snapshot block per node in a verified dossier ({} when it has none)."""
    item = dossier.get(FILESYSTEM_ITEM)
    if not isinstance(item, Mapping) or item.get("result-code") != "Success":
        return {}
    nodes = item.get(FILESYSTEM_ITEM)
    if not isinstance(nodes, Mapping):
        return {}
    blocks: dict[str, int] = {}
    for node, content in nodes.items():
        snapshots = content.get("snapshots") if isinstance(content, Mapping) else None
        numbers = [s.get("snapshot-block-no") for s in snapshots or [] if isinstance(s, Mapping)]
        numbers = [n for n in numbers if isinstance(n, int)]
        if numbers:
            blocks[node] = max(numbers)
    return blocks


@per_certificate  # by identity: hashing a Certificate costs more than the lookup saves
def _der(cert: x509.Certificate) -> bytes:
    """A certificate's DER, encoded once (the same certificates recur at every poll)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)
