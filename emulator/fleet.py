"""A fleet of emulated routers in one process: `dossier emulator serve` and test fixtures.

    with Fleet(state_dir=tmp, devices=3, provisioned=True, key_type="ecdsa-p256") as fleet:
        device = fleet.devices[0]          # .name, .host, .port, .username, .password, .host_key_line
        fleet.write_inventory(path)        # YAML the collector loads as is
        fleet.set_fault("xr-0002", Fault.SLOW_OUTPUT, delay=2.0)

`netconf=True` configures `netconf-yang agent ssh` on each IOS XR device and opens its separate
NETCONF port (`device.netconf_port`, `netconf_port` in the inventory); the `netconf` SSH
subsystem answers on the SSH port either way (docs/tpm-attestation.md). `fleet.tpm_authority()`
is the emulated TPM vendor CA every attestation key chains to; `swtpm=("xr-0002",)` backs those
devices' TPMs with real swtpm processes (with netconf=True) instead of the built-in model.

`platform="iosxe"` serves IOS XE devices (xe-0001, ...; `Router#` prompts, SUDI and integrity
commands, one shared emulated SUDI authority: `fleet.sudi_authority()`); `platform="mixed"`
alternates xr-0001, xe-0002, xr-0003, ...
"""

from __future__ import annotations

import os
import resource
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from . import iosxe
from .alerts import AlertScheduler
from .device import KEY_TYPES, PLATFORMS, SYSTEM_TRUSTPOINT, Device
from .facts import DEFAULT_PLATFORM_PID, PLATFORM_PIDS
from .faults import CERTIFICATE_FAULTS, Fault
from .server import Listener
from .tpm.authority import TpmAuthority, load_authority as load_tpm_authority
from .tpm.swtpm import TOOLS as SWTPM_TOOLS, swtpm_available

__all__ = ["FLEET_PLATFORMS", "EmulatedDevice", "Fleet", "FleetError"]

# File descriptors beyond one listening socket per device: connections being served, state
# files, the selector, the interpreter's own.
FD_HEADROOM = 256
FLEET_PLATFORMS = (*PLATFORMS, "mixed")
NAME_PREFIXES = {"iosxr": "xr", "iosxe": "xe"}


class FleetError(Exception):
    """The fleet could not start as asked (bad option, port in use, damaged state)."""


@dataclass
class EmulatedDevice:
    """What a client needs to reach one device, plus the device object itself."""

    name: str
    host: str
    port: int
    username: str
    password: str
    password_file: Path
    host_key_line: str
    device: Device
    platform: str = "iosxr"
    netconf_port: int | None = None  # the separate NETCONF port, when `netconf-yang agent ssh` is on

    def inventory_entry(self) -> dict[str, Any]:
        entry = {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "username": self.username,
            # Absolute: the inventory must load as is from any folder (cron starts in $HOME).
            "credential": {"password_file": str(Path(self.password_file).absolute())},
            "host_key": self.host_key_line,
            "platform": self.platform,
        }
        if self.netconf_port is not None:
            entry["netconf_port"] = self.netconf_port
        return entry


