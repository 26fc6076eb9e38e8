"""The IOS XE personality: an emulated SUDI PKI and the signed integrity commands Cisco documents.

Layouts and signed bytes follow `../shared/vectors/cisco-ios-xe/README.md` (checked against
real captures):

- `show platform sudi certificate sign [nonce N]`: root, sub-CA and device certificates as PEM
  (64-character lines), `Signature version: 1`, `Signature:`, one upper-case hex line;
  signed = header || DER(root) || DER(sub-CA) || DER(device).
- `show platform integrity [sign [nonce N]]`: `Label: value` lines, PCR0/PCR8, and with `sign`
  the signature; signed = header || PCR0 || PCR8, the PCRs folded from the printed hashes.
- `show system integrity all {trust_chain|measurement|compliance} nonce N` (v2): one block per
  location, PEM with 76-character lines, `Signature:` / `Version: 1` / `Value:` / hex.

header = uint64 BE nonce || uint32 BE version with a nonce, uint32 BE version alone without.
Nonces are decimal and fit in 64 bits. Every signature is RSA PKCS#1 v1.5 with SHA-256 under
the device's SUDI key (RSA-2048). This module is the device: it shares no code with `verifier`.

The SUDI authority (an emulated root and sub-CA, like Cisco Root CA 2099 and High Assurance SUDI
CA) is one per state directory, shared by every XE device of a fleet, as Cisco's is shared by
every real device. Its certificates are what a verifier pins; nothing here is Cisco's.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import struct
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from .grammar import Match, Row
from .nonce import parse_decimal_nonce

__all__ = [
    "SIGNATURE_VERSION",
    "SignFaults",
    "SudiAuthority",
    "XE_SHOW_ROWS",
    "XeError",
    "XeFacts",
    "XeIdentity",
    "integrity_pcrs",
    "load_authority",
    "pem_lines",
    "signed_header",
    "xe_facts",
]

SIGNATURE_VERSION = 1  # `Signature version: 1` in every real sample
SUDI_KEY_BITS = 2048  # every real SUDI device key is RSA-2048 (README "Trust anchors")
CA_KEY_BITS = 2048
RSA_EXPONENT = 65537
PEM_WIDTH_V1 = 64  # `show platform sudi certificate sign`: PEM body lines of 64 characters
PEM_WIDTH_V2 = 76  # `show system integrity ...`: base64 lines of 76 characters
LOCATION_RULE = "-" * 33  # the line around each `LOCATION ...` header in v2 output
OID_CHIP_ID = x509.ObjectIdentifier("1.3.6.1.4.1.9.21.2.3")  # SUDI SubjectAltName otherName
AUTHORITY_DIR = "xe-sudi-ca"  # under the fleet's state directory, beside the device folders
# Emulated CA lifetimes mirror Cisco Root CA 2099 / High Assurance SUDI CA (2016..2099).
CA_NOT_BEFORE = datetime(2016, 8, 9, tzinfo=timezone.utc)
CA_NOT_AFTER = datetime(2099, 8, 9, tzinfo=timezone.utc)

DEFAULT_STALE_NONCE = 1325  # WRONG_NONCE without a `nonce` parameter: a nonce from a real sample


class XeError(Exception):
    """An XE command refused; `message` is the IOS XE text to print (starts with `% `)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message if message.endswith("\n") else message + "\n"


# --- small helpers ------------------------------------------------------------------------------


def signed_header(nonce: int | None, version: int = SIGNATURE_VERSION) -> bytes:
    """uint64 BE nonce || uint32 BE version; only the version when no nonce was given."""
    if nonce is None:
        return struct.pack(">I", version)
    return struct.pack(">QI", nonce, version)


def pem_lines(der: bytes, width: int) -> list[str]:
    """A certificate as PEM lines with a body `width` characters wide."""
    body = base64.b64encode(der).decode("ascii")
    return (["-----BEGIN CERTIFICATE-----"]
            + [body[i : i + width] for i in range(0, len(body), width)]
            + ["-----END CERTIFICATE-----"])


