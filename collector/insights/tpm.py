"""Appraise TPM evidence (verifier/tpm/): what the quote binds against reference values.

  - `runtime-measurements` (IMA): each file measured is looked up in the policy's known-good
    lists, else in the device's file-system inventory (the dossier's digests, as of its
    newest trusted dossier), and an optional package as IOS XR loads it
    (`/opt/cisco/XR/packages/<name>-<version>.<arch>`) in that dossier's packages (its runtime
    fingerprint): no reference value is `appraisal.tpm.measurement_unknown`, another digest
    `appraisal.tpm.measurement_changed`. `boot_aggregate` is the boot PCRs' digest,
    judged through the boot log, not a file.
  - `boot-measurements` (boot log): a boot event new or changed since the previous trusted boot
    log (drift `drift.tpm.boot_event_changed`) is a violation.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .diff import Evidence, FileSystemState
from .findings import AppraisalId, DriftId, Finding

if TYPE_CHECKING:
    from .appraise import _Result
    from .policy import Rule

__all__ = ["BOOT_AGGREGATE", "PACKAGE_ROOT", "appraise_tpm", "package_references"]

#: IMA's first entry: a digest of PCRs 0-9, not a file.
BOOT_AGGREGATE = "boot_aggregate"
#: Where IOS XR installs optional packages; IMA names a package loaded by its file there.
PACKAGE_ROOT = "/opt/cisco/XR/packages"
_RULES = {"xr-tpm-ima-log": ("runtime-measurements",), "xr-tpm-boot-log": ("boot-measurements",)}


def package_references(dossier: Mapping[str, Any] | None) -> dict[str, str]:
    """The IMA file name of each package `dossier` lists -> its runtime fingerprint (lower-case
    hex); {} when it lists none."""
    from .diff import item_payload

    payload, _ = item_payload(dossier, "packages")
    found = {}
    for entry in payload if isinstance(payload, list) else ():
        if not isinstance(entry, Mapping):
            continue
        name, version, arch, runtime = (entry.get(key) for key in ("name", "version", "arch", "runtime-fingerprint"))
        if all(isinstance(value, str) and value for value in (name, version, arch, runtime)):
            found[f"{PACKAGE_ROOT}/{name}-{version}.{arch}"] = str(runtime).lower()
    return found


def appraise_tpm(current: Evidence, drift: Sequence[Finding], active: Mapping[str, Rule], result: _Result,
                 files: FileSystemState | None, packages: Mapping[str, str] | None = None) -> list[str]:
    """Appraise one trusted TPM output against the device's files and `packages`
    (`package_references` of its newest trusted dossier); returns the active rules that do
    not apply to it."""
    applies = _RULES.get(current.tpm_kind or "", ())
    for name in applies:
        if name in active:
            result.touch(result_category(name))
    if "runtime-measurements" in applies and "runtime-measurements" in active:
        _runtime(current.tpm or [], active["runtime-measurements"], result, files, packages or {})
    if "boot-measurements" in applies and "boot-measurements" in active:
        rule = active["boot-measurements"]
        for change in drift:
            if change.id == DriftId.TPM_BOOT_EVENT_CHANGED:
                result.violate(rule, AppraisalId.PCR_UNEXPLAINED_CHANGE, change.subject, change.message,
                               change.before, change.after)
    return sorted(f"{name} (not in {current.tpm_kind})" for name in active if name not in applies)


def result_category(name: str) -> Any:
    from .appraise import _RULE_CATEGORY

    return _RULE_CATEGORY[name]


def _runtime(nodes: list[dict[str, Any]], rule: Rule, result: _Result, files: FileSystemState | None,
             packages: Mapping[str, str]) -> None:
    known = result.policy.known_good
    for node in nodes:
        location = str(node.get("node"))
        inventory = files.files(location) if files is not None else None
        for measured in node.get("files", []):
            path = str(measured.get("file"))
            if path == BOOT_AGGREGATE:
                continue
            algorithm, _, digest_hex = str(measured.get("hash")).partition(":")
            try:
                digest_b64 = base64.b64encode(bytes.fromhex(digest_hex)).decode("ascii")
            except ValueError:
                result.missing(rule, f"{path} on {location} has no readable digest")
                continue
            verdict = known.check(path, algorithm, digest_b64)
            reference = "the known-good lists"
            if verdict is None and inventory is not None and path in inventory:
                entry = inventory[path]
                verdict = _same_digest(entry[0], entry[1], algorithm, digest_b64)
                reference = "the file-system inventory"
            if verdict is None and path in packages and algorithm.replace("-", "").lower() == "sha256":
                verdict = packages[path] == digest_hex.lower()
                reference = "the dossier's packages (runtime fingerprint)"
            if verdict is None:
                result.violate(rule, AppraisalId.TPM_MEASUREMENT_UNKNOWN, path,
                               f"{path} was measured (run) on {location}, but no reference value lists it "
                               "(neither the known-good lists, the file-system inventory nor the dossier's packages)",
                               "a reference value for the file", {"algorithm": algorithm, "digest": digest_b64})
            elif verdict is False:
                result.violate(rule, AppraisalId.TPM_MEASUREMENT_CHANGED, path,
                               f"{path} on {location} was measured with another digest than {reference} lists",
                               f"the digest {reference} lists", {"algorithm": algorithm, "digest": digest_b64})


def _same_digest(algorithm: str, digest: str, measured_algorithm: str, measured_b64: str) -> bool | None:
    """Whether the inventory's digest (its algorithm, base64) is the measured one; None when the
    algorithms differ (nothing to compare)."""
    if algorithm.replace("-", "").lower() != measured_algorithm.replace("-", "").lower():
        return None
    return digest == measured_b64
