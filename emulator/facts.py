"""What an emulated IOS XR router knows about itself: software, hardware, histories, integrity.

`make_facts(hostname, seed)` builds a realistic, deterministic device (same arguments, same
device); the mutation functions (`record_reboot`, `record_commit`, `upgrade_package`,
`tamper_package`, `swap_part`, `set_secure_boot`, `set_failing_items`) change it the way a real
router would record the change. `DeviceFacts.to_dict()` / `from_dict()` persist it as JSON.

Nothing here talks SSH or prints prompts: `emulator.showtext` renders show commands and
`emulator.dossier` renders the data dossier from these facts.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "ALWAYS_PRESENT_ITEMS",
    "ARCH",
    "CAUSE_POWER_LOSS",
    "CAUSE_USER_RELOAD",
    "COMMIT_HISTORY_LIMIT",
    "Commit",
    "ContentError",
    "DeviceFacts",
    "DEFAULT_PLATFORM_PID",
    "FACTS_EPOCH",
    "FIRST_COMMIT_ID",
    "FactsError",
    "InventoryEntry",
    "PCR_ALGORITHM",
    "PCR_COUNT",
    "PLATFORM_PIDS",
    "Package",
    "REBOOT_HISTORY_LIMIT",
    "Reboot",
    "SECURE_BOOT_PCR",
    "SELECTOR_NAMES",
    "XR_RELEASES",
    "checked_failing_items",
    "make_facts",
    "node_integrity",
    "package_fingerprint",
    "record_commit",
    "record_reboot",
    "set_failing_items",
    "set_secure_boot",
    "swap_part",
    "tamper_package",
    "upgrade_package",
    "xr_time",
]

# The six dossier selectors, in the order ENVELOPE.md section 2 lists them (and prints them).
SELECTOR_NAMES: tuple[str, ...] = (
    "packages",
    "reboot-history",
    "rollback-history",
    "system-integrity-snapshot",
    "system-inventory",
    "filesystem-inventory",
)
# Items every dossier carries whatever was selected; they can fail too (fault injection).
ALWAYS_PRESENT_ITEMS: tuple[str, ...] = ("license-udi", "version", "platform")

# History anchor: generated histories end before this instant (2026-01-01 00:00:00 UTC), so the
# same (hostname, seed) gives the same device whatever the wall clock says.
FACTS_EPOCH = 1_767_225_600.0
# IOS XR keeps a bounded reboot history per node; older entries roll off.
REBOOT_HISTORY_LIMIT = 32
# IOS XR keeps at most 100 rollback points by default; older commits roll off.
COMMIT_HISTORY_LIMIT = 100
# First commit id IOS XR hands out (ids are 10 digits, increasing).
FIRST_COMMIT_ID = 1_000_000_001
FACTS_FORMAT = 1

# (cause-code, reason) pairs a router records; the integrator passes one to `record_reboot`.
CAUSE_USER_RELOAD = ("0x2000063", "Cause: User initiated reload")
CAUSE_POWER_LOSS = ("0x2000002", "Cause: Power loss or cold reset")
_HISTORIC_REBOOT_CAUSES = (
    ("0x2000004", "Cause: Install Operation Reload"),
    CAUSE_USER_RELOAD,
    CAUSE_POWER_LOSS,
    ("0x2000006", "Cause: SW watchdog timeout"),
    ("0x2000004", "Cause: Install Operation Reload"),
)

ARCH = "x86_64"


class ContentError(Exception):
    """Root of every error raised by the emulator's content modules (facts, fsinv, dossier).

    `message` is the text the device prints (IOS XR style, starting with `% ` where the device
    would print an error line).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FactsError(ContentError):
    """A fact or mutation was asked for something this device does not have."""


# --- platform profiles: hardware is data, not branches ------------------------------------------


@dataclass(frozen=True)
class _Card:
    slot: str  # "0/RP0/CPU0", "0/FT0", ...
    pid: str
    descr: str
    role: str  # "rp" | "lc" | "fc" | "sc" | "fan" | "psu"


