"""What a node's measured boot and IMA put in its PCRs, derived from the device's state.

The boot event log follows the PCR map of docs/tpm-attestation.md (firmware, platform, boot
loader and kernel, secure boot, command line, one event per OS package); the IMA log measures
`boot_aggregate` and then each executable file of the node's file-system inventory. Both are
pure functions of the facts and the inventory, so a changed package or file changes the logs and
the PCRs, and the dossier's `system-integrity-snapshot` can report the same PCR values.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..fsinv import _DIGEST, _MODE  # the inventory's record layout

__all__ = [
    "BOOT_PCRS",
    "IMA_PCR",
    "BootEvent",
    "ImaEvent",
    "boot_log",
    "boot_pcrs",
    "digest_of",
    "extend",
    "ima_entry",
    "ima_log",
    "replay",
]

BOOT_PCRS = range(10)  # PCRs 0-9: the measured boot (firmware to OS packages)
IMA_PCR = 10
ZERO_PCR = bytes(32)

EV_POST_CODE = 0x1
EV_SEPARATOR = 0x4
EV_S_CRTM_VERSION = 0x8
EV_PLATFORM_CONFIG_FLAGS = 0xA
EV_IPL = 0xD
EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
SEPARATOR_DATA = bytes(4)
# Versions of the emulated firmware and boot loader: what a reference value lists.
FIRMWARE_VERSION = "1.52"
GRUB_VERSION = "2.06"
EXECUTE_BITS = 0o111


@dataclass(frozen=True)
class BootEvent:
    """One TCG PC Client crypto-agile event (TCG_PCR_EVENT2) with its SHA-256 digest."""

    number: int
    event_type: int
    pcr_index: int
    digest: bytes
    data: bytes


@dataclass(frozen=True)
class ImaEvent:
    """One `ima-ng` entry of the IMA measurement list."""

    number: int
    filename: str
    filedata_hash: bytes
    template_hash: bytes
    pcr_index: int = IMA_PCR
    template: str = "ima-ng"


def extend(pcr: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(pcr + digest).digest()


def replay(events: Iterable[tuple[int, bytes]]) -> dict[int, bytes]:
    """PCR values from (pcr-index, digest) pairs in log order; each PCR starts at zero."""
    pcrs: dict[int, bytes] = {}
    for index, digest in events:
        pcrs[index] = extend(pcrs.get(index, ZERO_PCR), digest)
    return pcrs


def digest_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def boot_log(facts: Any, node: str) -> list[BootEvent]:
    """The node's boot event log as the device's facts (platform, release, secure boot, host,
    packages) make it."""
    boot_package = facts.boot_package
    secure = facts.secure_boot.get(node, True)
    measured: list[tuple[int, int, bytes, bytes]] = [  # (pcr, type, data, digest or b"": hash of data)
        (0, EV_S_CRTM_VERSION, f"CRTM {FIRMWARE_VERSION}".encode(), b""),
        (0, EV_POST_CODE, f"firmware {FIRMWARE_VERSION}".encode(),
         digest_of(f"firmware-image|{facts.platform_pid}|{FIRMWARE_VERSION}".encode())),
        (1, EV_PLATFORM_CONFIG_FLAGS, f"platform {facts.platform_pid}".encode(), b""),
        (4, EV_EFI_BOOT_SERVICES_APPLICATION, f"grub {GRUB_VERSION}".encode(),
         digest_of(f"grub-image|{GRUB_VERSION}|{boot_package.version}".encode())),
        (4, EV_IPL, f"kernel {boot_package.version}".encode(), b""),
        (7, EV_EFI_VARIABLE_DRIVER_CONFIG, b"SecureBoot=1" if secure else b"SecureBoot=0", b""),
    ]
    measured += [(pcr, EV_SEPARATOR, SEPARATOR_DATA, b"") for pcr in range(8)]
    measured.append((8, EV_IPL, f"cmdline hostname={facts.hostname} node={node}".encode(), b""))
    measured += [(9, EV_IPL, f"package {pkg.full_name}".encode(), bytes.fromhex(pkg.runtime_fingerprint))
                 for pkg in facts.packages]
    return [BootEvent(number, event_type, pcr, digest or digest_of(data), data)
            for number, (pcr, event_type, data, digest) in enumerate(measured, start=1)]


def boot_pcrs(facts: Any, node: str) -> dict[int, bytes]:
    """PCRs 0-9 after the node's measured boot."""
    pcrs = replay((event.pcr_index, event.digest) for event in boot_log(facts, node))
    return {index: pcrs.get(index, ZERO_PCR) for index in BOOT_PCRS}


def ima_entry(number: int, filename: str, filedata_hash: bytes) -> ImaEvent:
    """An ima-ng entry; its template hash is SHA-256 of the template data as Linux builds it."""
    digest_field = b"sha256:\x00" + filedata_hash
    name_field = filename.encode("utf-8") + b"\x00"
    template = (struct.pack("<I", len(digest_field)) + digest_field
                + struct.pack("<I", len(name_field)) + name_field)
    return ImaEvent(number, filename, filedata_hash, digest_of(template))


def ima_log(facts: Any, node: str, files: Mapping[str, Any] | None,
            extra: Iterable[tuple[str, bytes]] = ()) -> list[ImaEvent]:
    """`boot_aggregate`, then each executable file of `files` (the node's file-system inventory,
    path -> record) in path order with its inventory digest, then `extra` (path, digest)."""
    pcrs = boot_pcrs(facts, node)
    entries = [ima_entry(1, "boot_aggregate", digest_of(b"".join(pcrs[i] for i in BOOT_PCRS)))]
    for path in sorted(files or ()):
        record = files[path]  # type: ignore[index]
        if record[_MODE] & EXECUTE_BITS:
            entries.append(ima_entry(len(entries) + 1, path, base64.b64decode(record[_DIGEST])))
    for path, digest in extra:
        entries.append(ima_entry(len(entries) + 1, path, digest))
    return entries
