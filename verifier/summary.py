"""What a trusted verdict proved, in words: the checks that passed, as cosign and notation list
them (`dossier verify -v`). An untrusted verdict is explained by its findings instead."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .chain import fingerprint, format_name
from .signature import describe_key

if TYPE_CHECKING:
    from .verify import Verdict

__all__ = ["passed_checks"]

#: The dossier item result that means the device collected it.
_COLLECTED = "Success"


def passed_checks(verdict: Verdict) -> list[str]:
    """One line per check the trusted `verdict` passed (none for an untrusted one): signature,
    chain, validity time, nonce, dossier. Certificate names come from the device: the caller
    prints them inert."""
    if not verdict.trusted:
        return []
    ids = verdict.ids()
    checks: list[str] = []
    leaf, root = verdict.leaf, verdict.root
    if leaf is not None:
        algorithm = f" ({verdict.signature_algorithm})" if verdict.signature_algorithm else ""
        checks.append(f"signature verified{algorithm} with the {describe_key(leaf.public_key())} leaf "
                      f"{format_name(leaf.subject)}")
    if root is not None:
        checks.append(f"chain to the root enrolled for {verdict.device} ({format_name(root.subject)}, "
                      f"SHA-256 {fingerprint(root)})")
    elif leaf is not None:
        checks.append(f"the leaf pinned for {verdict.device} (SHA-256 {fingerprint(leaf)})")
    if verdict.verified_at is not None:
        days = verdict.days_to_expiry
        left = ", ".join(f"{which} expires in {count} days" for which, count in days.items())
        checks.append(f"valid at {verdict.verified_at.isoformat()}" + (f" ({left})" if left else ""))
    if verdict.nonce is not None and not any(finding_id.startswith("nonce.") for finding_id in ids):
        checks.append(f"nonce matches the one sent ({verdict.nonce.hex()})")
    if verdict.dossier is not None:
        items = [item for item in verdict.dossier.values() if isinstance(item, dict) and "result-code" in item]
        collected = sum(item["result-code"] == _COLLECTED for item in items)
        checks.append(f"dossier: {len(items)} items, {collected} collected")
    return checks