@dataclass(frozen=True)
class _Profile:
    pid: str
    family: str  # package prefix: "ncs5500"
    chassis_descr: str
    processor: str  # `show version`: "cisco NCS-5500 () processor"
    fixed: bool  # fixed chassis: RP shares the chassis serial, RP type is the chassis PID
    cards: tuple[_Card, ...]
    npus: int  # NPU slices shown under the RP of a fixed chassis


def _fans(pid: str, descr: str, count: int) -> tuple[_Card, ...]:
    return tuple(_Card(f"0/FT{i}", pid, descr, "fan") for i in range(count))


def _psus(pid: str, descr: str, count: int) -> tuple[_Card, ...]:
    return tuple(_Card(f"0/PM{i}", pid, descr, "psu") for i in range(count))


_PROFILES: dict[str, _Profile] = {
    p.pid: p
    for p in (
        _Profile(
            pid="NCS-55A1-24H",
            family="ncs5500",
            chassis_descr="NCS 5500 1RU Chassis with 24x100G QSFP28 ports",
            processor="cisco NCS-5500 () processor",
            fixed=True,
            cards=(
                _Card("0/RP0/CPU0", "NCS-55A1-24H", "NCS 55A1 Fixed 24x100G Route Processor", "rp"),
                *_fans("NC55-A1-FAN-RV", "NCS 55A1 Fan Tray, Reverse Airflow", 3),
                *_psus("NC55-1100W-ACRV", "1100W AC Power Module, Reverse Airflow", 2),
            ),
            npus=2,
        ),
        _Profile(
            pid="NCS-55A1-36H-SE-S",
            family="ncs5500",
            chassis_descr="NCS 5500 1RU Chassis with 36x100G QSFP28 ports, Scale, Secure",
            processor="cisco NCS-5500 () processor",
            fixed=True,
            cards=(
                _Card("0/RP0/CPU0", "NCS-55A1-36H-SE-S", "NCS 55A1 Fixed 36x100G Scale Route Processor", "rp"),
                *_fans("NC55-A1-FAN-FW", "NCS 55A1 Fan Tray, Forward Airflow", 3),
                *_psus("NC55-1200W-ACFW", "1200W AC Power Module, Forward Airflow", 2),
            ),
            npus=4,
        ),
        _Profile(
            pid="NCS-5504",
            family="ncs5500",
            chassis_descr="NCS5500 4 Slot Single Chassis",
            processor="cisco NCS-5500 () processor",
            fixed=False,
            cards=(
                _Card("0/RP0/CPU0", "NC55-RP-E", "NCS 5500 Route Processor Card, Enhanced", "rp"),
                _Card("0/RP1/CPU0", "NC55-RP-E", "NCS 5500 Route Processor Card, Enhanced", "rp"),
                _Card("0/0/CPU0", "NC55-36X100G", "NCS 5500 36x100G QSFP28 Line Card", "lc"),
                _Card("0/1/CPU0", "NC55-36X100G", "NCS 5500 36x100G QSFP28 Line Card", "lc"),
                _Card("0/2/CPU0", "NC55-24X100G-SE", "NCS 5500 24x100G QSFP28 Scale Line Card", "lc"),
                _Card("0/FC0", "NC55-5504-FC", "NCS 5504 Fabric Card", "fc"),
                _Card("0/FC1", "NC55-5504-FC", "NCS 5504 Fabric Card", "fc"),
                _Card("0/FC3", "NC55-5504-FC", "NCS 5504 Fabric Card", "fc"),
                _Card("0/SC0", "NC55-SC", "NCS 5500 System Controller", "sc"),
                _Card("0/SC1", "NC55-SC", "NCS 5500 System Controller", "sc"),
                *_fans("NC55-5504-FAN", "NCS 5504 Fan Tray", 3),
                *_psus("NC55-PWR-3KW-AC", "3KW AC Power Module", 3),
            ),
            npus=0,
        ),
    )
}
PLATFORM_PIDS: tuple[str, ...] = tuple(_PROFILES)
# The fleet's chassis unless one is chosen: a fixed 1RU router with one route processor.
DEFAULT_PLATFORM_PID = "NCS-55A1-24H"

