"""Fleet consensus: a file or package whose digest on one device differs from every other
device on the same release and platform, flagged with no reference value to compare with.

Devices are grouped by (chassis PID, IOS XR release). Within a group, each file (by node and
path) and each package (by name) is a vote per device for its digest. A device is flagged for
a subject when (1) its digest is its own (no other device of the group has it), (2) at least
`MIN_AGREEING` other devices agree on one digest, and (3) those are more than half of the
devices that have the subject. Files that differ on every device (logs, configuration) have no
consensus and are never flagged; a file only one device has is not compared.

Content comes only from stored verdicts (`StoredVerdicts`: each output verified again) and the
file state replayed from them (`history.file_state_at`); no stored byte is parsed here. The vote
(`compare_devices`) takes that content from its caller, so the service compares what its
queries already hold for each output instead of verifying the fleet's histories again.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..store import EnvelopeRecord, Store, parse_iso
from .diff import item_payload, software_version
from .errors import InsightsError
from .findings import Category, ConsensusId, Finding, Severity
from .history import StoredVerdicts, file_state_at, stored_evidence

__all__ = ["MIN_AGREEING", "Compared", "ConsensusGroup", "FleetConsensus", "compare_devices", "fleet_consensus",
           "package_fingerprints", "platform_pid", "records_as_of"]

#: N: how many other devices must agree on one digest before a differing one is flagged. Below
#: three, "the others" are one or two devices and an odd one out is a coin toss, not a consensus.
MIN_AGREEING = 3
_UDI_PID = re.compile(r"PID:\s*([^,\s]+)")


def platform_pid(dossier: Mapping[str, Any] | None) -> str | None:
    """The chassis PID from the dossier's `license-udi` (`UDI: PID:NCS-5504,SN:...`); None when
    the item is missing or names none."""
    text, _ = item_payload(dossier, "license-udi")
    match = _UDI_PID.search(text) if isinstance(text, str) else None
    return match.group(1) if match else None


@dataclass
class ConsensusGroup:
    """The devices compared with each other: one chassis PID and one release."""

    platform: str
    release: str
    devices: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"platform": self.platform, "release": self.release, "devices": sorted(self.devices)}


@dataclass
class FleetConsensus:
    """Per device its consensus findings; the groups compared; devices not compared, and why."""

    as_of: str | None
    min_agreeing: int
    groups: list[ConsensusGroup] = field(default_factory=list)
    findings: dict[str, list[Finding]] = field(default_factory=dict)
    not_compared: dict[str, str] = field(default_factory=dict)

    def of(self, device: str) -> list[Finding]:
        return self.findings.get(device, [])

    def group_of(self, device: str) -> ConsensusGroup | None:
        return next((group for group in self.groups if device in group.devices), None)

    def to_json(self) -> dict[str, Any]:
        return {"as_of": self.as_of, "min_agreeing": self.min_agreeing,
                "groups": [group.to_json() for group in self.groups],
                "findings": {device: [finding.to_json() for finding in found]
                             for device, found in sorted(self.findings.items()) if found},
                "not_compared": dict(sorted(self.not_compared.items()))}


def records_as_of(store: Store, as_of: dt.datetime | None) -> dict[str, EnvelopeRecord]:
    """Each device's newest trusted output received at or before `as_of` (now when None)."""
    if as_of is None:
        return store.latest_trusted()
    picked: dict[str, EnvelopeRecord] = {}
    for device in store.latest():
        for record in store.history(device):  # newest first
            if record.trusted and parse_iso(record.received) <= as_of:
                picked[device] = record
                break
    return picked


@dataclass
class _Vote:
    """The devices behind one digest of one subject: how many, and the first of them."""

    count: int
    first: str


