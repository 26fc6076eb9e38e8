"""Drift and policy on hand-built dossiers: block order, gaps, full-against-full, the policy's
refusals (empty, unreadable, invalid) and known-good hash lists in CSV and JSON."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import schemas
from collector.insights import (
    AppraisalPolicy,
    Evidence,
    FileSystemState,
    PolicyError,
    Status,
    appraise,
    diff_evidence,
    load_hash_list,
    load_policy,
)

NODE = "0/RP0/CPU0"


def _digest(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _file(name: str, content: str, kind: str = "created", *, mode: int = 0o644,
          package: str = "ncs5500-xr-7.3.2.x86_64") -> dict[str, Any]:
    return {"name": name, "meta": {"uid": 0, "gid": 0, "inode": abs(hash(name)) % 10**6, "size": len(content),
                                   "mode": mode, "atime": 1.0, "mtime": 1.0, "ctime": 1.0},
            "digest": {"algorithm": "SHA256", "digest-value": _digest(content)}, "change-kind": kind,
            "package-kind": "rpm" if package else "anonymous", "package-name": package}


def _dossier(blocks: list[dict[str, Any]], **items: Any) -> dict[str, Any]:
    dossier: dict[str, Any] = {
        "collection-start-time": 1_800_000_000.0, "model-name": "http://cisco.com/ns/yang/Cisco-IOS-XR-ama",
        "model-revision": "2019-08-05", "nonce": "00ff",
        "version": {"result-code": "Success", "version": "Cisco IOS XR Software, Version 7.3.2\n"},
        "filesystem-inventory": {"result-code": "Success", "filesystem-inventory": {NODE: {"snapshots": blocks}}},
    }
    for name, payload in items.items():
        key = name.replace("_", "-")
        dossier[key] = {"result-code": "Success", key: payload}
    return dossier


def _block(number: int, files: list[dict[str, Any]]) -> dict[str, Any]:
    return {"snapshot-block-no": number, "snap-time": 1_800_000_000.0 + number * 3600,
            "snapshot-type": "full" if number == 0 else "incremental", "files": files}


BASE = [_file("/pkg/bin/a", "a"), _file("/pkg/bin/b", "b"), _file("/etc/c", "c", package="")]


def _ids(findings: list[Any]) -> list[str]:
    return [str(f.id) for f in findings]


def test_incremental_blocks_apply_in_order_and_each_kind_is_a_finding() -> None:
    files = FileSystemState()
    files.apply(_dossier([_block(0, BASE)]), report=False)
    changes = files.apply(_dossier([
        _block(1, [_file("/pkg/bin/a", "A", "contents-modified")]),
        _block(2, [_file("/pkg/bin/b", "b", "deleted"), _file("/new", "n", package="")]),
        _block(3, [_file("/etc/c", "c", "meta-data-modified", mode=0o600, package="")]),
    ]))
    assert _ids(changes) == ["drift.file.modified", "drift.file.deleted", "drift.file.created",
                             "drift.file.metadata_changed"]
    assert changes[0].before["digest"] == _digest("a") and changes[0].after["digest"] == _digest("A")
    assert changes[3].before["meta"]["mode"] == 0o644 and changes[3].after["meta"]["mode"] == 0o600
    assert set(files.files(NODE) or {}) == {"/pkg/bin/a", "/etc/c", "/new"}


def test_a_gap_in_block_numbers_is_a_finding_and_the_state_becomes_unknown() -> None:
    files = FileSystemState()
    files.apply(_dossier([_block(0, BASE), _block(1, [])]), report=False)
    changes = files.apply(_dossier([_block(3, [_file("/pkg/bin/a", "A", "contents-modified")])]))
    assert _ids(changes) == ["drift.file.block_gap"]
    assert (changes[0].before, changes[0].after) == (2, 3)
    assert files.files(NODE) is None  # never guessed
    later = files.apply(_dossier([_block(4, [_file("/x", "x")])]))
    assert later == []  # still unknown, already reported
    # A new full snapshot restores a known state, compared against nothing known: no drift.
    assert files.apply(_dossier([_block(0, BASE)])) == []
    assert set(files.files(NODE) or {}) == {"/pkg/bin/a", "/pkg/bin/b", "/etc/c"}


def test_increments_without_a_baseline_and_repeated_blocks() -> None:
    files = FileSystemState()
    assert _ids(files.apply(_dossier([_block(5, [])]))) == ["drift.file.no_baseline"]
    files = FileSystemState()
    files.apply(_dossier([_block(0, BASE), _block(1, [])]), report=False)
    assert _ids(files.apply(_dossier([_block(1, [])]))) == ["drift.file.block_repeated"]


def test_full_snapshot_against_full_snapshot() -> None:
    before = Evidence("a", _dossier([_block(0, BASE)]), True)
    changed = [_file("/pkg/bin/a", "A"), _file("/etc/c", "c", mode=0o600, package=""), _file("/d", "d")]
    after = Evidence("b", _dossier([_block(0, changed)]), True)
    assert sorted(_ids(diff_evidence(before, after))) == sorted([
        "drift.file.modified", "drift.file.metadata_changed", "drift.file.created", "drift.file.deleted"])


def test_package_commit_reboot_hardware_and_item_drift() -> None:
    package = {"name": "p", "version": "1", "arch": "x86_64", "install-fingerprint": "a" * 64,
               "runtime-fingerprint": "a" * 64}
    commit = {"commit-id": "1000000001", "user-id": "admin", "line": "", "client-name": "CLI",
              "time": "Mon Jan  5 10:00:00 2027", "label": "", "comment": ""}
    part = {"name": "0/FT0", "descr": "fan", "pid": "FAN", "vid": "V01", "sn": "SAL1"}
    before = _dossier([_block(0, BASE)], packages=[package], rollback_history=[commit],
                      system_inventory=[part], reboot_history={NODE: []})
    after = copy.deepcopy(before)
    after["packages"]["packages"][0].update(version="2", **{"runtime-fingerprint": "b" * 64})
    after["rollback-history"]["rollback-history"].insert(0, dict(commit, **{"commit-id": "1000000002",
                                                                            "client-name": "Rollback"}))
    after["system-inventory"]["system-inventory"][0]["sn"] = "SAL2"
    after["reboot-history"]["reboot-history"][NODE].append(
        {"no": 1, "time": "Mon Jan  5 11:00:00 2027", "cause-code": "0x1", "reason": "Cause: reload"})
    after["version"] = {"result-code": "Timeout"}
    ids = _ids(diff_evidence(Evidence("a", before, True), Evidence("b", after, True)))
    assert ids.count("drift.package.version_changed") == 1
    assert "drift.package.runtime_mismatch" in ids
    assert "drift.config.rollback" in ids and "drift.hardware.part_swapped" in ids
    assert "drift.reboot.new" in ids
    assert "drift.software.version_changed" not in ids  # unknown after: not reported as a change


def test_certificate_drift_and_unverified_inputs() -> None:
    dossier = _dossier([_block(0, BASE)])
    a = Evidence("a", dossier, True, leaf_sha256="1", root_sha256="r")
    assert _ids(diff_evidence(a, Evidence("b", dossier, True, leaf_sha256="2", root_sha256="r"))) == \
        ["drift.cert.leaf_rekeyed"]
    replaced = diff_evidence(a, Evidence("b", None, False, leaf_sha256="3", root_sha256="s"))
    assert _ids(replaced) == ["drift.cert.root_changed", "drift.content.not_compared"]
    # Content a verification did not vouch for is never compared (it only ever comes from a verdict).
    unverified = _ids(diff_evidence(a, Evidence("b", dossier, False)))
    assert "drift.content.not_compared" in unverified and "drift.hardware.part_swapped" not in unverified


def _write(path: Path, text: str) -> Path:
    path.write_text(text, "utf-8")
    return path


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}", "format: trust-dossier/policy/1\nrules: {}\n"])
def test_an_empty_policy_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(PolicyError, match="empty|non-empty"):
        load_policy(_write(tmp_path / "p.yaml", text))


def test_unreadable_or_invalid_policies_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match="not readable YAML"):
        load_policy(_write(tmp_path / "bad.yaml", "rules: [unclosed\n"))
    with pytest.raises(PolicyError, match="level"):
        load_policy(_write(tmp_path / "lvl.yaml", "format: trust-dossier/policy/1\nrules:\n  secure-boot: {level: maybe}\n"))
    with pytest.raises(PolicyError, match="provider 'acme-rim'"):
        load_policy(_write(tmp_path / "rim.yaml", "format: trust-dossier/policy/1\nrules:\n  reference-values:"
                                                  " {level: enforce, provider: acme-rim, file: rim.json}\n"))


def test_known_good_lists_from_csv_and_json(tmp_path: Path) -> None:
    hex_a = hashlib.sha256(b"a").hexdigest()
    _write(tmp_path / "good.csv", f"path,algorithm,digest\n/pkg/bin/a,sha256,{hex_a}\n# comment\n")
    _write(tmp_path / "good.json", json.dumps({"files": [{"path": "/etc/c", "algorithm": "SHA-256",
                                                          "digest": _digest("c")}]}))
    policy = load_policy(_write(tmp_path / "policy.yaml", "format: trust-dossier/policy/1\nrules:\n"
                                "  known-good-files: {level: enforce, lists: [good.csv, good.json]}\n"))
    assert policy.known_good.check("/pkg/bin/a", "SHA256", _digest("a")) is True
    assert policy.known_good.check("/etc/c", "SHA256", _digest("x")) is False
    assert policy.known_good.check("/unlisted", "SHA256", _digest("x")) is None
    with pytest.raises(PolicyError, match="line 2: expected 3 columns"):
        load_hash_list(_write(tmp_path / "bad.csv", "path,algorithm,digest\n/a,sha256\n"))
    with pytest.raises(PolicyError, match="empty"):
        load_hash_list(_write(tmp_path / "empty.json", ""))
    # Appraisal: a file whose digest differs from its known-good one is contraindicated.
    files = FileSystemState()
    tampered = _dossier([_block(0, [_file("/pkg/bin/a", "evil"), _file("/etc/c", "c", package="")])])
    files.apply(tampered, report=False)
    result = appraise(Evidence("now", tampered, True), [], policy, device="r1", files=files)
    assert result.status is Status.CONTRAINDICATED
    assert [str(f.id) for f in result.findings] == ["appraisal.file.hash_mismatch"]
    assert result.findings[0].subject == "/pkg/bin/a"
    jsonschema.validate(result.to_json(), schemas.load("appraisal"))


def test_missing_evidence_is_never_affirming() -> None:
    policy = AppraisalPolicy.from_document({"format": "trust-dossier/policy/1",
                                   "rules": {"secure-boot": {"level": "enforce"},
                                             "known-good-files": {"level": "warn", "files": [
                                                 {"path": "/a", "algorithm": "sha256", "digest": _digest("a")}]}}})
    dossier = _dossier([])
    dossier.pop("filesystem-inventory")
    result = appraise(Evidence("now", dossier, True), [], policy, device="r1", files=FileSystemState())
    assert result.status is Status.WARNING
    assert {str(f.id) for f in result.findings} == {"appraisal.evidence_missing"}
    untrusted = appraise(Evidence("now", None, False, reasons=["signature.invalid"]), [], policy, device="r1")
    assert untrusted.status is Status.CONTRAINDICATED
    assert untrusted.vector["boot"] is Status.NONE  # nothing in an untrusted envelope is looked at


def _kgv_policy(tmp_path: Path, hashes: list[str], *, unsigned: bool) -> Path:
    kgv = {"header": {"version": "1"}, "bulkHash": [{"dtype": "osimage", "biv_hash": "AB" * 32,
                                                     "filename": "xr.bin",
                                                     "pkg": [{"biv_hash": h, "filename": f"p{i}.pkg"}
                                                             for i, h in enumerate(hashes)]}]}
    _write(tmp_path / "kgv.json", json.dumps(kgv))
    return _write(tmp_path / "kgv-policy.yaml", "format: trust-dossier/policy/1\nrules:\n  reference-values:\n"
                  "    {level: enforce, provider: cisco-kgv, file: kgv.json"
                  + (", allow-unsigned: true}\n" if unsigned else "}\n"))


def test_cisco_kgv_reference_values(tmp_path: Path) -> None:
    packages = [{"name": n, "version": "1", "arch": "x86_64", "install-fingerprint": h * 64,
                 "runtime-fingerprint": h * 64} for n, h in (("p", "a"), ("q", "b"))]
    dossier = _dossier([], packages=packages)
    # Not authenticated and not explicitly allowed: refused when the policy loads.
    with pytest.raises(PolicyError, match="no detached signature"):
        load_policy(_kgv_policy(tmp_path, ["A" * 64], unsigned=False))
    both = load_policy(_kgv_policy(tmp_path, ["A" * 64, "B" * 64], unsigned=True))
    assert appraise(Evidence("now", dossier, True), [], both, device="r1").status is Status.AFFIRMING
    one = load_policy(_kgv_policy(tmp_path, ["A" * 64], unsigned=True))
    result = appraise(Evidence("now", dossier, True), [], one, device="r1")
    assert result.status is Status.CONTRAINDICATED and result.vector["executables"] is Status.CONTRAINDICATED
    assert [(str(f.id), f.subject) for f in result.findings] == [("appraisal.reference_values.mismatch", "cisco-kgv")]
    assert "package q" in result.findings[0].message


# rule: (its parameters, how the dossier leaves out what the rule reads); a newer or older
# release may omit a member the schema lists, and the verifier then only warns.
_PCR = {"index": 0, "algorithm": "sha256", "value": "00" * 32}
_MISSING_MEMBERS: dict[str, tuple[dict[str, Any], Any]] = {
    "package-integrity": ({}, lambda d: d.update(packages={"result-code": "Success", "packages": [
        {"name": "ncs5500-xr", "version": "7.3.2", "arch": "x86_64"}]})),
    "secure-boot": ({}, lambda d: d.update({"system-integrity-snapshot": {
        "result-code": "Success", "system-integrity-snapshot": {NODE: {"pcrs": [_PCR], "ima-aggregate": "x"}}}})),
    "boot-measurements": ({}, lambda d: d.update({"system-integrity-snapshot": {
        "result-code": "Success",
        "system-integrity-snapshot": {NODE: {"secure-boot-status": "Enabled", "ima-aggregate": "x"}}}})),
    "reboots": ({"max": 5, "period-days": 7}, lambda d: d.update({"reboot-history": {
        "result-code": "Success", "reboot-history": {NODE: [{"cause": "power"}]}}})),
    "commits": ({"max": 5, "period-days": 1}, lambda d: d.update({"rollback-history": {
        "result-code": "Success", "rollback-history": [{"commit-id": "1000000001", "user-id": "netops"}]}})),
    "known-good-files": ({"files": [{"path": "/pkg/bin/a", "algorithm": "sha256", "digest": _digest("a")}]},
                         None),
}


@pytest.mark.parametrize("rule", sorted(_MISSING_MEMBERS))
def test_a_rule_whose_member_is_missing_could_not_check(rule: str) -> None:
    """A trusted dossier without the member a rule reads: the rule could not check (warning,
    appraisal.evidence_missing), never affirming, never a violation."""
    params, edit = _MISSING_MEMBERS[rule]
    file = _file("/pkg/bin/a", "a")
    if edit is None:  # a listed file without its digest
        file.pop("digest")
    dossier = _dossier([_block(0, [file])])
    if edit is not None:
        edit(dossier)
    policy = AppraisalPolicy.from_document({"format": "trust-dossier/policy/1",
                                            "rules": {rule: {"level": "enforce", **params}}})
    files = FileSystemState()
    files.apply(dossier, report=False)
    result = appraise(Evidence("now", dossier, True), [], policy, device="r1", files=files)
    assert result.status is Status.WARNING, [(str(f.id), f.message) for f in result.findings]
    assert [str(f.id) for f in result.findings] == ["appraisal.evidence_missing"], result.findings
    assert f"rule {rule} could not be checked" in result.findings[0].message
    jsonschema.validate(result.to_json(), schemas.load("appraisal"))