# XR 7.x releases with the build line `show version` prints for them.
XR_RELEASES: dict[str, tuple[str, str, str]] = {
    # version: (built on, built by, built host)
    "7.1.2": ("Fri Aug 14 03:09:48 PDT 2020", "ahoang", "iox-ucs-019"),
    "7.2.2": ("Sun Jan 17 21:54:24 PST 2021", "ingunawa", "iox-ucs-017"),
    "7.3.1": ("Thu Feb 25 19:49:29 PST 2021", "ingunawa", "iox-ucs-025"),
    "7.3.2": ("Wed Oct 13 20:00:27 PDT 2021", "ingunawa", "iox-ucs-024"),
    "7.4.2": ("Tue Jan 18 10:42:19 PST 2022", "sajshah", "iox-ucs-031"),
    "7.5.2": ("Thu Jun 16 08:47:52 PDT 2022", "sajshah", "iox-lnx-046"),
}

# Optional package components (eXR names: <family>-<component>-<x.y.z.w>-r<rel>.x86_64).
_COMPONENTS = (
    "mpls", "mpls-te-rsvp", "mgbl", "k9sec", "isis", "ospf", "eigrp", "li", "mcast", "bgp",
    "dpa-fwding", "fwding", "infra", "os-support", "routing", "bfd", "cdp", "lldp", "netflow",
    "telemetry", "grpc", "netconf", "snmp", "aaa", "tacacs", "ipsla", "l2vpn", "evpn", "sr",
    "pim", "igmp", "ethernet-oam", "cfm", "ptp", "synce", "qos", "acl", "pbr", "vrrp", "hsrp",
    "dhcp", "ntp", "syslog", "ssh", "tftp", "ftp", "cdm", "sysadmin", "spirit", "rib", "arp",
    "ipv6-nd", "bundle", "macsec", "flowspec", "rpki", "bmp", "mrib", "msdp", "ldp", "l2tp",
    "lpts", "pfilter", "pm", "shelfmgr", "ssd", "install", "ztp", "yang-models", "xml-agent",
    "diags", "fpd", "optics", "cfgmgr", "sla", "urpf", "gre", "vxlan", "nve", "pce", "srte",
    "lisp", "mpls-oam", "bgp-lu", "ppp", "hdlc", "frr", "tunnel-ip", "host-os", "ipsec",
)
# Packages present on every image (never left out when a device picks its package set).
_CORE_COMPONENTS = ("infra", "os-support", "routing", "fwding", "mgbl", "k9sec", "mpls", "bgp", "isis")

_FACTORIES = ("FOC", "JAE", "FGE", "SAL", "JAF", "FLM")
_SERIAL_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
_USERS = ("cisco", "admin", "netops", "automation", "noc-ro")
_CLIENTS = (("CLI", 6), ("NETCONF", 2), ("Rollback", 1), ("gRPC", 1))
_COMMIT_COMMENTS = ("", "", "", "CHG0041123 peering update", "weekly maintenance", "ztp day0")
_COMMIT_LABELS = ("", "", "", "", "", "baseline", "pre-upgrade")


# --- the facts ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Package:
    """One installed package as `show install active` and the dossier's `packages` list it."""

    name: str  # "ncs5500-mpls"
    version: str  # "2.1.0.0-r731"
    arch: str
    install_fingerprint: str  # SHA-256 hex taken at install time
    runtime_fingerprint: str  # SHA-256 hex of the files as they are now

    @property
    def full_name(self) -> str:
        """RPM name as the file-system inventory reports it: `ncs5500-mpls-2.1.0.0-r731.x86_64`."""
        return f"{self.name}-{self.version}.{self.arch}"


@dataclass(slots=True)
class InventoryEntry:
    """One `show inventory` entry."""

    name: str
    descr: str
    pid: str
    vid: str
    sn: str