class Fleet:
    """N devices named xr-0001 ..., each on its own port, sharing one accept thread."""

    def __init__(
        self,
        *,
        state_dir: Path,
        devices: int = 1,
        host: str = "127.0.0.1",
        base_port: int = 0,
        provisioned: bool = False,
        key_type: str = "ecdsa-p256",
        host_key_type: str = "ed25519",
        seed: int = 0,
        files: int = 3000,
        username: str = "admin",
        progress: Callable[[int, int], None] | None = None,
        platform: str = "iosxr",
        chassis: str = DEFAULT_PLATFORM_PID,
        netconf: bool = False,
        swtpm: tuple[str, ...] = (),
    ) -> None:
        if key_type not in KEY_TYPES:
            raise FleetError(f"unknown key type {key_type!r}; expected one of: {', '.join(KEY_TYPES)}")
        if platform not in FLEET_PLATFORMS:
            raise FleetError(f"unknown platform {platform!r}; expected one of: {', '.join(FLEET_PLATFORMS)}")
        if chassis not in PLATFORM_PIDS:
            raise FleetError(f"unknown chassis {chassis!r}; expected one of: {', '.join(PLATFORM_PIDS)}")
        if devices < 1:
            raise FleetError(f"a fleet needs at least one device, found devices={devices}")
        if swtpm and not netconf:
            raise FleetError("swtpm-backed TPMs answer over NETCONF: expected netconf=True with swtpm")
        if swtpm and not swtpm_available():
            raise FleetError(f"swtpm-backed TPMs need {', '.join(SWTPM_TOOLS)} (Debian: swtpm, swtpm-tools, "
                             "tpm2-tools); found some missing")
        self.state_dir = Path(state_dir)
        self.count = devices
        self.host = host
        self.base_port = base_port
        self.provisioned = provisioned
        self.key_type = key_type
        self.host_key_type = host_key_type
        self.seed = seed
        self.files = files
        self.username = username
        self.progress = progress
        self.platform = platform
        self.chassis = chassis
        self.netconf = netconf
        self.swtpm = tuple(swtpm)  # devices whose node TPMs are real swtpm processes
        self.devices: list[EmulatedDevice] = []
        self._listener: Listener | None = None
        self._alerts: AlertScheduler | None = None

    def __enter__(self) -> "Fleet":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ensure_file_descriptors(self) -> None:
        """One listening socket per device (two with NETCONF), plus connections: raise the soft limit if needed."""
        needed = self.count * (2 if self.netconf else 1) + FD_HEADROOM
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            if target < needed:
                raise FleetError(
                    f"{self.count} devices need about {needed} open files, but the limit is {hard} "
                    "(ulimit -Hn); serve fewer devices per process or raise the limit"
                )

    def start(self) -> None:
        """Create (or reload) every device and listen; all listen when this returns."""
        self._ensure_file_descriptors()
        credentials = self.state_dir / "credentials"
        credentials.mkdir(parents=True, exist_ok=True)
        os.chmod(credentials, 0o700)
        listener = Listener(host=self.host)
        self._listener = listener
        try:
            for index in range(1, self.count + 1):
                platform = self.device_platform(index)
                name = f"{NAME_PREFIXES[platform]}-{index:04d}"
                password_file = credentials / f"{name}.password"
                if password_file.exists():
                    password = password_file.read_text("utf-8").strip()
                else:
                    password = secrets.token_urlsafe(16)
                    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as handle:
                        handle.write(password + "\n")
                device = Device(
                    name, self.state_dir, seed=self.seed * 100_003 + index, files=self.files,
                    host_key_type=self.host_key_type, admin_password=password, username=self.username,
                    platform=platform, chassis=self.chassis,
                )
                if device.platform != platform:
                    raise FleetError(f"{name}: the state directory holds an {device.platform} device, "
                                     f"this fleet asks for {platform}; use another --state-dir")
                if platform == "iosxr" and device.chassis != self.chassis:
                    raise FleetError(f"{name}: the state directory holds an {device.chassis} chassis, "
                                     f"this fleet asks for {self.chassis}; use another --state-dir")
                if platform == "iosxe":
                    device.xe_identity()  # the SUDI identity is factory-made: make it before serving
                elif self.provisioned and device.certificates(SYSTEM_TRUSTPOINT)[1] is None:
                    device.provision(self.key_type)
                port = self.base_port + index - 1 if self.base_port else 0
                try:
                    port = listener.add(device, port)
                except OSError as exc:
                    raise FleetError(f"{name}: cannot listen on {self.host}:{port}: {exc.strerror}") from exc
                netconf_port = None
                if platform == "iosxr" and self.netconf:
                    if not device.netconf_agent_ssh():
                        agent = device.running.set("netconf-yang agent", "netconf-yang agent", submode=True)
                        agent.set("ssh", "ssh")
                    if name in self.swtpm:
                        device.tpm.use_swtpm()
                    try:
                        netconf_port = listener.add(device, 0, netconf_only=True)
                    except OSError as exc:
                        raise FleetError(f"{name}: cannot listen for NETCONF on {self.host}: {exc.strerror}") from exc
                self.devices.append(
                    EmulatedDevice(name, self.host, port, self.username, password, password_file,
                                   device.host_key_line(self.host, port), device, platform, netconf_port)
                )
                if self.progress is not None:
                    self.progress(index, self.count)
        except BaseException:
            listener.stop()
            raise
        unknown = sorted(set(self.swtpm) - {entry.name for entry in self.devices if entry.netconf_port})
        if unknown:
            listener.stop()
            raise FleetError(f"swtpm asked for {', '.join(unknown)}: expected IOS XR devices of this fleet")
        listener.start()
        self._alerts = AlertScheduler(lambda: [entry.device.alerts for entry in self.devices])
        self._alerts.start()

    def device_platform(self, index: int) -> str:
        """The platform of device number `index` (1-based): mixed fleets alternate XR, XE."""
        if self.platform == "mixed":
            return "iosxr" if index % 2 else "iosxe"
        return self.platform

    def sudi_authority(self) -> iosxe.SudiAuthority:
        """The emulated SUDI root and sub-CA every XE device of this fleet chains to (what a
        verifier pins for them)."""
        return iosxe.load_authority(self.state_dir)

    def tpm_authority(self) -> TpmAuthority:
        """The emulated TPM vendor root and attestation sub-CA every node's AK chains to (what a
        verifier pins for TPM evidence)."""
        return load_tpm_authority(self.state_dir)

    def stop(self) -> None:
        if self._alerts is not None:
            self._alerts.stop()
            self._alerts = None
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        for entry in self.devices:
            if entry.name in self.swtpm:
                entry.device.tpm.close()
            entry.device.save()

    def __getitem__(self, name: str) -> EmulatedDevice:
        for entry in self.devices:
            if entry.name == name:
                return entry
        raise KeyError(f"no device named {name!r} in this fleet")

    def set_fault(self, name: str, fault: Fault, **params: Any) -> None:
        """Give device `name` a fault; certificate faults change its credentials at once."""
        device = self[name].device
        device.faults.set(fault, **params)
        if fault in CERTIFICATE_FAULTS:
            device.apply_certificate_fault(fault)

    def clear_faults(self, name: str, fault: Fault | None = None) -> None:
        self[name].device.faults.clear(fault)

    def inventory(self) -> dict[str, Any]:
        return {"devices": [entry.inventory_entry() for entry in self.devices]}

    def write_inventory(self, path: Path) -> None:
        """The YAML inventory (schemas/inventory.schema.json), written atomically."""
        path = Path(path)
        text = "# written by `dossier emulator serve`\n" + yaml.safe_dump(self.inventory(), sort_keys=False)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, "utf-8")
        os.replace(tmp, path)