def _extend(pcr: bytes, measurement_hex: str) -> bytes:
    """E(p, m) = SHA-256(p || SHA-256(hexdecode(m))), the README's fold."""
    return hashlib.sha256(pcr + hashlib.sha256(bytes.fromhex(measurement_hex)).digest()).digest()


def integrity_pcrs(boot0_hash: str, boot_loader_hash: str, os_hashes: list[str]) -> tuple[bytes, bytes]:
    """PCR0 = E(E(0, boot 0), boot loader); PCR8 = E over the OS hashes in printed order."""
    pcr0 = _extend(_extend(bytes(32), boot0_hash), boot_loader_hash)
    pcr8 = bytes(32)
    for value in os_hashes:
        pcr8 = _extend(pcr8, value)
    return pcr0, pcr8


def _sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256()).hex().upper()


def _write_private(path: Path, key: Any) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _write(path, pem, 0o600)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _load_private(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise XeError(f"% SUDI key {path} is damaged: expected an RSA private key")
    return key


# --- the emulated SUDI authority ----------------------------------------------------------------


@dataclass
class SudiAuthority:
    """The emulated Cisco-like SUDI root and sub-CA that issue every XE device certificate."""

    root: x509.Certificate
    sub_ca: x509.Certificate
    sub_ca_key: rsa.RSAPrivateKey

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def issue_device(self, key: rsa.RSAPrivateKey, *, pid: str, serial: str, chip_id: str,
                     now: datetime, not_after: datetime = CA_NOT_AFTER,
                     malformed_san: bool = False) -> x509.Certificate:
        """A SUDI device certificate as Cisco's look: KeyUsage, BasicConstraints CA=false and a
        ChipID otherName only; no AKI, SKI or EKU (README "chain-building pitfalls").
        `malformed_san` (the MALFORMED_SAN fault): the subjectAltName's value is not DER, in a
        certificate the sub-CA signs all the same (a hostile device's output)."""
        subject = x509.Name([
            x509.NameAttribute(NameOID.SERIAL_NUMBER, f"PID:{pid} SN:{serial}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cisco"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ACT-2 Lite SUDI"),
            x509.NameAttribute(NameOID.COMMON_NAME, pid),
        ])
        text = f"ChipID={chip_id}".encode("ascii")
        other_name = x509.OtherName(OID_CHIP_ID, b"\x13" + bytes([len(text)]) + text)  # PrintableString
        san: x509.ExtensionType = x509.SubjectAlternativeName([other_name])
        if malformed_san:  # a SEQUENCE that claims 3 bytes and holds 2
            san = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x02\x01")
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.sub_ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now - timedelta(days=1), not_after - timedelta(days=1)))
            .not_valid_after(not_after)
            .add_extension(x509.KeyUsage(True, True, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(san, critical=False)
            .sign(self.sub_ca_key, hashes.SHA256())
        )


_AUTHORITY_LOCK = threading.Lock()
_AUTHORITIES: dict[Path, Any] = {}  # per vendor CA folder (load_vendor_ca)
_CA = TypeVar("_CA")


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trust-dossier emulator"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _ca_certificate(subject: x509.Name, issuer: x509.Name, public: Any, signer: Any,
                    issuer_public: Any, path_length: int | None) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(CA_NOT_BEFORE)
        .not_valid_after(CA_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer != subject:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
    return builder.sign(signer, hashes.SHA256())


def load_vendor_ca(folder: Path, root_name: str, sub_name: str, new_key: Callable[[], Any],
                   load_key: Callable[[Path], Any],
                   make: Callable[[x509.Certificate, x509.Certificate, Any], _CA]) -> _CA:
    """An emulated vendor's two-tier CA under `folder` (`root.pem`, `sub-ca.pem`, `sub-ca.key` at
    0600): `make(root, sub_ca, sub_ca_key)`, read with `load_key` if stored, else made with keys
    from `new_key` on first use; one per folder for the process (the SUDI and TPM vendor CAs)."""
    folder = folder.resolve()
    with _AUTHORITY_LOCK:
        cached = _AUTHORITIES.get(folder)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        root_path, sub_path, key_path = folder / "root.pem", folder / "sub-ca.pem", folder / "sub-ca.key"
        if root_path.exists() and sub_path.exists() and key_path.exists():
            authority = make(x509.load_pem_x509_certificate(root_path.read_bytes()),
                             x509.load_pem_x509_certificate(sub_path.read_bytes()), load_key(key_path))
        else:
            root_key, sub_key = new_key(), new_key()
            root_x509_name = _ca_name(root_name)
            root = _ca_certificate(root_x509_name, root_x509_name, root_key.public_key(), root_key,
                                   root_key.public_key(), None)
            sub_ca = _ca_certificate(_ca_name(sub_name), root_x509_name, sub_key.public_key(), root_key,
                                     root_key.public_key(), 0)
            # The root key is not kept: nothing after this needs it, as nothing on a device has it.
            _write_private(key_path, sub_key)
            _write(sub_path, sub_ca.public_bytes(serialization.Encoding.PEM))
            _write(root_path, root.public_bytes(serialization.Encoding.PEM))
            authority = make(root, sub_ca, sub_key)
        _AUTHORITIES[folder] = authority
        return authority


def load_authority(state_dir: Path) -> SudiAuthority:
    """The fleet's SUDI authority under `state_dir/xe-sudi-ca`, made on first use."""
    return load_vendor_ca(Path(state_dir) / AUTHORITY_DIR, "Emulated SUDI Root CA 2099",
                          "Emulated High Assurance SUDI CA",
                          lambda: rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=CA_KEY_BITS),
                          _load_private, SudiAuthority)