@dataclass(slots=True)
class Reboot:
    """One reboot of a node, as `show reboot history` lists it (oldest first, `no` from 1)."""

    no: int
    time: float  # Unix time
    cause_code: str
    reason: str


@dataclass(slots=True)
class Commit:
    """One configuration commit (a rollback point)."""

    commit_id: str
    user_id: str
    line: str
    client_name: str
    time: float  # Unix time
    label: str
    comment: str


@dataclass
class DeviceFacts:
    """Everything a device reports about itself. Mutate through this module's functions."""

    hostname: str
    seed: int
    platform_pid: str
    xr_version: str
    chassis_vid: str
    packages: list[Package]
    inventory: list[InventoryEntry]
    nodes: list[str]  # CPU nodes running XR: RPs first, then line cards
    reboots: dict[str, list[Reboot]]
    commits: list[Commit]  # oldest first; rendered newest first
    next_commit_id: int
    secure_boot: dict[str, bool]
    failing_items: dict[str, str] = field(default_factory=dict)
    files: int = 3000  # size of the file-system inventory's full snapshot
    tamper_count: int = 0  # makes each tamper/swap produce a fresh value

    # -- derived views --

    @property
    def profile(self) -> _Profile:
        return _PROFILES[self.platform_pid]

    @property
    def family(self) -> str:
        return self.profile.family

    @property
    def chassis_serial(self) -> str:
        return self.inventory[0].sn

    @property
    def active_node(self) -> str:
        """The node the CLI runs on (`RP/0/RP0/CPU0:host#`): local node of every command."""
        return self.nodes[0]

    @property
    def rp_nodes(self) -> list[str]:
        return [node for node in self.nodes if "/RP" in node]

    @property
    def boot_package(self) -> Package:
        return self.packages[0]

    def last_boot_time(self, node: str | None = None) -> float:
        """Time of the node's latest reboot (the start of `System uptime`)."""
        history = self.reboots[node or self.active_node]
        return history[-1].time

    def package(self, name: str) -> Package:
        """The installed package `name`; raises FactsError naming what is installed."""
        for pkg in self.packages:
            if pkg.name == name:
                return pkg
        raise FactsError(
            f"% Package {name!r} is not active on {self.hostname}: "
            f"expected one of {', '.join(p.name for p in self.packages[:5])}, ..."
        )

    # -- persistence --

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `DeviceFacts.from_dict` gives the same device back."""
        data = asdict(self)
        data["format"] = FACTS_FORMAT
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceFacts:
        """Rebuild facts saved by `to_dict`; raises FactsError when the data is not that."""
        try:
            if data.get("format") != FACTS_FORMAT:
                raise FactsError(
                    f"% Device facts format {data.get('format')!r} is not supported: "
                    f"expected {FACTS_FORMAT}. Remove the device state to regenerate it."
                )
            if data["platform_pid"] not in _PROFILES:
                raise FactsError(f"% Unknown platform {data['platform_pid']!r} in saved facts")
            return cls(
                hostname=data["hostname"],
                seed=int(data["seed"]),
                platform_pid=data["platform_pid"],
                xr_version=data["xr_version"],
                chassis_vid=data["chassis_vid"],
                packages=[Package(**p) for p in data["packages"]],
                inventory=[InventoryEntry(**e) for e in data["inventory"]],
                nodes=list(data["nodes"]),
                reboots={n: [Reboot(**r) for r in rs] for n, rs in data["reboots"].items()},
                commits=[Commit(**c) for c in data["commits"]],
                next_commit_id=int(data["next_commit_id"]),
                secure_boot={n: bool(v) for n, v in data["secure_boot"].items()},
                failing_items=dict(data.get("failing_items", {})),
                files=int(data.get("files", 3000)),
                tamper_count=int(data.get("tamper_count", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FactsError(
                f"% Saved device facts are malformed ({type(exc).__name__}: {exc}): expected the "
                "output of DeviceFacts.to_dict(). Remove the device state to regenerate it."
            ) from exc


# --- helpers --------------------------------------------------------------------------------------


def _sha256_hex(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def package_fingerprint(name: str, version: str, arch: str) -> str:
    """Install fingerprint of a package build: the same build has the same one on every device."""
    return _sha256_hex("rpm", name, version, arch)


def _serial(rng: random.Random) -> str:
    # Cisco serials: factory code, 2-digit year since 1996, 2-digit week, 4 characters.
    return (
        rng.choice(_FACTORIES)
        + f"{rng.randint(18, 26):02d}{rng.randint(1, 52):02d}"
        + "".join(rng.choice(_SERIAL_CHARS) for _ in range(4))
    )


def xr_time(unix: float) -> str:
    """`Thu Jan  7 17:16:02 2021`: how IOS XR prints a time in histories (UTC)."""
    moment = datetime.fromtimestamp(unix, tz=timezone.utc)
    return f"{moment:%a %b} {moment.day:2d} {moment:%H:%M:%S %Y}"


def _known_platform(pid: str) -> _Profile:
    try:
        return _PROFILES[pid]
    except KeyError:
        raise FactsError(
            f"% Unknown platform PID {pid!r}: expected one of {', '.join(PLATFORM_PIDS)}"
        ) from None


# --- the builder -----------------------------------------------------------------------------------


def make_facts(
    hostname: str,
    seed: int,
    *,
    platform_pid: str = DEFAULT_PLATFORM_PID,
    files: int = 3000,
    failing_items: Mapping[str, str] | None = None,
) -> DeviceFacts:
    """Build the device `hostname` deterministically from `(hostname, seed)`.

    `files` is the size of the file-system inventory's full snapshot; `failing_items` maps item
    names to the `result-code` the device reports instead of "Success" (fault injection).
    Raises FactsError for an unknown platform or a non-positive file count.
    """
    profile = _known_platform(platform_pid)
    if files < 1:
        raise FactsError(f"% File count must be at least 1: found {files}")
    # str seeds are hashed with SHA-512 by `random`, so this is stable across runs and machines.
    rng = random.Random(f"facts|{hostname}|{seed}")

    xr_version = rng.choice(sorted(XR_RELEASES))
    release = "r" + xr_version.replace(".", "")
    packages = [
        Package(
            f"{profile.family}-xr",
            xr_version,
            ARCH,
            package_fingerprint(f"{profile.family}-xr", xr_version, ARCH),
            package_fingerprint(f"{profile.family}-xr", xr_version, ARCH),
        )
    ]
    optional = [c for c in _COMPONENTS if c not in _CORE_COMPONENTS]
    count = rng.randint(40, 80) - 1 - len(_CORE_COMPONENTS)
    chosen = set(_CORE_COMPONENTS) | set(rng.sample(optional, count))
    for component in _COMPONENTS:  # image order, not random order
        if component in chosen:
            name = f"{profile.family}-{component}"
            version = (
                f"{rng.randint(1, 9)}.{rng.randint(0, 3)}.{rng.randint(0, 2)}.{rng.randint(0, 1)}-{release}"
            )
            fingerprint = package_fingerprint(name, version, ARCH)
            packages.append(Package(name, version, ARCH, fingerprint, fingerprint))

    chassis_sn = _serial(rng)
    chassis_vid = f"V0{rng.randint(1, 3)}"
    inventory = [InventoryEntry("Rack 0", profile.chassis_descr, profile.pid, chassis_vid, chassis_sn)]
    for card in profile.cards:
        serial = chassis_sn if (profile.fixed and card.role == "rp") else _serial(rng)
        inventory.append(InventoryEntry(card.slot, card.descr, card.pid, f"V0{rng.randint(1, 3)}", serial))

    nodes = [c.slot for c in profile.cards if c.role == "rp"] + [
        c.slot for c in profile.cards if c.role == "lc"
    ]

    # Reboot history: every node came up together at the last reboot; RPs saw a few more.
    reboot_times = sorted(
        FACTS_EPOCH - rng.uniform(3_600, 400 * 86_400) for _ in range(rng.randint(2, 6))
    )
    reboots: dict[str, list[Reboot]] = {}
    for node in nodes:
        times = reboot_times if "/RP" in node else reboot_times[-2:]
        reboots[node] = [
            Reboot(no, round(t, 0), *_HISTORIC_REBOOT_CAUSES[(no + len(node)) % len(_HISTORIC_REBOOT_CAUSES)])
            for no, t in enumerate(times, start=1)
        ]

    commit_count = rng.randint(5, 20)
    commit_times = sorted(FACTS_EPOCH - rng.uniform(600, 300 * 86_400) for _ in range(commit_count))
    clients = [c for c, weight in _CLIENTS for _ in range(weight)]
    commits = []
    used_labels: set[str] = set()
    for index, when in enumerate(commit_times):
        vty = rng.randint(0, 4)
        label = rng.choice(_COMMIT_LABELS)
        if label in used_labels:  # a label names one rollback point
            label = ""
        used_labels.add(label)
        commits.append(
            Commit(
                commit_id=str(FIRST_COMMIT_ID + index),
                user_id=rng.choice(_USERS),
                line=f"vty{vty}:node0_RP0_CPU0",
                client_name=rng.choice(clients),
                time=round(when, 0),
                label=label,
                comment=rng.choice(_COMMIT_COMMENTS),
            )
        )

    facts = DeviceFacts(
        hostname=hostname,
        seed=seed,
        platform_pid=profile.pid,
        xr_version=xr_version,
        chassis_vid=chassis_vid,
        packages=packages,
        inventory=inventory,
        nodes=nodes,
        reboots=reboots,
        commits=commits,
        next_commit_id=FIRST_COMMIT_ID + commit_count,
        secure_boot={node: True for node in nodes},
        files=files,
    )
    if failing_items:
        set_failing_items(facts, failing_items)
    return facts


# --- integrity (derived, so it always agrees with packages and secure boot) -----------------------

PCR_COUNT = 10  # PCRs 0-9 carry the measured boot chain on these platforms
SECURE_BOOT_PCR = 7  # the PCR that measures the secure-boot policy (UEFI convention)
PCR_ALGORITHM = "sha256"


def node_integrity(facts: DeviceFacts, node: str) -> dict[str, Any]:
    """The `system-integrity-snapshot` entry for `node`; raises FactsError for an unknown node.

    PCRs 0-9 are the node TPM's after its measured boot (docs/tpm-attestation.md): firmware,
    platform, boot loader and kernel, secure boot (PCR 7), command line, OS packages (PCR 9). The IMA
    aggregate covers every package's runtime fingerprint, so a tampered package changes it.
    """
    if node not in facts.secure_boot:
        raise FactsError(f"% Node {node} not found: expected one of {', '.join(facts.nodes)}")
    enabled = facts.secure_boot[node]
    pcrs = []
    # The node's TPM holds these after its measured boot (emulator.tpm.measure): the dossier and
    # a TPM quote over NETCONF report the same values.
    from .tpm.measure import boot_pcrs

    measured = boot_pcrs(facts, node)
    for index in range(PCR_COUNT):
        pcrs.append({"index": index, "algorithm": PCR_ALGORITHM, "value": measured[index].hex()})
    aggregate = _sha256_hex("ima", node, *(p.runtime_fingerprint for p in facts.packages))
    return {
        "secure-boot-status": "Enabled" if enabled else "Disabled",
        "pcrs": pcrs,
        "ima-aggregate": aggregate,
    }


# --- mutations -------------------------------------------------------------------------------------


def record_reboot(
    facts: DeviceFacts,
    *,
    cause_code: str,
    reason: str,
    now: float,
    nodes: list[str] | None = None,
) -> None:
    """Record a reboot of `nodes` (default: the whole router, every node) at `now`."""
    targets = facts.nodes if nodes is None else nodes
    for node in targets:
        if node not in facts.reboots:
            raise FactsError(f"% Node {node} not found: expected one of {', '.join(facts.nodes)}")
    for node in targets:
        history = facts.reboots[node]
        history.append(Reboot(len(history) + 1, round(now, 0), cause_code, reason))
        if len(history) > REBOOT_HISTORY_LIMIT:
            del history[: len(history) - REBOOT_HISTORY_LIMIT]
            for no, entry in enumerate(history, start=1):
                entry.no = no


def record_commit(
    facts: DeviceFacts,
    *,
    user: str,
    client: str = "CLI",
    line: str = "vty0:node0_RP0_CPU0",
    label: str = "",
    comment: str = "",
    now: float,
) -> str:
    """Record a configuration commit at `now`; returns its commit id (`"1000000123"`).

    Raises FactsError when `label` already names another rollback point.
    """
    if label and any(c.label == label for c in facts.commits):
        raise FactsError(f"% Label {label!r} is already used by another commit: choose another label")
    commit_id = str(facts.next_commit_id)
    facts.next_commit_id += 1
    facts.commits.append(Commit(commit_id, user, line, client, round(now, 0), label, comment))
    if len(facts.commits) > COMMIT_HISTORY_LIMIT:
        del facts.commits[: len(facts.commits) - COMMIT_HISTORY_LIMIT]
    return commit_id


def upgrade_package(facts: DeviceFacts, name: str, new_version: str) -> None:
    """Install `new_version` of package `name`: new install and runtime fingerprints.

    Upgrading the boot image (`<family>-xr`) also changes the release `show version` reports.
    """
    if not new_version:
        raise FactsError("% Package version must not be empty")
    pkg = facts.package(name)
    pkg.version = new_version
    pkg.install_fingerprint = pkg.runtime_fingerprint = package_fingerprint(name, new_version, pkg.arch)
    if pkg is facts.boot_package:
        facts.xr_version = new_version


def tamper_package(facts: DeviceFacts, name: str) -> None:
    """Change package `name`'s files behind the installer's back: runtime != install fingerprint."""
    pkg = facts.package(name)
    facts.tamper_count += 1
    pkg.runtime_fingerprint = _sha256_hex("tampered", pkg.full_name, facts.hostname, facts.tamper_count)


def swap_part(facts: DeviceFacts, name: str) -> str:
    """Replace the inventory part `name` (`"0/FT1"`, `"Rack 0"`): returns its new serial."""
    for entry in facts.inventory:
        if entry.name == name:
            facts.tamper_count += 1
            rng = random.Random(f"swap|{facts.hostname}|{facts.seed}|{name}|{facts.tamper_count}")
            entry.sn = _serial(rng)
            return entry.sn
    raise FactsError(
        f"% Inventory entity {name!r} not found: expected one of "
        f"{', '.join(e.name for e in facts.inventory)}"
    )


def set_secure_boot(facts: DeviceFacts, enabled: bool, *, node: str | None = None) -> None:
    """Enable or disable secure boot on `node` (default: every node); PCR 7 follows."""
    targets = facts.nodes if node is None else [node]
    for target in targets:
        if target not in facts.secure_boot:
            raise FactsError(f"% Node {target} not found: expected one of {', '.join(facts.nodes)}")
        facts.secure_boot[target] = enabled


def set_failing_items(facts: DeviceFacts, failing: Mapping[str, str]) -> None:
    """Make items fail: `{"packages": "Failed: timeout collecting data"}`; `{}` clears all.

    Raises FactsError for an unknown item or a result code that is empty or "Success".
    """
    checked = checked_failing_items(failing)
    facts.failing_items = checked


def checked_failing_items(failing: Mapping[str, str]) -> dict[str, str]:
    known = ALWAYS_PRESENT_ITEMS + SELECTOR_NAMES
    checked: dict[str, str] = {}
    for item, code in failing.items():
        if item not in known:
            raise FactsError(f"% Unknown dossier item {item!r}: expected one of {', '.join(known)}")
        if not isinstance(code, str) or not code or code == "Success":
            raise FactsError(
                f"% Result code for failing item {item!r} must be a non-empty string other than "
                f"'Success': found {code!r}"
            )
        checked[item] = code
    return checked
