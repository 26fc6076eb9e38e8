"""The runtime appraisal of an IMA log judges an optional package IOS XR loaded (its file under
/opt/cisco/XR/packages) against the install-time fingerprint the device's newest trusted dossier
lists: the reference value is what was installed, so a package changed after installation is a
TPM-rooted finding even when the (software-signed) dossier reports its runtime fingerprint."""

from __future__ import annotations

from typing import Any

from collector.insights.appraise import appraise
from collector.insights.diff import Evidence
from collector.insights.policy import AppraisalPolicy
from collector.insights.tpm import package_references

INSTALLED = "ab" * 32
TAMPERED = "cd" * 32
DOSSIER = {"packages": {"result-code": "Success", "packages": [
    {"name": "ncs5500-mpls", "version": "5.2.2.1-r722", "arch": "x86_64", "install-fingerprint": INSTALLED,
     "runtime-fingerprint": TAMPERED}]}}
POLICY = AppraisalPolicy.from_document({"format": "trust-dossier/policy/1",
                                        "rules": {"runtime-measurements": {"level": "enforce"}}})


def _ima(digest_hex: str) -> Evidence:
    files = [{"file": "/opt/cisco/XR/packages/ncs5500-mpls-5.2.2.1-r722.x86_64", "hash": f"sha256:{digest_hex}"}]
    return Evidence("ima", None, True, tpm_kind="xr-tpm-ima-log", tpm=[{"node": "0/RP0/CPU0", "files": files}])


def _findings(evidence: Evidence, dossier: Any) -> list[str]:
    result = appraise(evidence, [], POLICY, device="r1", packages=package_references(dossier))
    return [str(f.id) for f in result.findings]


def test_a_loaded_package_is_judged_by_the_dossiers_install_fingerprint() -> None:
    assert package_references(DOSSIER) == {"/opt/cisco/XR/packages/ncs5500-mpls-5.2.2.1-r722.x86_64": INSTALLED}
    assert _findings(_ima(INSTALLED), DOSSIER) == []
    # measured as the dossier says it runs now, but not as installed: changed after installation
    assert _findings(_ima(TAMPERED), DOSSIER) == ["appraisal.tpm.measurement_changed"]
    assert _findings(_ima(INSTALLED), None) == ["appraisal.tpm.measurement_unknown"]