# --- device content -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _XePlatform:
    pid: str
    family: str  # image file name prefix
    boot0_version: str
    boot_loader_version: str
    boot_loader_hash_hex: int  # 128 on most, 64 on the C1111 (README (b))
    os_hashes_list: bool  # `OS Hashes:` list (.bin then .pkg) instead of one `OS Hash`
    boot_loader_first: bool  # Cat3K prints Boot Loader before Boot 0
    blank_before_signature: bool  # SUDI output: a blank line after the last PEM (README (a) 3.)
    packages: tuple[str, ...] = ()


_PLATFORMS: tuple[_XePlatform, ...] = (
    _XePlatform("ISR4321/K9", "isr4300", "F01023R12.1817bb4af2014-05-23", "16.12(2r)", 128, False, False, False),
    _XePlatform("ISR4451-X/K9", "isr4400", "F01001R06.03c1d3d202013-01-18", "16.12(2r)", 128, True, False, True,
                ("mono-universalk9", "firmware_nim_shdsl", "firmware_nim_cwan", "firmware_sm_async")),
    _XePlatform("C1111-8P", "c1100", "F01094R17.10a2b86a22017-09-28", "16.6(1r)", 64, False, False, True),
    _XePlatform("WS-C3650-8X24UQ", "cat3k_caa", "F01062R15.0508d68fa2015-09-15",
                "CAT3K_CAA Boot Loader (CAT3K_CAA-HBOOT-M) Version 4.316, RELEASE SOFTWARE (P)", 128, False, True, True),
)
_OS_VERSIONS = ("16.09.05", "16.12.04", "17.03.04a", "17.06.05", "17.09.04a")


@dataclass(frozen=True)
class XeFacts:
    """What an XE device measures and prints; deterministic from the device's seed."""

    hostname: str
    platform: _XePlatform
    serial: str
    chip_id: str
    boot0_hash: str
    boot_loader_hash: str
    os_version: str
    os_files: tuple[tuple[str, str], ...]  # (file name, hash) in printed order, the .bin first
    compliance: tuple[tuple[str, str], ...]

    @property
    def pid(self) -> str:
        return self.platform.pid

    @property
    def os_hashes(self) -> list[str]:
        return [digest for _, digest in self.os_files]

    def pcrs(self) -> tuple[bytes, bytes]:
        return integrity_pcrs(self.boot0_hash, self.boot_loader_hash, self.os_hashes)


def _hex(rng: random.Random, digits: int) -> str:
    return "".join(rng.choice("0123456789ABCDEF") for _ in range(digits))


