"""Drift between two dossiers of one device: packages, files, reboots, commits, hardware, boot,
certificates. Every comparison is keyed by name in dicts, so the cost is linear in the size of
the dossiers (20,000 files cost 20,000 dict operations, never a nested loop).

The file-system inventory arrives as a full snapshot (block 0) followed by incremental blocks,
and the collector asks each poll only for blocks newer than the last one it stored. So the file
state at any point is built by applying blocks in order (`FileSystemState.apply`); a missing
block number is its own finding and leaves the node's state unknown until the next full
snapshot, never guessed.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InsightsError
from .findings import Category, DriftId, Finding, Severity

__all__ = ["Evidence", "FileSystemState", "diff_dossiers", "diff_evidence", "diff_measurements", "item_payload",
           "software_version"]

FS_ITEM = "filesystem-inventory"
#: Metadata fields compared for `meta-data-modified`; atime changes on every read, so it is noise.
COMPARED_META = ("uid", "gid", "inode", "size", "mode", "mtime", "ctime")
_VERSION_LINE = re.compile(r"Version\s*:?\s*([0-9][0-9A-Za-z.\-]*)")
_ROLLBACK = re.compile(r"rollback", re.IGNORECASE)


@dataclass
class Evidence:
    """One collection of a device as drift and appraisal see it: what its verification returned
    (`Evidence.from_verdict`), never the stored bytes read again.

    `dossier` (IOS XR) and `measurements` (IOS XE integrity) are set only when the output is
    trusted (its content is never compared otherwise); `verified` says whether a verifier proved
    it. Certificate fingerprints are those the output presents, trusted or not, so a replaced
    root shows up as drift.
    """

    label: str
    dossier: dict[str, Any] | None
    verified: bool
    leaf_sha256: str | None = None
    root_sha256: str | None = None
    received: str | None = None
    reasons: list[str] = field(default_factory=list)
    days_to_expiry: dict[str, int] = field(default_factory=dict)
    #: IOS XE: the boot and OS measurements the signature and PCRs bind (`verifier.profiles`).
    measurements: list[Any] = field(default_factory=list)
    #: TPM evidence (verifier/tpm/): the kind (`xr-tpm-boot-log`, ...) and the nodes its quote
    #: binds (their boot events or IMA files), set only when trusted.
    tpm_kind: str | None = None
    tpm: list[dict[str, Any]] | None = None

    @classmethod
    def from_verdict(cls, verdict: Any, *, label: str, received: str | None = None) -> Evidence:
        """The evidence a `verifier.Verdict` gives: its dossier or measurements when trusted,
        the certificates the output presents, its error ids as reasons."""
        from verifier.chain import fingerprint

        trusted = bool(verdict.trusted)
        root = getattr(verdict, "presented_root", None) or verdict.root
        measurements = [m for m in getattr(verdict, "measurements", []) if m.bound] if trusted else []
        profile = str(getattr(verdict, "profile", "") or "")
        tpm_kind = profile if profile.startswith("xr-tpm-") else None
        tpm = list(getattr(verdict, "authenticated", {}).get("nodes", [])) if tpm_kind and trusted else None
        return cls(label=label, dossier=verdict.dossier if trusted else None, verified=trusted,
                   leaf_sha256=fingerprint(verdict.leaf) if verdict.leaf is not None else None,
                   root_sha256=fingerprint(root) if root is not None else None, received=received,
                   reasons=[str(f.id) for f in verdict.errors], days_to_expiry=dict(verdict.days_to_expiry or {}),
                   measurements=measurements, tpm_kind=tpm_kind, tpm=tpm)

    @property
    def has_content(self) -> bool:
        """Whether a trusted output gave content to appraise (a dossier, measurements or TPM evidence)."""
        return self.verified and (self.dossier is not None or bool(self.measurements) or self.tpm is not None)


def _payload(dossier: Mapping[str, Any] | None, item: str) -> tuple[Any, str | None]:
    """(payload, None) when the item was collected; (None, why not) otherwise."""
    if dossier is None:
        return None, "no trusted dossier"
    entry = dossier.get(item)
    if entry is None:
        return None, "not collected"
    if not isinstance(entry, Mapping) or entry.get("result-code") != "Success":
        code = entry.get("result-code") if isinstance(entry, Mapping) else "malformed"
        return None, f"result-code {code}"
    return entry.get(item), None


def item_payload(dossier: Mapping[str, Any] | None, item: str) -> tuple[Any, str | None]:
    """A dossier item's payload: (payload, None) when it was collected, (None, why not) otherwise."""
    return _payload(dossier, item)


