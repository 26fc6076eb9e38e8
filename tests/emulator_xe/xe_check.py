"""An independent check of IOS XE signed output, written from the vectors README only.

Bare `cryptography` calls over the README's signed-bytes layouts; nothing from `emulator` or
`verifier`, so the emulator cannot pass by sharing a mistake with either.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----\s*\n(.*?)\n-----END CERTIFICATE-----", re.S)


def normalise(text: str) -> str:
    return text.replace("\r\n", "\n")


def header(nonce: int | None, version: int = 1) -> bytes:
    return struct.pack(">I", version) if nonce is None else struct.pack(">QI", nonce, version)


def pem_ders(text: str) -> list[bytes]:
    return [base64.b64decode("".join(body.split())) for body in PEM_RE.findall(normalise(text))]


def signature_hex(text: str) -> bytes:
    """The hex line after `Signature:` (v1) or after `Value:` (v2)."""
    lines = [line.strip() for line in normalise(text).split("\n")]
    for marker in ("Signature:", "Value:"):
        if marker in lines:
            index = len(lines) - 1 - lines[::-1].index(marker)
            candidate = lines[index + 1]
            if re.fullmatch(r"[0-9A-F]{512}", candidate):
                return bytes.fromhex(candidate)
    raise AssertionError("no 512-digit upper-case hex signature line found")


def rsa_ok(public: rsa.RSAPublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


@dataclass
class SudiChain:
    root: x509.Certificate
    sub_ca: x509.Certificate
    device: x509.Certificate
    ders: list[bytes]


def check_chain(ders: list[bytes], root_der: bytes, sub_ca_der: bytes) -> SudiChain:
    """The README's narrow SUDI check: root and sub-CA pinned by exact DER, the device
    certificate signed by the sub-CA, issuer name, CA=false, RSA-2048, no AKI/SKI/EKU."""
    assert len(ders) == 3, f"expected root, sub-CA, device; found {len(ders)} certificates"
    assert ders[0] == root_der, "printed root is not the pinned root"
    assert ders[1] == sub_ca_der, "printed sub-CA is not the pinned sub-CA"
    root, sub_ca, device = (x509.load_der_x509_certificate(d) for d in ders)
    sub_key = sub_ca.public_key()
    assert isinstance(sub_key, rsa.RSAPublicKey)
    sub_key.verify(device.signature, device.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    root_key = root.public_key()
    assert isinstance(root_key, rsa.RSAPublicKey)
    root_key.verify(sub_ca.signature, sub_ca.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    assert device.issuer == sub_ca.subject
    assert device.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    present = {ext.oid.dotted_string for ext in device.extensions}
    assert present == {"2.5.29.15", "2.5.29.19", "2.5.29.17"}, present  # KU, BC, SAN only
    device_key = device.public_key()
    assert isinstance(device_key, rsa.RSAPublicKey) and device_key.key_size == 2048
    return SudiChain(root, sub_ca, device, ders)


def verify_sudi(text: str, nonce: int | None, root_der: bytes, sub_ca_der: bytes) -> SudiChain:
    """(a): signed = header || DER(root) || DER(sub-CA) || DER(device)."""
    chain = check_chain(pem_ders(text), root_der, sub_ca_der)
    message = header(nonce) + b"".join(chain.ders)
    assert rsa_ok(chain.device.public_key(), signature_hex(text), message), "SUDI signature does not verify"  # type: ignore[arg-type]
    return chain


def extend(pcr: bytes, value_hex: str) -> bytes:
    return hashlib.sha256(pcr + hashlib.sha256(bytes.fromhex(value_hex)).digest()).digest()


def integrity_fields(text: str) -> dict[str, object]:
    """`Label: value` lines of (b); `OS Hashes:` gathers the `<file>: <hex>` lines after it."""
    fields: dict[str, object] = {}
    os_list: list[tuple[str, str]] | None = None
    for line in normalise(text).split("\n"):
        if os_list is not None:
            m = re.fullmatch(r"(\S+\.(?:bin|pkg)): ([0-9A-F]+)", line)
            if m:
                os_list.append((m.group(1), m.group(2)))
                continue
            os_list = None
        if line == "OS Hashes:":
            os_list = []
            fields["OS Hashes"] = os_list
            continue
        m = re.fullmatch(r"([A-Za-z0-9 ]+?): ?(.*)", line)
        if m and m.group(1) not in fields:
            fields[m.group(1)] = m.group(2)
    return fields


def verify_integrity(text: str, nonce: int | None, device_cert: x509.Certificate, *, signed: bool = True) -> dict[str, object]:
    """(b): PCRs recomputed from the printed hashes (boot 0 first whatever the print order),
    signed = header || PCR0 || PCR8."""
    fields = integrity_fields(text)
    pcr0 = extend(extend(bytes(32), str(fields["Boot 0 Hash"])), str(fields["Boot Loader Hash"]))
    if "OS Hashes" in fields:
        os_hashes = [h for _, h in fields["OS Hashes"]]  # type: ignore[union-attr]
    else:
        os_hashes = [str(fields["OS Hash"])]
    pcr8 = bytes(32)
    for value in os_hashes:
        pcr8 = extend(pcr8, value)
    assert fields["PCR0"] == pcr0.hex().upper(), "PCR0 does not recompute"
    assert fields["PCR8"] == pcr8.hex().upper(), "PCR8 does not recompute"
    if signed:
        message = header(nonce) + pcr0 + pcr8
        assert rsa_ok(device_cert.public_key(), signature_hex(text), message), "integrity signature does not verify"  # type: ignore[arg-type]
    else:
        assert "Signature:" not in text
    return fields


def verify_v2(text: str, part: str, nonce: int, device_cert: x509.Certificate) -> None:
    """v2 signed bytes for trust_chain, compliance and measurement (README "v2")."""
    lines = [line.strip() for line in normalise(text).split("\n")]
    if part == "trust_chain":
        payload = b"".join(pem_ders(text))
    elif part == "compliance":
        start = lines.index("Compliance:") + 1
        pairs = []
        for line in lines[start:]:
            if not line:
                break
            attribute, _, value = line.partition(": ")
            pairs.append((attribute, value))
        payload = b"".join(a.encode() + v.encode() for a, v in pairs)
    else:
        boot = lines[lines.index("Boot Hashes:") + 1 : lines.index("OS:") - 1]
        hashes_at = lines.index("Hashes:") + 1
        packages = []
        for line in lines[hashes_at:]:
            if not line:
                break
            packages.append(line.rsplit(": ", 1)[1])
        pcr0 = bytes(32)
        for line in boot:
            pcr0 = extend(pcr0, line.rsplit(": ", 1)[1])
        pcr8 = bytes(32)
        for value in packages:
            pcr8 = extend(pcr8, value)
        printed = {line.split(": ")[0]: line.split(": ")[1] for line in lines if line.startswith("PCR")}
        assert printed == {"PCR0": pcr0.hex().upper(), "PCR8": pcr8.hex().upper()}, "v2 PCRs do not recompute"
        payload = pcr0 + pcr8
    message = header(nonce) + payload
    assert rsa_ok(device_cert.public_key(), signature_hex(text), message), f"v2 {part} signature does not verify"  # type: ignore[arg-type]


# --- shape: what stays when every value is abstracted away ---------------------------------


FIXED_HEX_LABELS = {"Boot 0 Hash", "Boot Loader Hash", "OS Hash", "PCR0", "PCR8"}


def skeleton(text: str) -> list[str]:
    """Each line reduced to its form (labels kept, values replaced by their kind); the echoed
    command, prompts and trailing blank lines dropped; runs of identical forms collapsed."""
    lines = normalise(text).split("\n")
    if lines and "#show " in lines[0]:
        lines = lines[1:]
    lines = [line for line in lines if not re.fullmatch(r"[\w.-]+#\s*", line)]
    while lines and not lines[-1].strip():
        lines.pop()
    out: list[str] = []
    pem: list[str] | None = None
    for line in lines:
        if line.rstrip().startswith("-----BEGIN CERTIFICATE-----"):
            pem = []
            out.append("BEGIN")
            continue
        if pem is not None:
            if line.startswith("-----END CERTIFICATE-----"):
                widths = {len(body) for body in pem[:-1]}
                out.append(f"PEM body width {widths} last<={max(widths)}:{len(pem[-1]) <= max(widths)}")
                out.append("END")
                pem = None
            else:
                pem.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        body = line.strip()
        if re.fullmatch(r"[0-9A-F]{16,}", body):
            out.append(f"{indent}HEX{len(body)}")
            continue
        if body.startswith("Time source is"):
            out.append(f"{indent}Time source is *")
            continue
        m = re.fullmatch(r"(.+?): (.*)", body)
        if m:
            label, value = m.groups()
            if re.fullmatch(r"[0-9A-F]{16,}", value):
                out.append(f"{indent}{label if label in FIXED_HEX_LABELS else '*'}: HEX{len(value)}")
            else:
                out.append(f"{indent}{label}: *")
            continue
        out.append(f"{indent}{body}" if body else "")
    collapsed: list[str] = []
    for form in out:
        if collapsed and collapsed[-1].rstrip("+") == form:
            collapsed[-1] = form + "+"
        else:
            collapsed.append(form)
    return collapsed