def xe_facts(hostname: str, seed: int) -> XeFacts:
    """The device's platform, serial and boot measurements, from `seed` (same seed, same facts)."""
    rng = random.Random(f"iosxe:{seed}")
    platform = _PLATFORMS[seed % len(_PLATFORMS)]
    version = rng.choice(_OS_VERSIONS)
    image = f"{platform.family}-universalk9.{version}.SPA.bin"
    files = [(image, _hex(rng, 128))]
    if platform.os_hashes_list:
        files += [(f"{platform.family}-{name}.{version}.SPA.pkg", _hex(rng, 128)) for name in platform.packages]
    serial = "FDO" + "".join(rng.choice("0123456789") for _ in range(4)) + _hex(rng, 4)
    chip_id = base64.b64encode(rng.randbytes(30)).decode("ascii")
    compliance = (
        ("secure_boot", "true"), ("tam_service", "hardware"), ("ldwm_envelope", "false"),
        ("num_btlstage", "2"), ("bivlen", "64"),
        ("register.pcr0.disabled", "false"), ("register.pcr8.disabled", "false"),
    )
    return XeFacts(hostname, platform, serial, chip_id, _hex(rng, 64), _hex(rng, platform.boot_loader_hash_hex),
                   version, tuple(files), compliance)


class XeIdentity:
    """One XE device's SUDI key and certificate (kept in `<device>/sudi/`) and its facts."""

    def __init__(self, folder: Path, authority: SudiAuthority, facts: XeFacts, *, now: datetime) -> None:
        self.authority = authority
        self.facts = facts
        self._key_path, self._cert_path = folder / "sudi" / "sudi.key", folder / "sudi" / "sudi.pem"
        if self._key_path.exists() and self._cert_path.exists():
            self.key = _load_private(self._key_path)
            self.certificate = x509.load_pem_x509_certificate(self._cert_path.read_bytes())
        else:
            self.reissue(now=now, new_key=True)

    def reissue(self, *, now: datetime, new_key: bool = False, expired: bool = False,
                malformed_san: bool = False) -> None:
        """A new SUDI certificate (and key): the EXPIRED_LEAF, REKEYED_LEAF and MALFORMED_SAN
        faults use it."""
        if new_key:
            self.key = rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=SUDI_KEY_BITS)
            _write_private(self._key_path, self.key)
        not_after = now - timedelta(days=1) if expired else CA_NOT_AFTER
        self.certificate = self.authority.issue_device(self.key, pid=self.facts.pid, serial=self.facts.serial,
                                                       chip_id=self.facts.chip_id, now=now, not_after=not_after,
                                                       malformed_san=malformed_san)
        _write(self._cert_path, self.certificate.public_bytes(serialization.Encoding.PEM))

    def chain_der(self) -> list[bytes]:
        """root, sub-CA, device: the order every SUDI output prints and signs."""
        return [c.public_bytes(serialization.Encoding.DER)
                for c in (self.authority.root, self.authority.sub_ca, self.certificate)]

    def sign(self, message: bytes) -> str:
        return _sign(self.key, message)

    def other_key(self) -> rsa.RSAPrivateKey:
        """A key that is not the SUDI key (the OTHER_KEY fault signs with it); kept in memory."""
        if getattr(self, "_other", None) is None:
            self._other = rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=SUDI_KEY_BITS)
        return self._other


@dataclass(frozen=True)
class SignFaults:
    """The emulator's signing faults (emulator.faults) as they act on XE output."""

    stale_nonce: int | None = None  # WRONG_NONCE: sign this nonce instead of the one asked for
    other_key: rsa.RSAPrivateKey | None = None  # OTHER_KEY: sign with a key that is not the SUDI key
    tamper: bool = False  # DATA_CHANGED: one printed value altered after signing

    def signature(self, identity: XeIdentity, nonce: int | None, payload: bytes) -> str:
        if self.stale_nonce is not None:
            # Always a different nonce from the one asked for, and always the 8-byte header.
            nonce = self.stale_nonce if self.stale_nonce != nonce else self.stale_nonce ^ 1
        return _sign(self.other_key or identity.key, signed_header(nonce) + payload)


NO_FAULTS = SignFaults()