def software_version(dossier: Mapping[str, Any] | None) -> str | None:
    """The IOS XR release from `show version` (None when the item is missing)."""
    text, _ = _payload(dossier, "version")
    if not isinstance(text, str):
        return None
    match = _VERSION_LINE.search(text)
    return match.group(1) if match else None


# --- file system ---------------------------------------------------------------------------------

_FileEntry = tuple[str, str, tuple[Any, ...], str, str]  # algorithm, digest, meta, package kind, name


_META_FIELDS = operator.itemgetter(*COMPARED_META)


def _entry(file: Mapping[str, Any]) -> _FileEntry:
    try:  # the schema guarantees these members in a trusted dossier: the fast path
        digest = file["digest"]
        return (digest["algorithm"], digest["digest-value"], _META_FIELDS(file["meta"]),
                file["package-kind"], file["package-name"])
    except (KeyError, TypeError):
        meta = file.get("meta") or {}
        digest = file.get("digest") or {}
        return (str(digest.get("algorithm", "")), str(digest.get("digest-value", "")),
                tuple(meta.get(name) for name in COMPARED_META), str(file.get("package-kind", "")),
                str(file.get("package-name", "")))


def _describe(entry: _FileEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {"algorithm": entry[0], "digest": entry[1], "meta": dict(zip(COMPARED_META, entry[2])),
            "package-kind": entry[3], "package-name": entry[4]}


@dataclass
class NodeFiles:
    """One node's files as of `last_block`; `files` is None while the state is unknown."""

    last_block: int | None = None
    files: dict[str, _FileEntry] | None = None


class FileSystemState:
    """Files per node, built by applying snapshot blocks in order."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeFiles] = {}

    def to_json(self) -> dict[str, Any]:
        return {node: {"last_block": state.last_block,
                       "files": None if state.files is None else {p: [e[0], e[1], list(e[2]), e[3], e[4]]
                                                                  for p, e in state.files.items()}}
                for node, state in self.nodes.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileSystemState:
        """Rebuild from `to_json()`; raises InsightsError when the data is not such a state."""
        state = cls()
        try:
            for node, content in data.items():
                files = content["files"]
                state.nodes[node] = NodeFiles(
                    content["last_block"],
                    None if files is None else {p: (e[0], e[1], tuple(e[2]), e[3], e[4]) for p, e in files.items()})
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise InsightsError(f"expected a saved file-system state, found something else ({exc!r})") from None
        return state

    def files(self, node: str) -> dict[str, _FileEntry] | None:
        state = self.nodes.get(node)
        return None if state is None else state.files

    def apply(self, dossier: Mapping[str, Any] | None, *, report: bool = True) -> list[Finding]:
        """Apply a dossier's snapshot blocks; returns the changes (empty when `report` is false)."""
        payload, _ = _payload(dossier, FS_ITEM)
        changes: list[Finding] = []
        if not isinstance(payload, Mapping):
            return changes
        for node, content in payload.items():
            snapshots = content.get("snapshots") if isinstance(content, Mapping) else None
            blocks = sorted((s for s in snapshots or [] if isinstance(s, Mapping)),
                            key=lambda s: s.get("snapshot-block-no", -1))
            state = self.nodes.setdefault(node, NodeFiles())
            for block in blocks:
                self._apply_block(node, state, block, changes if report else None)
        return changes

    def _apply_block(self, node: str, state: NodeFiles, block: Mapping[str, Any],
                     changes: list[Finding] | None) -> None:
        number = block.get("snapshot-block-no")
        files = block.get("files") or []
        if block.get("snapshot-type") == "full":
            fresh = {f["name"]: _entry(f) for f in files if isinstance(f, Mapping) and "name" in f}
            if state.files is not None and changes is not None:
                _full_against_full(node, state.files, fresh, changes)
            state.files, state.last_block = fresh, number
            return
        if state.last_block is not None and isinstance(number, int) and number <= state.last_block:
            if changes is not None:
                changes.append(Finding(DriftId.FILE_BLOCK_REPEATED, Severity.INFO, Category.FILE_SYSTEM, node,
                                       f"block {number} on {node} was already applied; ignored",
                                       state.last_block, number))
            return
        if state.files is None or state.last_block is None or number != state.last_block + 1:
            if changes is not None:
                if state.last_block is None:
                    changes.append(Finding(
                        DriftId.FILE_NO_BASELINE, Severity.WARNING, Category.FILE_SYSTEM, node,
                        f"incremental block {number} on {node} has no full snapshot before it; its "
                        "changes cannot be placed, so the node's files are unknown until block 0 "
                        "is collected again", "a full snapshot (block 0) first", number))
                elif state.files is not None:
                    changes.append(Finding(
                        DriftId.FILE_BLOCK_GAP, Severity.WARNING, Category.FILE_SYSTEM, node,
                        f"snapshot blocks missing on {node}: expected block {state.last_block + 1}, "
                        f"found {number}; changes in the missing blocks are unknown, so the node's "
                        "files are unknown until the next full snapshot",
                        state.last_block + 1, number))
            state.files = None  # unknown from here on: never paper over a gap
            state.last_block = number if isinstance(number, int) else state.last_block
            return
        current = state.files
        for file in files:
            if not isinstance(file, Mapping) or "name" not in file:
                continue
            path, kind = file["name"], file.get("change-kind")
            before = current.get(path)
            if kind == "deleted":
                current.pop(path, None)
                if changes is not None:
                    changes.append(Finding(DriftId.FILE_DELETED, Severity.WARNING, Category.FILE_SYSTEM, path,
                                           f"{path} was deleted on {node}", _describe(before), None))
                continue
            after = _entry(file)
            current[path] = after
            if changes is None:
                continue
            if kind == "created":
                changes.append(Finding(DriftId.FILE_CREATED, Severity.INFO, Category.FILE_SYSTEM, path,
                                       f"{path} was created on {node}", _describe(before), _describe(after)))
            elif kind == "contents-modified":
                changes.append(Finding(DriftId.FILE_MODIFIED, Severity.WARNING, Category.FILE_SYSTEM, path,
                                       f"{path} changed contents on {node}", _describe(before),
                                       _describe(after)))
            else:
                changes.append(Finding(DriftId.FILE_METADATA_CHANGED, Severity.INFO, Category.FILE_SYSTEM,
                                       path, f"{path} changed metadata on {node}", _describe(before),
                                       _describe(after)))
        state.last_block = number


def _full_against_full(node: str, before: dict[str, _FileEntry], after: dict[str, _FileEntry],
                       changes: list[Finding]) -> None:
    for path, new in after.items():
        old = before.get(path)
        if old is None:
            changes.append(Finding(DriftId.FILE_CREATED, Severity.INFO, Category.FILE_SYSTEM, path,
                                   f"{path} was created on {node}", None, _describe(new)))
        elif old[:2] != new[:2]:
            changes.append(Finding(DriftId.FILE_MODIFIED, Severity.WARNING, Category.FILE_SYSTEM, path,
                                   f"{path} changed contents on {node}", _describe(old), _describe(new)))
        elif old != new:
            changes.append(Finding(DriftId.FILE_METADATA_CHANGED, Severity.INFO, Category.FILE_SYSTEM, path,
                                   f"{path} changed metadata on {node}", _describe(old), _describe(new)))
    for path, old in before.items():
        if path not in after:
            changes.append(Finding(DriftId.FILE_DELETED, Severity.WARNING, Category.FILE_SYSTEM, path,
                                   f"{path} was deleted on {node}", _describe(old), None))


# --- everything but files --------------------------------------------------------------------


def _unavailable(item: str, category: Category, why_before: str | None, why_after: str | None) -> Finding:
    return Finding(DriftId.ITEM_UNAVAILABLE, Severity.WARNING, category, item,
                   f"{item} cannot be compared: before {why_before or 'collected'}, after "
                   f"{why_after or 'collected'}", why_before, why_after)


def _packages(before: Any, after: Any, out: list[Finding]) -> None:
    old = {p["name"]: p for p in before if isinstance(p, Mapping) and "name" in p}
    new = {p["name"]: p for p in after if isinstance(p, Mapping) and "name" in p}
    for name, package in new.items():
        previous = old.get(name)
        if previous is None:
            out.append(Finding(DriftId.PACKAGE_ADDED, Severity.INFO, Category.EXECUTABLES, name,
                               f"package {name} {package.get('version')} was installed", None,
                               package.get("version")))
        elif previous.get("version") != package.get("version"):
            out.append(Finding(DriftId.PACKAGE_VERSION_CHANGED, Severity.INFO, Category.EXECUTABLES, name,
                               f"package {name} changed version", previous.get("version"),
                               package.get("version")))
        mismatch = package.get("runtime-fingerprint") != package.get("install-fingerprint")
        was_same = previous is not None and previous.get("runtime-fingerprint") == package.get("runtime-fingerprint")
        if mismatch and not was_same:
            out.append(Finding(DriftId.PACKAGE_RUNTIME_MISMATCH, Severity.ERROR, Category.EXECUTABLES, name,
                               f"package {name}'s runtime fingerprint differs from its install-time "
                               "fingerprint: its files changed after installation",
                               package.get("install-fingerprint"), package.get("runtime-fingerprint")))
    for name, package in old.items():
        if name not in new:
            out.append(Finding(DriftId.PACKAGE_REMOVED, Severity.WARNING, Category.EXECUTABLES, name,
                               f"package {name} was removed", package.get("version"), None))


def _reboots(before: Any, after: Any, out: list[Finding]) -> None:
    for node, entries in (after or {}).items():
        # History is renumbered when it is trimmed, so a reboot is known by its time and cause.
        seen = {(r.get("time"), r.get("cause-code")) for r in (before or {}).get(node, []) if isinstance(r, Mapping)}
        for reboot in entries:
            if isinstance(reboot, Mapping) and (reboot.get("time"), reboot.get("cause-code")) not in seen:
                out.append(Finding(DriftId.REBOOT_NEW, Severity.INFO, Category.BOOT, node,
                                   f"{node} rebooted at {reboot.get('time')}: {reboot.get('reason')}",
                                   None, {"time": reboot.get("time"), "cause-code": reboot.get("cause-code"),
                                          "reason": reboot.get("reason")}))


def _commits(before: Any, after: Any, out: list[Finding]) -> None:
    seen = {c.get("commit-id") for c in before if isinstance(c, Mapping)}
    for commit in reversed(after):  # oldest first, as they happened
        if not isinstance(commit, Mapping) or commit.get("commit-id") in seen:
            continue
        detail = {name: commit.get(name) for name in ("commit-id", "user-id", "client-name", "line",
                                                      "time", "label", "comment")}
        rollback = any(_ROLLBACK.search(str(commit.get(k) or "")) for k in ("client-name", "comment", "label"))
        finding_id = DriftId.COMMIT_ROLLBACK if rollback else DriftId.COMMIT_NEW
        what = "rollback" if rollback else "configuration commit"
        out.append(Finding(finding_id, Severity.INFO, Category.CONFIGURATION, str(commit.get("commit-id")),
                           f"{what} {commit.get('commit-id')} by {commit.get('user-id')} via "
                           f"{commit.get('client-name')} at {commit.get('time')}", None, detail))


def _hardware(before: Any, after: Any, out: list[Finding]) -> None:
    old = {e["name"]: e for e in before if isinstance(e, Mapping) and "name" in e}
    new = {e["name"]: e for e in after if isinstance(e, Mapping) and "name" in e}
    for name, entry in new.items():
        previous = old.get(name)
        if previous is None:
            out.append(Finding(DriftId.HARDWARE_PART_ADDED, Severity.WARNING, Category.HARDWARE, name,
                               f"part {name} ({entry.get('pid')}) appeared", None, entry.get("sn")))
        elif (previous.get("sn"), previous.get("pid")) != (entry.get("sn"), entry.get("pid")):
            out.append(Finding(DriftId.HARDWARE_PART_SWAPPED, Severity.WARNING, Category.HARDWARE, name,
                               f"part {name} has a new serial number: the part was swapped",
                               {"pid": previous.get("pid"), "sn": previous.get("sn")},
                               {"pid": entry.get("pid"), "sn": entry.get("sn")}))
    for name, entry in old.items():
        if name not in new:
            out.append(Finding(DriftId.HARDWARE_PART_REMOVED, Severity.WARNING, Category.HARDWARE, name,
                               f"part {name} ({entry.get('pid')}) is gone", entry.get("sn"), None))


def _integrity(before: Any, after: Any, out: list[Finding]) -> None:
    for node, now in (after or {}).items():
        then = (before or {}).get(node)
        if not isinstance(then, Mapping) or not isinstance(now, Mapping):
            continue
        if then.get("secure-boot-status") != now.get("secure-boot-status"):
            disabled = str(now.get("secure-boot-status")).lower() != "enabled"
            out.append(Finding(DriftId.SECURE_BOOT_CHANGED, Severity.ERROR if disabled else Severity.INFO,
                               Category.BOOT, node, f"secure boot on {node} is now {now.get('secure-boot-status')}",
                               then.get("secure-boot-status"), now.get("secure-boot-status")))
        old_pcrs = {(p.get("index"), p.get("algorithm")): p.get("value") for p in then.get("pcrs") or []}
        for pcr in now.get("pcrs") or []:
            key = (pcr.get("index"), pcr.get("algorithm"))
            if key in old_pcrs and old_pcrs[key] != pcr.get("value"):
                out.append(Finding(DriftId.PCR_CHANGED, Severity.WARNING, Category.BOOT,
                                   f"{node} PCR {pcr.get('index')}",
                                   f"PCR {pcr.get('index')} ({pcr.get('algorithm')}) on {node} changed",
                                   old_pcrs[key], pcr.get("value")))
        if then.get("ima-aggregate") != now.get("ima-aggregate"):
            out.append(Finding(DriftId.IMA_CHANGED, Severity.INFO, Category.BOOT, node,
                               f"the IMA aggregate on {node} changed (a package's runtime files changed)",
                               then.get("ima-aggregate"), now.get("ima-aggregate")))


_ITEM_DIFFS = (
    ("packages", Category.EXECUTABLES, _packages, list),
    ("reboot-history", Category.BOOT, _reboots, dict),
    ("rollback-history", Category.CONFIGURATION, _commits, list),
    ("system-inventory", Category.HARDWARE, _hardware, list),
    ("system-integrity-snapshot", Category.BOOT, _integrity, dict),
)


def diff_dossiers(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Finding]:
    """Everything but files (see `FileSystemState`) that changed from `before` to `after`."""
    out: list[Finding] = []
    old_version, new_version = software_version(before), software_version(after)
    if old_version and new_version and old_version != new_version:
        out.append(Finding(DriftId.SOFTWARE_VERSION_CHANGED, Severity.INFO, Category.EXECUTABLES, "version",
                           f"IOS XR release changed from {old_version} to {new_version}",
                           old_version, new_version))
    for item, category, compare, kind in _ITEM_DIFFS:
        old, why_old = _payload(before, item)
        new, why_new = _payload(after, item)
        if why_old == "not collected" and why_new == "not collected":
            continue  # neither poll asked for it: nothing to compare, nothing hidden
        if why_old or why_new or not isinstance(old, kind) or not isinstance(new, kind):
            out.append(_unavailable(item, category, why_old, why_new))
            continue
        compare(old, new, out)
    return out


def _certificates(before: Evidence, after: Evidence, out: list[Finding]) -> None:
    if before.root_sha256 and after.root_sha256 and before.root_sha256 != after.root_sha256:
        out.append(Finding(DriftId.ROOT_CHANGED, Severity.ERROR, Category.IDENTITY, "root",
                           "the device presents a different root certificate: this must not happen "
                           "without re-enrolling the device (`dossier enroll --replace`)",
                           before.root_sha256, after.root_sha256))
    elif before.leaf_sha256 and after.leaf_sha256 and before.leaf_sha256 != after.leaf_sha256:
        out.append(Finding(DriftId.LEAF_REKEYED, Severity.INFO, Category.IDENTITY, "leaf",
                           "the device signs with a new leaf certificate under the same root "
                           "(re-keying, expected from time to time)", before.leaf_sha256, after.leaf_sha256))


def diff_measurements(before: list[Any], after: list[Any]) -> list[Finding]:
    """What changed between two IOS XE integrity outputs' measurements (`verifier.profiles.
    Measurements`, signature- and PCR-bound), per location: each boot stage's hash, each OS hash."""
    out: list[Finding] = []
    old = {m.location: m for m in before}
    for measured in after:
        previous = old.get(measured.location)
        where = f"{measured.location} " if measured.location else ""
        if previous is None:
            continue
        stages = {stage: value for stage, _, value in previous.boot_stages}
        for stage, version, value in measured.boot_stages:
            if stage in stages and stages[stage] != value:
                out.append(Finding(DriftId.BOOT_MEASUREMENT_CHANGED, Severity.WARNING, Category.BOOT,
                                   f"{where}boot stage {stage}",
                                   f"{where}boot stage {stage} measures differently (version {version})",
                                   stages[stage], value))
        hashes = dict(previous.os_hashes)
        for name, value in measured.os_hashes:
            if name in hashes and hashes[name] != value:
                out.append(Finding(DriftId.OS_MEASUREMENT_CHANGED, Severity.INFO, Category.EXECUTABLES,
                                   f"{where}{name or 'OS image'}",
                                   f"{where}{name or 'the OS image'} measures differently", hashes[name], value))
        if previous.os_version and measured.os_version and previous.os_version != measured.os_version:
            out.append(Finding(DriftId.SOFTWARE_VERSION_CHANGED, Severity.INFO, Category.EXECUTABLES, "version",
                               f"{where}IOS XE release changed from {previous.os_version} to {measured.os_version}",
                               previous.os_version, measured.os_version))
    return out


def diff_boot_events(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[Finding]:
    """Boot events (node, PCR, event data) of a trusted TPM boot log that are new or whose
    digest changed since the previous trusted one (an IMA log has no events: nothing)."""
    def events(nodes: list[dict[str, Any]]) -> dict[tuple[str, int, str], str]:
        return {(str(node.get("node")), event.get("pcr"), str(event.get("data"))): str(event.get("digest"))
                for node in nodes for event in node.get("events", []) if isinstance(event, Mapping)}

    old, new = events(before), events(after)
    return [Finding(DriftId.TPM_BOOT_EVENT_CHANGED, Severity.WARNING, Category.BOOT, f"{node} PCR {pcr}",
                    f"boot event {data!r} in PCR {pcr} of {node} " + ("is new" if key not in old else "changed digest"),
                    old.get(key), digest)
            for key, digest in sorted(new.items(), key=str) if old.get(key) != digest
            for node, pcr, data in [key]]


def diff_evidence(before: Evidence, after: Evidence, files: FileSystemState | None = None) -> list[Finding]:
    """Drift from `before` to `after`.

    `files` is the file state as of `before` (see `FileSystemState`); it is advanced to `after`.
    Without it, a fresh state is built from `before` (fine when `before` holds a full snapshot).
    """
    out: list[Finding] = []
    _certificates(before, after, out)
    if not (before.has_content and after.has_content):
        missing = before if not before.has_content else after
        out.append(Finding(DriftId.CONTENT_NOT_COMPARED, Severity.WARNING, Category.IDENTITY, missing.label,
                           f"{missing.label} has no trusted content, so content drift was not compared",
                           "trusted content on both sides", ", ".join(missing.reasons) or "none"))
        return out
    if before.measurements or after.measurements:  # IOS XE: what the signed integrity output binds
        out.extend(diff_measurements(before.measurements, after.measurements))
        return out
    if before.tpm is not None or after.tpm is not None:  # TPM evidence: boot events the quotes bind
        out.extend(diff_boot_events(before.tpm or [], after.tpm or []))
        return out
    assert before.dossier is not None and after.dossier is not None
    out.extend(diff_dossiers(before.dossier, after.dossier))
    if files is None:
        files = FileSystemState()
        files.apply(before.dossier, report=False)
    out.extend(files.apply(after.dossier))
    return out
