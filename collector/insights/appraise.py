"""Appraisal: a dossier (and its drift since the last trusted one) against a policy, giving an
EAR-style result — an overall status and a trustworthiness vector by category.

The checklist:
  (1) identity: an untrusted envelope is contraindicated, and nothing else in it is looked at
      (its content proves nothing); a changed root, a certificate about to expire;
  (2) each rule of the policy that is not `skip`, in its category: a violation makes the
      category contraindicated (`enforce`) or warning (`warn`);
  (3) a rule whose evidence is missing (item not collected or failed, a member the rule reads
      absent, file history broken) makes its category warning: "could not check" is never
      affirming (a newer or older release may leave out what the schema lists);
  (4) the overall status is the worst category.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .diff import Evidence, FileSystemState, _payload, software_version
from .findings import CATEGORIES, AppraisalId, Category, DriftId, Finding, Severity, Status
from .policy import AppraisalPolicy, Level, Rule

__all__ = ["APPRAISAL_FORMAT", "Appraisal", "appraise"]

APPRAISAL_FORMAT = "trust-dossier/appraisal/1"
#: One rule can flag thousands of files; the result lists the first ones and counts the rest.
MAX_FINDINGS_PER_RULE = 50
#: Matches the verifier's alert threshold: a certificate this close to expiry needs action now.
EXPIRY_WARNING_DAYS = 7
_XR_TIME = "%a %b %d %H:%M:%S %Y"

_RULE_CATEGORY = {
    "software-versions": Category.EXECUTABLES,
    "required-packages": Category.EXECUTABLES,
    "forbidden-packages": Category.EXECUTABLES,
    "package-integrity": Category.EXECUTABLES,
    "reference-values": Category.EXECUTABLES,
    "known-good-files": Category.FILE_SYSTEM,
    "unexplained-file-changes": Category.FILE_SYSTEM,
    "secure-boot": Category.BOOT,
    "boot-measurements": Category.BOOT,
    "runtime-measurements": Category.EXECUTABLES,
    "reboots": Category.BOOT,
    "hardware-changes": Category.HARDWARE,
    "commits": Category.CONFIGURATION,
    "commit-users": Category.CONFIGURATION,
    "certificates": Category.IDENTITY,
}


@dataclass
class Appraisal:
    """The result for one collection: status, vector, findings, and the drift it was based on."""

    device: str
    envelope: str
    status: Status
    vector: dict[str, Status]
    findings: list[Finding] = field(default_factory=list)
    drift: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)
    received: str | None = None
    appraised_at: str | None = None
    previous: str | None = None

    def to_json(self, *, max_drift: int | None = None) -> dict[str, Any]:
        drift = self.drift if max_drift is None else self.drift[:max_drift]
        return {
            "format": APPRAISAL_FORMAT,
            "device": self.device,
            "envelope": self.envelope,
            "received": self.received,
            "appraised_at": self.appraised_at,
            "previous": self.previous,
            "status": str(self.status),
            "trust_vector": {str(k): str(v) for k, v in self.vector.items()},
            "policy": self.policy,
            "skipped_rules": list(self.skipped),
            "findings": [f.to_json() for f in self.findings],
            "drift_counts": drift_counts(self.drift),
            "drift": [f.to_json() for f in drift],
            "drift_truncated": len(self.drift) - len(drift),
        }


def drift_counts(drift: Sequence[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in drift:
        counts[str(finding.id)] = counts.get(str(finding.id), 0) + 1
    return dict(sorted(counts.items()))


class _Result:
    def __init__(self, policy: AppraisalPolicy) -> None:
        self.policy = policy
        self.vector: dict[Category, Status] = {c: Status.NONE for c in CATEGORIES}
        self.findings: list[Finding] = []
        self._per_rule: dict[str, int] = {}

    def touch(self, category: Category) -> None:
        if self.vector[category] is Status.NONE:
            self.vector[category] = Status.AFFIRMING

    def raise_to(self, category: Category, status: Status) -> None:
        self.vector[category] = Status.worst([self.vector[category], status])

    def violate(self, rule: Rule, finding_id: str, subject: str, message: str,
                expected: Any = None, found: Any = None) -> None:
        category = _RULE_CATEGORY[rule.name]
        count = self._per_rule.get(rule.name, 0) + 1
        self._per_rule[rule.name] = count
        enforce = rule.level is Level.ENFORCE
        self.raise_to(category, Status.CONTRAINDICATED if enforce else Status.WARNING)
        if count <= MAX_FINDINGS_PER_RULE:
            self.findings.append(Finding(finding_id, Severity.ERROR if enforce else Severity.WARNING,
                                         category, subject, f"[{rule.name}: {rule.level}] {message}",
                                         expected, found))

    def missing(self, rule: Rule, what: str) -> None:
        category = _RULE_CATEGORY[rule.name]
        self.raise_to(category, Status.WARNING)
        self.findings.append(Finding(AppraisalId.EVIDENCE_MISSING, Severity.WARNING, category, rule.name,
                                     f"rule {rule.name} could not be checked: {what}",
                                     "the evidence the rule needs", what))

    def note_truncation(self) -> None:
        for name, count in self._per_rule.items():
            if count > MAX_FINDINGS_PER_RULE:
                rule = self.policy.rules[name]
                category = _RULE_CATEGORY[name]
                self.findings.append(Finding(AppraisalId.TRUNCATED, Severity.INFO, category, name,
                                             f"rule {name}: {count - MAX_FINDINGS_PER_RULE} more "
                                             f"violations not listed ({count} in all, level {rule.level})",
                                             None, count))


def _xr_time(text: Any) -> float | None:
    try:
        return dt.datetime.strptime(str(text), _XR_TIME).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def _name_of(package: Any) -> str:
    return str(package.get("name")) if isinstance(package, Mapping) else repr(package)[:40]


def _ids(drift: Sequence[Finding], *ids: str) -> list[Finding]:
    wanted = set(ids)
    return [f for f in drift if f.id in wanted]


def appraise(current: Evidence, drift: Sequence[Finding], policy: AppraisalPolicy, *, device: str,
             files: FileSystemState | None = None, packages: Mapping[str, str] | None = None,
             has_previous: bool = False,
             previous: str | None = None, now: dt.datetime | None = None) -> Appraisal:
    """Appraise `current` (with its `drift` since the previous trusted collection) against `policy`.

    `files` is the file state including `current` (needed for known-good file hashes).
    """
    result = _Result(policy)
    active = {name: rule for name, rule in policy.rules.items() if rule.level is not Level.SKIP}
    skipped = sorted(name for name, rule in policy.rules.items() if rule.level is Level.SKIP)
    # (1) identity
    result.touch(Category.IDENTITY)
    if not current.has_content:
        result.raise_to(Category.IDENTITY, Status.CONTRAINDICATED)
        result.findings.append(Finding(AppraisalId.IDENTITY_UNTRUSTED, Severity.ERROR, Category.IDENTITY,
                                       current.label, "the output is not trusted, so nothing it says is "
                                       "appraised", "a trusted output",
                                       ", ".join(current.reasons) or "untrusted"))
    for role, days in sorted(current.days_to_expiry.items()):
        if days is not None and days <= EXPIRY_WARNING_DAYS:
            result.raise_to(Category.IDENTITY, Status.WARNING)
            result.findings.append(Finding(AppraisalId.IDENTITY_EXPIRY, Severity.WARNING, Category.IDENTITY,
                                           role, f"the {role} certificate expires in {days} day(s)",
                                           f"more than {EXPIRY_WARNING_DAYS} days", days))
    if "certificates" in active:
        for change in _ids(drift, DriftId.ROOT_CHANGED):
            result.violate(active["certificates"], AppraisalId.IDENTITY_ROOT_CHANGED, "root", change.message,
                           change.before, change.after)
    if current.tpm is not None and current.verified:  # TPM evidence: boot events, IMA files
        from .tpm import appraise_tpm

        skipped += appraise_tpm(current, drift, active, result, files, packages)
    elif current.dossier is not None and current.verified:
        for rule in active.values():
            result.touch(_RULE_CATEGORY[rule.name])
        _executables(current, drift, active, result)
        _file_system(current, drift, active, result, files)
        _boot(current, drift, active, result)
        _configuration(current, drift, active, result, has_previous)
        if "hardware-changes" in active:
            for change in _ids(drift, DriftId.HARDWARE_PART_SWAPPED, DriftId.HARDWARE_PART_ADDED,
                               DriftId.HARDWARE_PART_REMOVED):
                result.violate(active["hardware-changes"], AppraisalId.HARDWARE_CHANGED, change.subject,
                               change.message, change.before, change.after)
            inventory, why = _payload(current.dossier, "system-inventory")
            if not isinstance(inventory, list):
                result.missing(active["hardware-changes"], f"system-inventory: {why or 'malformed'}")
    elif current.has_content:  # IOS XE: signed, PCR-bound boot and OS measurements
        skipped += _measurements(current, drift, active, result)
    result.note_truncation()
    status = Status.worst(list(result.vector.values()))
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    return Appraisal(device=device, envelope=current.label, status=status,
                     vector={str(k): v for k, v in result.vector.items()}, findings=result.findings,
                     drift=list(drift), skipped=skipped, policy=policy.to_json(),
                     received=current.received, appraised_at=stamp, previous=previous)


#: The rules IOS XE integrity measurements can answer; the others ask for what only a dossier
#: holds (packages, files, reboots, commits, hardware) and are not applicable to such evidence.
_MEASUREMENT_RULES = ("boot-measurements", "reference-values")


def _measurements(current: Evidence, drift: Sequence[Finding], active: Mapping[str, Rule], result: _Result) -> list[str]:
    """Appraise IOS XE measurements; returns the active rules that do not apply to them."""
    for name in _MEASUREMENT_RULES:
        if name in active:
            result.touch(_RULE_CATEGORY[name])
    if "boot-measurements" in active and not _ids(drift, DriftId.SOFTWARE_VERSION_CHANGED):
        for change in _ids(drift, DriftId.BOOT_MEASUREMENT_CHANGED):
            result.violate(active["boot-measurements"], AppraisalId.PCR_UNEXPLAINED_CHANGE, change.subject,
                           f"{change.message} although the software release did not", change.before, change.after)
    _reference_values(current, active, result)
    return sorted(f"{name} (not in IOS XE evidence)" for name in active if name not in _MEASUREMENT_RULES)


def _reference_values(current: Evidence, active: Mapping[str, Rule], result: _Result) -> None:
    """The `reference-values` rule: the policy's provider (e.g. Cisco's KGV) judges the evidence."""
    if "reference-values" in active and result.policy.reference_checker is not None:
        rule = active["reference-values"]
        violations = result.policy.reference_checker(current)
        if violations is None:
            result.missing(rule, f"the evidence {rule.params['provider']} compares is missing")
        for message in violations or []:
            result.violate(rule, AppraisalId.REFERENCE_VALUES, rule.params["provider"], message)


def _executables(current: Evidence, drift: Sequence[Finding], active: Mapping[str, Rule], result: _Result) -> None:
    dossier = current.dossier
    assert dossier is not None
    if "software-versions" in active:
        rule = active["software-versions"]
        version = software_version(dossier)
        if version is None:
            result.missing(rule, "the `version` item is missing or unreadable")
        elif version not in rule.params["allowed"]:
            result.violate(rule, AppraisalId.SOFTWARE_NOT_ALLOWED, "version",
                           f"IOS XR {version} is not an allowed release",
                           ", ".join(rule.params["allowed"]), version)
    packages, why = _payload(dossier, "packages")
    package_rules = [active[n] for n in ("required-packages", "forbidden-packages", "package-integrity") if n in active]
    if package_rules and not isinstance(packages, list):
        for rule in package_rules:
            result.missing(rule, f"packages: {why or 'malformed'}")
        packages = None
    if packages is not None:
        names = {p.get("name") for p in packages if isinstance(p, Mapping)}
        if "required-packages" in active:
            rule = active["required-packages"]
            for name in rule.params["packages"]:
                if name not in names:
                    result.violate(rule, AppraisalId.PACKAGE_MISSING, name, f"required package {name} is not installed",
                                   name, None)
        if "forbidden-packages" in active:
            rule = active["forbidden-packages"]
            for name in rule.params["packages"]:
                if name in names:
                    result.violate(rule, AppraisalId.PACKAGE_FORBIDDEN, name, f"forbidden package {name} is installed",
                                   None, name)
        if "package-integrity" in active:
            rule = active["package-integrity"]
            unreadable = [package for package in packages if not isinstance(package, Mapping)
                          or not package.get("install-fingerprint") or not package.get("runtime-fingerprint")]
            if unreadable:
                result.missing(rule, f"{len(unreadable)} package(s) without both fingerprints, e.g. "
                                     f"{_name_of(unreadable[0])}")
            for package in packages:
                if not isinstance(package, Mapping) or not package.get("install-fingerprint"):
                    continue  # reported above
                if package.get("runtime-fingerprint") != package.get("install-fingerprint"):
                    result.violate(rule, AppraisalId.PACKAGE_TAMPERED, str(package.get("name")),
                                   f"package {package.get('name')}'s files changed after installation "
                                   "(runtime fingerprint differs from install-time fingerprint)",
                                   package.get("install-fingerprint"), package.get("runtime-fingerprint"))
    _reference_values(current, active, result)


def _file_system(current: Evidence, drift: Sequence[Finding], active: Mapping[str, Rule], result: _Result,
                 files: FileSystemState | None) -> None:
    rules = [active[n] for n in ("known-good-files", "unexplained-file-changes") if n in active]
    if not rules:
        return
    broken = _ids(drift, DriftId.FILE_BLOCK_GAP, DriftId.FILE_NO_BASELINE)
    for rule in rules:
        for gap in broken:
            result.raise_to(Category.FILE_SYSTEM, Status.WARNING)
            result.findings.append(Finding(AppraisalId.FILE_HISTORY_GAP, Severity.WARNING, Category.FILE_SYSTEM,
                                           gap.subject, f"rule {rule.name}: {gap.message}", gap.before, gap.after))
    if "known-good-files" in active:
        rule = active["known-good-files"]
        nodes = files.nodes if files is not None else {}
        if not nodes:
            result.missing(rule, "no file-system inventory has been collected (add the "
                                 "filesystem-inventory item to the device's items)")
        for node, state in sorted(nodes.items()):
            if state.files is None:
                result.missing(rule, f"the files of {node} are unknown (a block is missing); the next full "
                                     "snapshot restores them")
                continue
            known = result.policy.known_good
            undigested: list[str] = []
            for path, entry in state.files.items():
                if not entry[1] and known.lists(path):
                    undigested.append(path)
                elif known.check(path, entry[0], entry[1]) is False:
                    result.violate(rule, AppraisalId.FILE_HASH_MISMATCH, path,
                                   f"{path} on {node} does not match its known-good digest",
                                   "a known-good digest", {"algorithm": entry[0], "digest": entry[1]})
            if undigested:
                result.missing(rule, f"{len(undigested)} listed file(s) on {node} have no digest, e.g. "
                                     f"{undigested[0]}")
    if "unexplained-file-changes" in active:
        rule = active["unexplained-file-changes"]
        if _ids(drift, DriftId.SOFTWARE_VERSION_CHANGED):
            return  # a new release replaces files wholesale
        upgraded = [f.subject for f in _ids(drift, DriftId.PACKAGE_VERSION_CHANGED, DriftId.PACKAGE_ADDED,
                                              DriftId.PACKAGE_REMOVED)]
        for change in _ids(drift, DriftId.FILE_MODIFIED, DriftId.FILE_DELETED):
            owner = (change.after or change.before or {})
            if owner.get("package-kind") != "rpm":
                continue
            package = str(owner.get("package-name", ""))
            if any(package == name or package.startswith(name + "-") for name in upgraded):
                continue
            result.violate(rule, AppraisalId.FILE_UNEXPLAINED_CHANGE, change.subject,
                           f"{change.message}, but its package {package or '?'} did not change",
                           change.before, change.after)


def _boot(current: Evidence, drift: Sequence[Finding], active: Mapping[str, Rule], result: _Result) -> None:
    dossier = current.dossier
    if "secure-boot" in active:
        rule = active["secure-boot"]
        nodes, why = _payload(dossier, "system-integrity-snapshot")
        if not isinstance(nodes, Mapping) or not nodes:
            result.missing(rule, f"system-integrity-snapshot: {why or 'no nodes'}")
        else:
            for node, content in sorted(nodes.items()):
                status = content.get("secure-boot-status") if isinstance(content, Mapping) else None
                if status is None:
                    result.missing(rule, f"{node} has no secure-boot-status")
                elif str(status).lower() != "enabled":
                    result.violate(rule, AppraisalId.SECURE_BOOT_DISABLED, node,
                                   f"secure boot is {status} on {node}", "Enabled", status)
    if "boot-measurements" in active and not _ids(drift, DriftId.SOFTWARE_VERSION_CHANGED):
        rule = active["boot-measurements"]
        nodes, why = _payload(dossier, "system-integrity-snapshot")
        if not isinstance(nodes, Mapping) or not nodes:
            result.missing(rule, f"system-integrity-snapshot: {why or 'no nodes'}")
        else:
            for node, content in sorted(nodes.items()):
                if not isinstance(content, Mapping) or not isinstance(content.get("pcrs"), list):
                    result.missing(rule, f"{node} has no PCR list")
        toggled = {f.subject for f in _ids(drift, DriftId.SECURE_BOOT_CHANGED)}
        for change in _ids(drift, DriftId.PCR_CHANGED):
            if change.subject.rsplit(" PCR ", 1)[0] in toggled:
                continue  # explained by the secure-boot change, which its own rule judges
            result.violate(rule, AppraisalId.PCR_UNEXPLAINED_CHANGE, change.subject,
                           f"{change.message} although the software release did not", change.before, change.after)
    if "reboots" in active:
        rule = active["reboots"]
        history, why = _payload(dossier, "reboot-history")
        start = dossier.get("collection-start-time") if dossier else None
        if not isinstance(history, Mapping) or not isinstance(start, (int, float)):
            result.missing(rule, f"reboot-history: {why or 'malformed'}")
        else:
            since = start - float(rule.params["period-days"]) * 86400
            for node, entries in sorted(history.items()):
                read = [_xr_time(r.get("time")) if isinstance(r, Mapping) else None for r in entries]
                if None in read:  # an undated reboot might fall in the period: the count is a floor
                    result.missing(rule, f"{read.count(None)} reboot(s) of {node} without a readable time")
                times = [t for t in read if t is not None and since <= t <= start + 60]
                if len(times) > rule.params["max"]:
                    result.violate(rule, AppraisalId.REBOOTS_OVER_LIMIT, node,
                                   f"{node} rebooted {len(times)} times in {rule.params['period-days']} day(s)",
                                   f"at most {rule.params['max']}", len(times))


def _configuration(current: Evidence, drift: Sequence[Finding], active: Mapping[str, Rule], result: _Result,
                   has_previous: bool) -> None:
    dossier = current.dossier
    wanted = [active[n] for n in ("commits", "commit-users") if n in active]
    if not wanted:
        return
    history, why = _payload(dossier, "rollback-history")
    if not isinstance(history, list):
        for rule in wanted:
            result.missing(rule, f"rollback-history: {why or 'malformed'}")
        return
    if "commits" in active:
        rule = active["commits"]
        start = dossier.get("collection-start-time") if dossier else None
        if isinstance(start, (int, float)):
            since = start - float(rule.params["period-days"]) * 86400
            read = [_xr_time(c.get("time")) if isinstance(c, Mapping) else None for c in history]
            if None in read:  # an undated commit might fall in the period: the count is a floor
                result.missing(rule, f"{read.count(None)} commit(s) without a readable time")
            count = sum(1 for t in read if t is not None and since <= t <= start + 60)
            if count > rule.params["max"]:
                result.violate(rule, AppraisalId.COMMITS_OVER_LIMIT, "rollback-history",
                               f"{count} configuration commits in {rule.params['period-days']} day(s)",
                               f"at most {rule.params['max']}", count)
        else:
            result.missing(rule, "the dossier has no collection-start-time to count commits back from")
    if "commit-users" in active:
        rule = active["commit-users"]
        allowed = set(rule.params["allowed"])
        # With a previous collection, judge what is new; the first time, the whole history.
        commits = ([f.after for f in _ids(drift, DriftId.COMMIT_NEW, DriftId.COMMIT_ROLLBACK)]
                   if has_previous else [c for c in history if isinstance(c, Mapping)])
        for commit in commits:
            if commit.get("user-id") not in allowed:
                result.violate(rule, AppraisalId.COMMIT_USER_NOT_ALLOWED, str(commit.get("commit-id")),
                               f"commit {commit.get('commit-id')} by {commit.get('user-id')!r}, who may not "
                               "commit configuration", ", ".join(sorted(allowed)), commit.get("user-id"))