def _flip_last(line: str) -> str:
    """Change the last character of a hex or base64 value (a one-character edit, as the real
    `*_bad*` samples have)."""
    return line[:-1] + ("0" if line[-1] != "0" else "1")


def _tamper(lines: list[str], faults: SignFaults, pick: Any) -> list[str]:
    """Apply DATA_CHANGED after signing: alter the line `pick` chooses (its index)."""
    if faults.tamper:
        index = pick(lines)
        lines[index] = _flip_last(lines[index])
    return lines


def _device_pem_line(lines: list[str]) -> int:
    """A body line of the last certificate printed (the device's), away from its end."""
    begin = max(i for i, line in enumerate(lines) if line.startswith("-----BEGIN CERTIFICATE-----"))
    return begin + 3


# --- renderers (pure: identity in, text out) ----------------------------------------------------


def render_sudi(identity: XeIdentity, *, sign: bool, nonce: int | None, faults: SignFaults = NO_FAULTS) -> str:
    """`show platform sudi certificate [sign [nonce N]]` (README (a))."""
    ders = identity.chain_der()
    lines: list[str] = []
    for der in ders:
        lines += pem_lines(der, PEM_WIDTH_V1)
    if not sign:
        return "\n".join(lines) + "\n"
    if identity.facts.platform.blank_before_signature:
        lines.append("")
    signature = faults.signature(identity, nonce, b"".join(ders))
    lines += [f"Signature version: {SIGNATURE_VERSION}", "Signature:", signature]
    return "\n".join(_tamper(lines, faults, _device_pem_line)) + "\n"


def render_integrity(identity: XeIdentity, *, sign: bool, nonce: int | None, faults: SignFaults = NO_FAULTS) -> str:
    """`show platform integrity [sign [nonce N]]` (README (b))."""
    facts = identity.facts
    boot0 = [f"Boot 0 Version: {facts.platform.boot0_version}", f"Boot 0 Hash: {facts.boot0_hash}"]
    loader = [f"Boot Loader Version: {facts.platform.boot_loader_version}",
              f"Boot Loader Hash: {facts.boot_loader_hash}"]
    lines = [f"Platform: {facts.pid}"] + (loader + boot0 if facts.platform.boot_loader_first else boot0 + loader)
    lines.append(f"OS Version: {facts.os_version}")
    if facts.platform.os_hashes_list:
        lines.append("OS Hashes:")
        lines += [f"{name}: {digest}" for name, digest in facts.os_files]
    else:
        lines.append(f"OS Hash: {facts.os_files[0][1]}")
    pcr0, pcr8 = facts.pcrs()
    lines += [f"PCR0: {pcr0.hex().upper()}", f"PCR8: {pcr8.hex().upper()}"]
    os_line = len(lines) - 3  # the last OS hash: PCR8 no longer recomputes when it changes
    if sign:
        signature = faults.signature(identity, nonce, pcr0 + pcr8)
        lines += [f"Signature version: {SIGNATURE_VERSION}", "Signature:", signature]
    return "\n".join(_tamper(lines, faults, lambda _: os_line)) + "\n"


def _v2_signature(signature: str) -> list[str]:
    return ["  Signature:", f"  Version: {SIGNATURE_VERSION}", "  Value:", f"  {signature}", ""]


