"""`reference-values: {provider: cisco-kgv, ...}`: XR packages, and IOS XE boot and OS
measurements, against a Cisco Known Good Values file, authenticated with the verifier's `kgv`
profile.

    reference-values:
      level: enforce
      provider: cisco-kgv
      file: kgv.json                  # its detached signature: kgv.json.signature (Cisco's naming)
      signer: kgv-signer.pem          # the KGV signing certificate and its sub-CA (PEM)
      anchors: [cisco-root-ca-m2.pem] # trust anchors the signer must chain to
      allow-unsigned: false           # DANGEROUS when true: an unsigned file is used as is

Each XR package's install-time fingerprint must be one of the KGV's package or OS-image hashes;
each XE measured hash one the KGV lists for its stage (`verifier.profiles.appraise_integrity`).
What the KGV hashes for XR packages is not publicly specified beyond "biv_hash"; matching it
against the dossier's install fingerprint is this module's reading, kept in this one place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from .errors import PolicyError
from .policy import ReferenceChecker

__all__ = ["kgv_checker"]

log = logging.getLogger("collector.insights")


def _path(value: str, base: Path | None) -> Path:
    path = Path(value)
    return path if path.is_absolute() or base is None else base / path


def kgv_checker(params: Mapping[str, Any], base: Path | None) -> ReferenceChecker:
    """Load and authenticate the KGV file once; return the per-dossier check."""
    from verifier.profiles import KGVError, appraise_integrity, load_kgv

    file = _path(params["file"], base)
    allow_unsigned = bool(params.get("allow-unsigned", False))
    try:
        anchors = []
        for name in params.get("anchors", []):
            anchors.extend(x509.load_pem_x509_certificates(_path(name, base).read_bytes()))
        signer = _path(params["signer"], base).read_bytes() if params.get("signer") else None
        kgv = load_kgv(file, anchors, signer=signer, allow_unsigned=allow_unsigned)
    except (OSError, ValueError) as exc:
        raise PolicyError(f"reference-values (cisco-kgv): cannot read its files: {exc}") from None
    except KGVError as exc:
        raise PolicyError(f"reference-values (cisco-kgv): {exc}") from None
    if not kgv.authenticated:
        log.warning("reference-values: using the KGV file %s WITHOUT a verified signature "
                    "(allow-unsigned); its values prove nothing about Cisco", file)
    known = {**kgv.package, **kgv.os_image}

    def check(evidence: Any) -> list[str] | None:
        """Messages for what the KGV does not list: an IOS XE output's measurements (every boot
        and OS hash, `verifier.profiles.appraise_integrity`), an IOS XR dossier's packages."""
        if evidence.measurements:
            return [finding.message for measured in evidence.measurements
                    for finding in appraise_integrity(measured, kgv) if finding.severity == "error"]
        dossier = evidence.dossier or {}
        item = dossier.get("packages")
        if not isinstance(item, Mapping) or item.get("result-code") != "Success":
            return None
        problems = []
        for package in item.get("packages") or []:
            fingerprint = str(package.get("install-fingerprint", "")).upper()
            if fingerprint not in known:
                problems.append(f"package {package.get('name')} {package.get('version')}: install "
                                f"fingerprint {fingerprint[:16]}... is not in the KGV file {file.name}")
        return problems

    return check