def package_fingerprints(dossier: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """name -> (version, runtime fingerprint) of a trusted dossier's packages."""
    payload, _ = item_payload(dossier, "packages")
    out: dict[str, tuple[str, str]] = {}
    for package in payload if isinstance(payload, list) else []:
        if isinstance(package, Mapping) and isinstance(package.get("name"), str):
            digest = package.get("runtime-fingerprint") or package.get("install-fingerprint")
            out[package["name"]] = (str(package.get("version", "")), str(digest or ""))
    return out


def _tally(votes: dict[Any, dict[str, _Vote]], device: str, subjects: Iterable[tuple[Any, str]]) -> None:
    for subject, digest in subjects:
        by_digest = votes.setdefault(subject, {})
        vote = by_digest.get(digest)
        if vote is None:
            by_digest[digest] = _Vote(1, device)
        else:
            vote.count += 1


def _odd_ones(votes: Mapping[Any, Mapping[str, _Vote]], min_agreeing: int,
              ) -> Iterable[tuple[Any, str, str, str, int, int]]:
    """(subject, device, its digest, consensus digest, agreeing, holders) per flagged device."""
    for subject, by_digest in votes.items():
        if len(by_digest) < 2:
            continue
        consensus, top = max(by_digest.items(), key=lambda item: item[1].count)
        holders = sum(vote.count for vote in by_digest.values())
        # (2) enough devices agree, and (3) they are the majority of those with the subject
        if top.count < min_agreeing or 2 * top.count <= holders:
            continue
        for digest, vote in by_digest.items():
            if vote.count == 1 and digest != consensus:  # (1) no other device has this digest
                yield subject, vote.first, digest, consensus, top.count, holders


@dataclass(frozen=True)
class Compared:
    """What consensus compares of one device's trusted output: its chassis PID and release, its
    packages (name -> (version, fingerprint)) and its files ((node, path) -> digest), the files
    only asked for (`files()`, which may raise InsightsError) when the device's group is large
    enough to compare."""

    platform: str | None
    release: str | None
    packages: Mapping[str, tuple[str, str]]
    files: Callable[[], Mapping[tuple[str, str], str]]


def fleet_consensus(store: Store, verdicts: StoredVerdicts, *, as_of: dt.datetime | None = None,
                    min_agreeing: int = MIN_AGREEING) -> FleetConsensus:
    """Compare each device's newest trusted output (as of `as_of`) with the other devices on its
    release and platform; a device whose stored outputs cannot be read is listed as not compared.
    Raises StoreError when the store's index cannot be read."""
    picked = records_as_of(store, as_of)
    devices: dict[str, Compared | str] = {}
    for device in set(store.latest()) - set(picked):
        devices[device] = "no trusted collection" + (" by then" if as_of else "")
    for device, record in picked.items():
        try:
            dossier = stored_evidence(verdicts, record).dossier
        except InsightsError as exc:  # a damaged output: the others are still compared
            devices[device] = f"its stored output cannot be read ({exc})"
            continue
        if dossier is None:
            devices[device] = "its newest trusted output has no dossier (IOS XE, or not trusted now)"
            continue

        def files(record: EnvelopeRecord = record) -> dict[tuple[str, str], str]:
            state = file_state_at(store, verdicts, record)
            return {(node, path): f"{entry[0]}:{entry[1]}" for node in state.nodes
                    for path, entry in (state.files(node) or {}).items()}  # unknown nodes: no vote

        devices[device] = Compared(platform_pid(dossier), software_version(dossier), package_fingerprints(dossier), files)
    return compare_devices(devices, as_of=as_of, min_agreeing=min_agreeing)


def compare_devices(devices: Mapping[str, Compared | str], *, as_of: dt.datetime | None = None,
                    min_agreeing: int = MIN_AGREEING) -> FleetConsensus:
    """Fleet consensus over what each device's trusted output holds (`Compared`), or why it has
    nothing to compare (text): the vote itself, which reads nothing stored."""
    result = FleetConsensus(as_of.isoformat(timespec="seconds") if as_of else None, min_agreeing)
    groups: dict[tuple[str, str], ConsensusGroup] = {}
    comparable: dict[str, Compared] = {}
    for device, compared in sorted(devices.items()):
        if isinstance(compared, str):
            result.not_compared[device] = compared
        elif compared.platform is None or compared.release is None:
            result.not_compared[device] = "its dossier names no release or chassis PID"
        else:
            comparable[device] = compared
            groups.setdefault((compared.platform, compared.release),
                              ConsensusGroup(compared.platform, compared.release)).devices.append(device)
    for (platform, release), group in sorted(groups.items()):
        result.groups.append(group)
        if len(group.devices) <= min_agreeing:
            continue  # too few devices for min_agreeing others to agree
        package_votes: dict[Any, dict[str, _Vote]] = {}
        file_votes: dict[Any, dict[str, _Vote]] = {}
        versions: dict[tuple[str, str], str] = {}
        for device in list(group.devices):
            compared = comparable[device]
            try:
                files = compared.files()
            except InsightsError as exc:
                result.not_compared[device] = f"its stored outputs cannot be read ({exc})"
                group.devices.remove(device)
                continue
            _tally(package_votes, device, ((name, digest) for name, (_, digest) in compared.packages.items()))
            versions.update({(name, device): version for name, (version, _) in compared.packages.items()})
            _tally(file_votes, device, sorted(files.items()))
        where = f"{release} on {platform}"
        for name, device, digest, consensus, agreeing, holders in _odd_ones(package_votes, min_agreeing):
            result.findings.setdefault(device, []).append(Finding(
                ConsensusId.PACKAGE_DIFFERS, Severity.WARNING, Category.EXECUTABLES, name,
                f"package {name} {versions.get((name, device), '')} has fingerprint {digest} on {device}; "
                f"expected {consensus}, which {agreeing} of the {holders - 1} other devices with it on {where} have",
                {"digest": consensus, "agreeing": agreeing, "devices": holders - 1}, digest))
        for (node, path), device, digest, consensus, agreeing, holders in _odd_ones(file_votes, min_agreeing):
            result.findings.setdefault(device, []).append(Finding(
                ConsensusId.FILE_DIFFERS, Severity.WARNING, Category.FILE_SYSTEM, path,
                f"{path} on {node} has digest {digest} on {device}; expected {consensus}, which "
                f"{agreeing} of the {holders - 1} other devices with it on {where} have",
                {"digest": consensus, "agreeing": agreeing, "devices": holders - 1}, digest))
    return result