def render_system_integrity(identity: XeIdentity, part: str, nonce: int, now: datetime,
                            faults: SignFaults = NO_FAULTS) -> str:
    """`show system integrity all {trust_chain|measurement|compliance} nonce N` (README v2)."""
    facts = identity.facts
    when = now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d} UTC " + now.strftime("%a %b %d %Y")
    lines = ["Load for five secs: 2%/0%; one minute: 3%; five minutes: 3%",
             f"Time source is SNTP, {when}", "",
             LOCATION_RULE, "LOCATION FRU=fru-rp SLOT=0 BAY=0 CHASSIS=-1 NODE=0", LOCATION_RULE]
    if part == "trust_chain":
        ders = identity.chain_der()
        for name, der in zip(("CRCA CERTIFICATE", "CMCA CERTIFICATE", "SUDI CERTIFICATE"), ders):
            lines.append(f"Certificate Name: {name}")
            lines += pem_lines(der, PEM_WIDTH_V2)
        lines.append("")
        lines += _v2_signature(faults.signature(identity, nonce, b"".join(ders)))
        target = _device_pem_line(lines)
    elif part == "compliance":
        lines.append("  Compliance:")
        lines += [f"  {attribute}: {value}" for attribute, value in facts.compliance]
        lines.append("")
        payload = b"".join(a.encode("utf-8") + v.encode("utf-8") for a, v in facts.compliance)
        target = len(lines) - 2  # the last attribute's value
        lines += _v2_signature(faults.signature(identity, nonce, payload))
    else:  # measurement
        pcr0, pcr8 = facts.pcrs()
        lines += [f"  Platform: {facts.pid}", "", "  Boot Hashes:",
                  f"  {facts.platform.boot0_version}: {facts.boot0_hash}",
                  f"  {facts.platform.boot_loader_version}: {facts.boot_loader_hash}", "",
                  "  OS:", f"  Version: {facts.os_version}", "  Hashes:"]
        lines += [f"  {name}: {digest}" for name, digest in facts.os_files]
        target = len(lines) - 1  # the last package hash
        lines += ["", "  Registers:", f"  PCR0: {pcr0.hex().upper()}", f"  PCR8: {pcr8.hex().upper()}", ""]
        lines += _v2_signature(faults.signature(identity, nonce, pcr0 + pcr8))
    return "\n".join(_tamper(lines, faults, lambda _: target)) + "\n"


# --- command handlers and rows ------------------------------------------------------------------


def _nonce_arg(m: Match) -> int | None:
    text = m.args.get("nonce")
    return None if text is None else parse_decimal_nonce(text)


def sign_faults(device: Any) -> SignFaults:
    """The device's injected signing fault (emulator.faults), if any, for XE output."""
    from .faults import Fault

    active = device.faults
    if Fault.WRONG_NONCE in active:
        stale = active.params(Fault.WRONG_NONCE).get("nonce")
        return SignFaults(stale_nonce=int(str(stale), 16) if stale else DEFAULT_STALE_NONCE)
    if Fault.DATA_CHANGED in active:
        return SignFaults(tamper=True)
    if Fault.OTHER_KEY in active:
        return SignFaults(other_key=device.xe_identity().other_key())
    return NO_FAULTS


def h_sudi_sign(s: Any, m: Match) -> str:
    return render_sudi(s.device.xe_identity(), sign=bool(m.args.get("sign")), nonce=_nonce_arg(m),
                       faults=sign_faults(s.device))


def h_integrity(s: Any, m: Match) -> str:
    return render_integrity(s.device.xe_identity(), sign=bool(m.args.get("sign")), nonce=_nonce_arg(m),
                            faults=sign_faults(s.device))


def h_system_integrity(s: Any, m: Match) -> str:
    nonce = _nonce_arg(m)
    assert nonce is not None  # the row requires it
    return render_system_integrity(s.device.xe_identity(), m.args["part"], nonce, s.device.clock.now(),
                                   faults=sign_faults(s.device))


def h_show_version(s: Any, m: Match) -> str:
    facts = s.device.xe_identity().facts
    return (f"Cisco IOS XE Software, Version {facts.os_version}\n"
            f"{facts.hostname} uptime is 1 week, 2 days, 3 hours, 4 minutes\n"
            f"System image file is \"bootflash:{facts.os_files[0][0]}\"\n\n"
            f"cisco {facts.pid} processor\n"
            f"Processor board ID {facts.serial}\n")


def _row(pattern: str, handler: Any) -> Row:
    # IOS XE prints no XR timestamp line before show output (the samples have none).
    return Row(pattern, handler, {"tasks": [], "stamp": False})


XE_SHOW_ROWS: list[Row] = [
    _row("show version", h_show_version),
    _row("show platform sudi certificate [{sign:sign} [nonce <nonce>]]", h_sudi_sign),
    _row("show platform integrity [{sign:sign} [nonce <nonce>]]", h_integrity),
    _row("show system integrity all {part:trust_chain|measurement|compliance} nonce <nonce>", h_system_integrity),
]
