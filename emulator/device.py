"""One emulated IOS XR router: its state on disk, its clock, its users, keys and certificates.

Each device keeps everything in its own folder under the state directory, and comes back the
same after a restart:

    <state-dir>/<name>/device.json      identity (seed, serial counter, clock offset, platform,
                                        expiry alerts already sent)
    <state-dir>/<name>/config.json      the committed configuration tree
    <state-dir>/<name>/host_key         SSH host private key (mode 0600)
    <state-dir>/<name>/keys/            crypto key pairs (private keys mode 0600)
    <state-dir>/<name>/certs/<tp>/      ca.pem and router.pem per trustpoint (usage keys: also
                                        router-encryption.pem)
    <state-dir>/<name>/facts.json       packages, histories, inventory (emulator.facts)
    <state-dir>/<name>/fsinv.json       file-system inventory state (emulator.fsinv)
    <state-dir>/<name>/harddisk/        the `harddisk:` file system (`| file`, `dir`, `more`)
    <state-dir>/<name>/sudi/            IOS XE only: SUDI key and certificate (emulator.iosxe)
    <state-dir>/xe-sudi-ca/             IOS XE only: the fleet's emulated SUDI root and sub-CA

Heavy parts (facts, file inventory, key pairs) load on first use, so a fleet of 1,000 idle
devices costs little memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paramiko
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from . import alerts as alerts_mod
from . import facts as facts_mod
from . import fsinv as fsinv_mod
from . import signing
from .config import ConfigNode
from .faults import Fault, FaultSet
from .pki.certificates import make_leaf_certificate, make_root_certificate
from .pki.keys import DEFAULT_KEY_LABEL, KeyPair, delete_keypair, generate_keypair, load_keypairs, save_keypair
from .pki.trustpoints import TrustpointConfig, resolve_trustpoint_keys

__all__ = ["ENCRYPTION_CERTIFICATE", "HARDDISK_PREFIXES", "HOST_KEY_TYPES", "KEY_TYPES", "PLATFORMS", "Device", "DeviceError", "hash_secret"]

# Dossier signing key types a fleet can be provisioned with: (kind, modulus or curve).
KEY_TYPES: dict[str, tuple[str, int | str]] = {
    "rsa2048": ("rsa", 2048),
    "rsa3072": ("rsa", 3072),
    "rsa4096": ("rsa", 4096),
    "ecdsa-p256": ("ecdsa", "nistp256"),
    "ecdsa-p384": ("ecdsa", "nistp384"),
    "ecdsa-p521": ("ecdsa", "nistp521"),
    "dsa2048": ("dsa", 2048),
}
HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")
# Device personalities: the command table, prompt and identity each one has (emulator.commands).
PLATFORMS = ("iosxr", "iosxe")

SYSTEM_TRUSTPOINT = "system-trustpoint"
# The certificate file (under certs/<tp>/) of the encryption half of RSA usage keys.
ENCRYPTION_CERTIFICATE = "router-encryption"
ROOT_KEY_LABEL = "system-root-key"
ENROLL_KEY_LABEL = "system-enroll-key"
DEFAULT_DOMAIN = "example.com"
HARDDISK_PREFIXES = ("harddisk:", "disk0:", "/harddisk:")
# A file name on harddisk: printable, no longer than a POSIX file system allows.
MAX_FILE_NAME_CHARS = 255

# Built-in task groups (IOS XR predefines these); "*" grants every task.
BUILTIN_TASKGROUPS: dict[str, set[tuple[str, str]]] = {
    "root-system": {("*", "*")},
    "root-lr": {("*", "*")},
    "netadmin": {("*", "*")},
    "sysadmin": {("*", "*")},
    "cisco-support": {("*", "*")},
    "operator": {("read", "basic-services"), ("read", "system"), ("read", "sysmgr")},
}


class DeviceError(Exception):
    """A device-level failure with the IOS XR style text to print (`message`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# scrypt cost: 2**10 x 8 x 128 bytes = 1 MiB a hash, low because a fleet of 1,000 devices
# hashes 1,000 admin passwords at start-up, on a 2-core machine.
SCRYPT_N = 2**10


def hash_secret(password: str, *, salt: bytes | None = None) -> str:
    """`secret 10` value: scrypt, so no plain password is ever stored in the configuration."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=8, p=1, dklen=32)
    return "$scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_secret(password: str, stored: str) -> bool:
    try:
        _, scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    salt = base64.b64decode(salt_b64)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=8, p=1, dklen=32)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file.

    No fsync: this is a test device, and a large fleet starts far faster without a disk wait
    per file; a power cut may lose the last change, never corrupt a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass
class Clock:
    """The device clock: real time shifted by `offset` seconds and sped up by `rate` (tests)."""

    offset: float = 0.0
    rate: float = 1.0
    _real0: float = 0.0

    def __post_init__(self) -> None:
        self._real0 = time.time()

    def timestamp(self) -> float:
        real = time.time()
        return self._real0 + (real - self._real0) * self.rate + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), tz=timezone.utc)


class Device:
    """State and behaviour shared by every SSH session to one emulated router."""

    def __init__(
        self,
        name: str,
        state_dir: Path,
        *,
        seed: int = 0,
        files: int = 3000,
        host_key_type: str = "ed25519",
        admin_password: str | None = None,
        username: str = "admin",
        platform: str = "iosxr",
        chassis: str = facts_mod.DEFAULT_PLATFORM_PID,
    ) -> None:
        self.name = name
        self.folder = Path(state_dir) / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.faults = FaultSet()
        self.sessions: deque[float] = deque()  # recent session start times, for the rate limit
        self.username = username
        info_path = self.folder / "device.json"
        if info_path.exists():
            self.info = json.loads(info_path.read_text("utf-8"))
        else:
            self.info = {
                "name": name,
                "seed": seed,
                "files": files,
                "serial_counter": 0x0B61,
                "clock_offset": 0.0,
                "host_key_type": host_key_type,
                "created": time.time(),
                "platform": platform,
                "chassis": chassis,
            }
        if self.info.get("platform", "iosxr") not in PLATFORMS:
            raise DeviceError(f"% Unknown platform {self.info['platform']!r} in {info_path}; "
                              f"expected one of {', '.join(PLATFORMS)}")
        self.clock = Clock(offset=self.info.get("clock_offset", 0.0))
        self.host_key = self._load_or_make_host_key(self.info["host_key_type"])
        config_path = self.folder / "config.json"
        if config_path.exists():
            self.running = ConfigNode.from_dict(json.loads(config_path.read_text("utf-8")))
        else:
            self.running = self._initial_config(admin_password or secrets.token_urlsafe(12))
        self.last_change = self.info.get("last_change", self.timestamp_text(self.clock.now()))
        self._facts: Any = None
        self._fsinv: Any = None
        self._keys: dict[tuple[str, str], KeyPair] | None = None
        self._booted = self.clock.now()
        self._boot_rsa_checked = False
        self._authorized_keys: list[str] | None = None
        self._verified: dict[str, bytes] = {}
        self._xe: Any = None
        self._tpm: Any = None
        self.alerts = alerts_mod.ExpiryAlerts(self)
        if not config_path.exists() or not info_path.exists():
            self.save()

    @property
    def platform(self) -> str:
        """`iosxr` or `iosxe`: which command table, prompt and identity the device has."""
        return str(self.info.get("platform", "iosxr"))

    @property
    def chassis(self) -> str:
        """The IOS XR chassis PID the device's facts are made for (its route processors)."""
        return str(self.info.get("chassis", facts_mod.DEFAULT_PLATFORM_PID))

    def xe_identity(self) -> Any:
        """The IOS XE SUDI key, certificate and measurements (made on first use, then kept)."""
        with self.lock:
            if self._xe is None:
                if self.platform != "iosxe":
                    raise DeviceError(f"% {self.name} is an {self.platform} device; it has no IOS XE SUDI identity")
                from . import iosxe

                self._xe = iosxe.XeIdentity(
                    self.folder, iosxe.load_authority(self.folder.parent),
                    iosxe.xe_facts(self.hostname, int(self.info["seed"])), now=self.clock.now(),
                )
            return self._xe

    @property
    def tpm(self) -> Any:
        """The node TPMs behind the NETCONF attestation RPCs (emulator.tpm.model.DeviceTpm)."""
        with self.lock:
            if self._tpm is None:
                from .tpm.model import DeviceTpm

                self._tpm = DeviceTpm(self)
            return self._tpm

    # -- persistence -----------------------------------------------------------------------
    def save(self) -> None:
        with self.lock:
            self.info["clock_offset"] = self.clock.offset
            self.info["last_change"] = self.last_change
            _atomic_write(self.folder / "device.json", json.dumps(self.info, indent=1).encode())
            _atomic_write(self.folder / "config.json", json.dumps(self.running.to_dict(), indent=1).encode())
            if self._facts is not None:
                _atomic_write(self.folder / "facts.json", json.dumps(self._facts.to_dict()).encode())
            self._save_fsinv()

    def _load_or_make_host_key(self, kind: str) -> paramiko.PKey:
        path = self.folder / "host_key"
        if not path.exists():
            if kind == "ed25519":
                private: Any = ed25519.Ed25519PrivateKey.generate()
            elif kind == "ecdsa":
                private = ec.generate_private_key(ec.SECP256R1())
            elif kind == "rsa":
                from cryptography.hazmat.primitives.asymmetric import rsa

                private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
            else:
                raise DeviceError(f"% Unknown host key type {kind!r}; expected one of {', '.join(HOST_KEY_TYPES)}")
            pem = private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
            _atomic_write(path, pem, 0o600)
        text = path.read_text("ascii")
        for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                return key_class.from_private_key(io.StringIO(text))
            except (paramiko.SSHException, ValueError):
                continue
        raise DeviceError(f"% Host key file {path} is damaged: expected an OpenSSH private key")

    def host_key_line(self, host: str, port: int) -> str:
        """The device's host key in OpenSSH known_hosts form."""
        where = host if port == 22 else f"[{host}]:{port}"
        return f"{where} {self.host_key.get_name()} {self.host_key.get_base64()}"

    def _initial_config(self, admin_password: str) -> ConfigNode:
        root = ConfigNode()
        root.set(f"hostname {self.name}", "hostname")
        root.set(f"domain name {DEFAULT_DOMAIN}", "domain name")
        user = root.set(f"username {self.username}", f"username {self.username}", submode=True)
        user.set("group root-lr", "group root-lr")
        user.set("group cisco-support", "group cisco-support")
        user.set(f"secret 10 {hash_secret(admin_password)}", "secret")
        # Trust Insights-ready: file-system inventory snapshots every hour (4 x 15 minutes).
        fsinv = root.set("filesystem-inventory", "filesystem-inventory", submode=True)
        fsinv.set("snapshot-interval 4", "snapshot-interval")
        return root

    # -- lazily loaded parts ---------------------------------------------------------------
    @property
    def facts(self) -> Any:
        with self.lock:
            if self._facts is None:
                path = self.folder / "facts.json"
                if path.exists():
                    self._facts = facts_mod.DeviceFacts.from_dict(json.loads(path.read_text("utf-8")))
                else:
                    self._facts = facts_mod.make_facts(
                        self.name, self.info["seed"], files=self.info["files"], platform_pid=self.chassis
                    )
                    _atomic_write(path, json.dumps(self._facts.to_dict()).encode())
            return self._facts

    @property
    def fsinv(self) -> dict[str, Any] | None:
        """File-system inventory per RP node, or None while `filesystem-inventory` is not
        configured (the dossier then reports the item as not configured, as a router does)."""
        with self.lock:
            interval = self.snapshot_interval()
            if interval is None:
                return None
            if self._fsinv is None:
                path = self.folder / "fsinv.json"
                if path.exists():
                    stored = json.loads(path.read_text("utf-8"))
                    self._fsinv = {
                        node: fsinv_mod.FilesystemInventory.from_dict(data) for node, data in stored.items()
                    }
                else:
                    now = self.clock.timestamp()
                    self._fsinv = {
                        node: fsinv_mod.FilesystemInventory.for_facts(self.facts, node, now=now, snapshot_interval=interval)
                        for node in self.facts.rp_nodes
                    }
                    self._save_fsinv()
            return self._fsinv

    def _save_fsinv(self) -> None:
        if self._fsinv is not None:
            data = {node: inventory.to_dict() for node, inventory in self._fsinv.items()}
            _atomic_write(self.folder / "fsinv.json", json.dumps(data).encode())

    @property
    def keys(self) -> dict[tuple[str, str], KeyPair]:
        with self.lock:
            if self._keys is None:
                self._keys = load_keypairs(self.folder / "keys")
            return self._keys

    def store_key(self, keypair: KeyPair) -> None:
        with self.lock:
            save_keypair(keypair, self.folder / "keys")
            self.keys[(keypair.kind, keypair.label)] = keypair

    def boot_rsa_key(self) -> None:
        """The seed's boot-time RSA key ("From Cisco IOS XR Software Release 7.0.1 and later,
        the crypto keys are auto-generated at the time of router boot up"): `the_default`,
        dated at boot, when the device has no RSA key. Made on the first look at RSA keys after
        the start rather than in __init__, so a large fleet pays only for keys someone uses;
        zeroized, it stays gone until the next start."""
        with self.lock:
            if self._boot_rsa_checked:
                return
            self._boot_rsa_checked = True
            if not any(kind == "rsa" for kind, _ in self.keys):
                self.store_key(generate_keypair("rsa", DEFAULT_KEY_LABEL, now=self._booted))

    def delete_key(self, kind: str, label: str) -> None:
        with self.lock:
            delete_keypair(self.folder / "keys", kind, label)
            self.keys.pop((kind, label), None)

    # -- certificates ----------------------------------------------------------------------
    def certificates(self, trustpoint: str) -> tuple[x509.Certificate | None, x509.Certificate | None]:
        folder = self.folder / "certs" / trustpoint
        ca = router = None
        if (folder / "ca.pem").exists():
            ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
        if (folder / "router.pem").exists():
            router = x509.load_pem_x509_certificate((folder / "router.pem").read_bytes())
        return ca, router

    def encryption_certificate(self, trustpoint: str) -> x509.Certificate | None:
        """The router certificate of the encryption key of RSA usage keys (router.pem holds the
        signature key's), or None."""
        path = self.folder / "certs" / trustpoint / f"{ENCRYPTION_CERTIFICATE}.pem"
        return x509.load_pem_x509_certificate(path.read_bytes()) if path.exists() else None

    def store_certificate(self, trustpoint: str, which: str, cert: x509.Certificate | None) -> None:
        path = self.folder / "certs" / trustpoint / f"{which}.pem"
        with self.lock:
            if cert is None:
                path.unlink(missing_ok=True)
            else:
                _atomic_write(path, cert.public_bytes(serialization.Encoding.PEM))
            self.alerts.invalidate()

    def trustpoint_names_with_certs(self) -> list[str]:
        folder = self.folder / "certs"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else []

    def next_serial(self) -> int:
        with self.lock:
            self.info["serial_counter"] += 1
            self.save()
            return self.info["serial_counter"]

    # -- configuration-derived facts -------------------------------------------------------
    @property
    def hostname(self) -> str:
        return self.running.value("hostname") or self.name

    @property
    def domain(self) -> str | None:
        return self.running.value("domain name")

    @property
    def fqdn(self) -> str:
        return f"{self.hostname}.{self.domain}" if self.domain else self.hostname

    def snapshot_interval(self) -> int | None:
        node = self.running.find("filesystem-inventory")
        if node is None:
            return None
        value = node.value("snapshot-interval")
        return int(value) if value else None

    def netconf_agent_ssh(self) -> bool:
        """`netconf-yang agent` with `ssh` configured: the separate NETCONF port serves clients."""
        agent = self.running.find("netconf-yang agent")
        return agent is not None and agent.find("ssh") is not None

    def rate_limit(self) -> int | None:
        value = self.running.value("ssh server rate-limit")
        return int(value) if value else None

    def line_timeouts(self) -> tuple[float | None, float | None]:
        """(exec-timeout, session-timeout) in seconds; None means no limit (0 or unset)."""
        node = self.running.find("line default")
        if node is None:
            return (10 * 60.0, None)  # IOS XR default exec-timeout: 10 minutes
        exec_value = node.value("exec-timeout")
        session_value = node.value("session-timeout")
        exec_s: float | None = 10 * 60.0
        if exec_value is not None:
            parts = [int(p) for p in exec_value.split()]
            exec_s = parts[0] * 60.0 + (parts[1] if len(parts) > 1 else 0)
            exec_s = exec_s or None
        session_s = int(session_value) * 60.0 if session_value else None
        return exec_s, session_s or None

    # -- users and authorization -----------------------------------------------------------
    def _user_node(self, username: str) -> ConfigNode | None:
        return self.running.find(f"username {username}")

    def check_password(self, username: str, password: str) -> bool:
        if Fault.AUTH_FAILURE in self.faults:
            return False
        node = self._user_node(username)
        if node is None:
            return False
        stored = node.value("secret")
        if not stored:
            return False
        stored = stored.split(None, 1)[-1]
        # scrypt costs tens of milliseconds of the emulator's one core per login; a fleet polled
        # hundreds of times a second remembers the last password that matched each stored secret.
        fast = hashlib.sha256(password.encode()).digest()
        cached = self._verified.get(stored)
        if cached is not None and hmac.compare_digest(cached, fast):
            return True
        if check_secret(password, stored):
            self._verified[stored] = fast
            return True
        return False

    def authorized_keys(self) -> list[str]:
        with self.lock:
            if self._authorized_keys is None:
                path = self.folder / "authorized_keys.json"
                self._authorized_keys = json.loads(path.read_text("utf-8")) if path.exists() else []
            return self._authorized_keys

    def add_authorized_key(self, username: str, key_base64: str) -> None:
        with self.lock:
            keys = self.authorized_keys()
            entry = f"{username} {key_base64}"
            if entry not in keys:
                keys.append(entry)
            _atomic_write(self.folder / "authorized_keys.json", json.dumps(keys).encode())

    def check_publickey(self, username: str, key: paramiko.PKey) -> bool:
        if Fault.AUTH_FAILURE in self.faults or self._user_node(username) is None:
            return False
        return f"{username} {key.get_base64()}" in self.authorized_keys()

    def user_tasks(self, username: str) -> set[tuple[str, str]]:
        node = self._user_node(username)
        if node is None:
            return set()
        tasks: set[tuple[str, str]] = set()
        for group_line in node.lines("group"):
            tasks |= self._group_tasks("usergroup", group_line.line.split()[1], set())
        return tasks

    def _group_tasks(self, kind: str, name: str, seen: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """Task IDs of a `usergroup` or `taskgroup`, following `taskgroup` and `inherit` lines
        (each group once, so an inheritance loop ends)."""
        if (kind, name) in seen:
            return set()
        seen.add((kind, name))
        if name in BUILTIN_TASKGROUPS:
            return set(BUILTIN_TASKGROUPS[name])
        node = self.running.find(f"{kind} {name}")
        tasks: set[tuple[str, str]] = set()
        for child in node.children if node is not None else []:
            words = child.line.split()
            if kind == "usergroup" and words[0] == "taskgroup":
                tasks |= self._group_tasks("taskgroup", words[1], seen)
            elif kind == "taskgroup" and words[0] == "task" and len(words) == 3:
                tasks.add((words[1], words[2]))
            elif words[:2] == ["inherit", kind]:
                tasks |= self._group_tasks(kind, words[2], seen)
        return tasks

    def authorize(self, username: str, required: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The task IDs in `required` that `username` lacks (empty: allowed)."""
        tasks = self.user_tasks(username)
        if ("*", "*") in tasks:
            return []
        return [need for need in required if need not in tasks]

    # -- SSH admission ---------------------------------------------------------------------
    def admit_session(self) -> bool:
        """Rate limit (`ssh server rate-limit N`: N sessions a minute) and the RATE_LIMIT fault."""
        if Fault.RATE_LIMIT in self.faults:
            return False
        limit = self.rate_limit()
        now = time.monotonic()
        with self.lock:
            while self.sessions and now - self.sessions[0] > 60.0:
                self.sessions.popleft()
            if limit is not None and len(self.sessions) >= limit:
                return False
            self.sessions.append(now)
        return True

    # -- harddisk: -------------------------------------------------------------------------
    def harddisk_path(self, name: str) -> Path:
        """Map `harddisk:foo.json` / `harddisk:/foo.json` into the device's folder, refusing `..`,
        control characters and over-long names with an IOS-style error."""
        for prefix in HARDDISK_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        name = name.lstrip("/")
        expected = f"expected a file on harddisk: (printable, each part at most {MAX_FILE_NAME_CHARS} characters)"
        if not name or not name.isprintable() or any(len(part) > MAX_FILE_NAME_CHARS for part in name.split("/")):
            raise DeviceError(f"% Invalid file name {name[:80]!r}: {expected}")
        root = (self.folder / "harddisk").resolve()
        path = (root / name).resolve()
        if root not in path.parents:
            raise DeviceError(f"% Invalid file name {name!r}: {expected}")
        return path

    # -- time ------------------------------------------------------------------------------
    @staticmethod
    def timestamp_text(when: datetime) -> str:
        """`Sun Oct 20 13:07:24.136 UTC`, the line IOS XR prints before command output."""
        return when.strftime("%a %b %d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"

    def advance_clock(self, seconds: float) -> None:
        """Move the device clock forward (tests use it to make snapshot blocks and certificate
        expiry alerts come due); the alerts due at the new time go out before this returns."""
        with self.lock:
            self.clock.offset += seconds
            self.alerts.check()
            self.save()

    # -- signing credentials ---------------------------------------------------------------
    def provision(self, key_type: str = "ecdsa-p256") -> None:
        """Do what the seed's "How to Integrate" section does: keys, trustpoint, root, leaf."""
        kind, size = KEY_TYPES[key_type]
        now = self.clock.now()
        with self.lock:
            for label in (ROOT_KEY_LABEL, ENROLL_KEY_LABEL):
                keypair = generate_keypair(
                    kind, label,
                    modulus=size if isinstance(size, int) else None,
                    curve=size if isinstance(size, str) else None,
                    now=now,
                )
                self.store_key(keypair)
            tp = self.running.set(
                f"crypto ca trustpoint {SYSTEM_TRUSTPOINT}", f"crypto ca trustpoint {SYSTEM_TRUSTPOINT}", submode=True
            )
            tp.set(f"keypair {kind} {ENROLL_KEY_LABEL}", "keypair")
            tp.set(f"ca-keypair {kind} {ROOT_KEY_LABEL}", "ca-keypair")
            tp.set(f"subject-name CN={self.hostname}-leaf,O=trust-dossier emulator,C=US", "subject-name")
            tp.set(
                f"subject-name ca-certificate CN={self.hostname}-ca,O=trust-dossier emulator,C=US",
                "subject-name ca-certificate",
            )
            tp.set("enrollment url self", "enrollment-method")
            tp.set("message-digest sha256", "message-digest")
            self.save()
            self.issue_root(SYSTEM_TRUSTPOINT)
            self.issue_leaf(SYSTEM_TRUSTPOINT, include_serial=True, ip_address=None)

    def trustpoint_config(self, name: str) -> TrustpointConfig:
        node = self.running.find(f"crypto ca trustpoint {name}")
        if node is None:
            raise DeviceError(f"% Trustpoint {name} is not configured")
        return trustpoint_from_node(name, node)

    def issue_root(self, trustpoint: str, **validity: Any) -> x509.Certificate:
        tp = self.trustpoint_config(trustpoint)
        root_key, _ = resolve_trustpoint_keys(tp, self.keys)
        if root_key is None:
            raise DeviceError(f"% No ca-keypair configured for trustpoint {trustpoint}")
        cert = make_root_certificate(
            tp, root_key, chassis_serial=self.facts.chassis_serial, fqdn=self.fqdn,
            serial_number=self.next_serial(), now=self.clock.now(), **validity,
        )
        self.store_certificate(trustpoint, "ca", cert)
        return cert

    def issue_leaf(self, trustpoint: str, *, include_serial: bool, ip_address: str | None,
                   encryption: bool = False, **validity: Any) -> x509.Certificate:
        """Self-enrollment: the router certificate of the trustpoint's key (`encryption`: of the
        encryption half of its RSA usage keys, kept in router-encryption.pem)."""
        tp = self.trustpoint_config(trustpoint)
        self.boot_rsa_key()  # the default RSA key a trustpoint without keypair certifies
        ca_cert, _ = self.certificates(trustpoint)
        if ca_cert is None:
            raise DeviceError(f"% Trustpoint {trustpoint} is not authenticated: run 'crypto ca authenticate {trustpoint}' first")
        root_key, leaf_key = resolve_trustpoint_keys(tp, self.keys)
        if root_key is None:
            raise DeviceError(f"% Trustpoint {trustpoint} needs a ca-keypair for self enrollment")
        if encryption:
            if leaf_key.encryption_key is None:
                raise DeviceError(f"% Key pair {leaf_key.label} of trustpoint {trustpoint} has no encryption "
                                  "key: expected RSA usage keys")
            leaf_key = dict(leaf_key.halves())["encryption"]
        cert = make_leaf_certificate(
            tp, leaf_key, root_cert=ca_cert, root_key=root_key,
            chassis_serial=self.facts.chassis_serial if include_serial else None,
            fqdn=self.fqdn, ip_address=ip_address, serial_number=self.next_serial(),
            now=self.clock.now(), **validity,
        )
        self.store_certificate(trustpoint, ENCRYPTION_CERTIFICATE if encryption else "router", cert)
        return cert

    def signing_credentials(self, trustpoint: str = SYSTEM_TRUSTPOINT) -> tuple[KeyPair, list[tuple[str, x509.Certificate]]]:
        """The leaf key and the chain (root first, leaf last) `utility sign` uses."""
        ca_cert, router_cert = self.certificates(trustpoint)
        key: KeyPair | None = None
        node = self.running.find(f"crypto ca trustpoint {trustpoint}")
        if node is not None:
            key = self.keys.get(trustpoint_from_node(trustpoint, node).leaf_key_ref())
        signing.require_enrolled(ca_cert, router_cert, key, trustpoint=trustpoint)
        assert ca_cert is not None and router_cert is not None and key is not None
        return key, signing.certificate_chain(ca_cert, router_cert, trustpoint)

    def other_key(self) -> KeyPair:
        """A key that is not the leaf's, of the same type (the OTHER_KEY fault signs with it)."""
        with self.lock:
            key, _ = self.signing_credentials()
            existing = self.keys.get((key.kind, "fault-other-key"))
            if existing is None:
                existing = generate_keypair(
                    key.kind, "fault-other-key",
                    modulus=key.size if key.kind != "ecdsa" else None,
                    curve=key.curve if key.kind == "ecdsa" else None,
                    now=self.clock.now(),
                )
                self.store_key(existing)
            return existing

    def on_commit(self) -> None:
        """Apply what a committed configuration changes outside the tree itself."""
        self.alerts.invalidate()
        inventories = self.fsinv
        interval = self.snapshot_interval()
        if inventories is not None and interval is not None:
            for inventory in inventories.values():
                inventory.set_snapshot_interval(interval, self.clock.timestamp())

    # -- certificate faults ----------------------------------------------------------------
    def apply_certificate_fault(self, fault: Fault) -> None:
        """Change the device's credentials the way the fault says (done once, when set)."""
        tp = SYSTEM_TRUSTPOINT
        if self.platform == "iosxe":
            # The SUDI root is the vendor's, shared by the fleet: a device cannot replace it.
            if fault is Fault.ROOT_REPLACED:
                raise DeviceError(f"% {fault.value} is not emulated for IOS XE devices: the SUDI root "
                                  "belongs to the vendor; expected expired-leaf or rekeyed-leaf")
            with self.lock:
                self.xe_identity().reissue(now=self.clock.now(), new_key=fault is Fault.REKEYED_LEAF,
                                           expired=fault is Fault.EXPIRED_LEAF,
                                           malformed_san=fault is Fault.MALFORMED_SAN)
            return
        if fault is Fault.MALFORMED_SAN:
            raise DeviceError(f"% {fault.value} is emulated for IOS XE devices only (their SUDI certificate); "
                              "expected expired-leaf, rekeyed-leaf or root-replaced")
        with self.lock:
            if fault is Fault.EXPIRED_LEAF:
                now = self.clock.now()
                self.issue_leaf(tp, include_serial=True, ip_address=None,
                                not_before=now - timedelta(days=400), not_after=now - timedelta(days=1))
            elif fault in (Fault.REKEYED_LEAF, Fault.ROOT_REPLACED):
                config = self.trustpoint_config(tp)
                labels = [config.keypair] + ([config.ca_keypair] if fault is Fault.ROOT_REPLACED else [])
                for kind, label in labels:
                    old = self.keys[(kind, label)]
                    self.store_key(generate_keypair(
                        kind, label,
                        modulus=old.size if kind != "ecdsa" else None,
                        curve=old.curve if kind == "ecdsa" else None,
                        now=self.clock.now(),
                    ))
                if fault is Fault.ROOT_REPLACED:
                    self.issue_root(tp)
                self.issue_leaf(tp, include_serial=True, ip_address=None)


def trustpoint_from_node(name: str, node: ConfigNode) -> TrustpointConfig:
    """Read a `crypto ca trustpoint` submode's lines into the PKI module's settings object."""

    def pair(key: str) -> tuple[str, str] | None:
        value = node.value(key)
        if not value:
            return None
        kind, label = value.split(None, 1)
        return (kind, label)

    def integer(key: str) -> int | None:
        value = node.value(key)
        return int(value) if value else None

    enrollment: str | None = None
    method = node.find("enrollment-method")  # `enrollment url <url>` or `enrollment terminal`
    if method is not None:
        enrollment = "terminal" if method.line == "enrollment terminal" else method.line.split()[-1]
    ku_cert = node.value("key-usage certificate")
    ku_ca = node.value("key-usage ca-certificate")
    return TrustpointConfig(
        name=name,
        keypair=pair("keypair"),
        ca_keypair=pair("ca-keypair"),
        subject_name=node.value("subject-name"),
        ca_subject_name=node.value("subject-name ca-certificate"),
        enrollment=enrollment,
        key_usage_certificate=ku_cert.split() if ku_cert else None,
        key_usage_ca_certificate=ku_ca.split() if ku_ca else None,
        lifetime_certificate=integer("lifetime certificate"),
        lifetime_ca_certificate=integer("lifetime ca-certificate"),
        message_digest=node.value("message-digest"),
        rsakeypair=node.value("rsakeypair"),
        enrollment_retry_period=integer("enrollment retry period"),
        enrollment_retry_count=integer("enrollment retry count"),
        query_url=node.value("query url"),
        vrf=node.value("vrf"),
    )
