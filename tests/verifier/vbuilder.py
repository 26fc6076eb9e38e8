"""Build device-like PKI and signed envelopes in test code (ENVELOPE.md sections 3 and 4).

Independent of `verifier/` on purpose: signing and encoding are written again here from the
spec, so a shared misreading cannot hide.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
UTC_OFFSET = dt.UTC

_KEYS: dict[str, Any] = {}


def key(kind: str) -> Any:
    """A private key of `kind`, made once per process (RSA generation is slow)."""
    if kind not in _KEYS:
        kind_base = kind.split("#")[0]  # "p256#2" is a second, distinct P-256 key
        if kind_base.startswith("rsa"):
            _KEYS[kind] = rsa.generate_private_key(65537, int(kind_base[3:]))
        elif kind_base.startswith("dsa"):
            _KEYS[kind] = dsa.generate_private_key(int(kind_base[3:]))
        elif kind_base == "ed25519":
            _KEYS[kind] = ed25519.Ed25519PrivateKey.generate()
        else:
            curve = {"p256": ec.SECP256R1, "p384": ec.SECP384R1, "p521": ec.SECP521R1,
                     "p192": ec.SECP192R1, "k256": ec.SECP256K1}[kind_base]
            _KEYS[kind] = ec.generate_private_key(curve())
    return _KEYS[kind]


def sign(private_key: Any, message: bytes) -> bytes:
    """Sign as the device does: the algorithm is fixed by the key type (ENVELOPE.md section 3)."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        digest = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}.get(private_key.curve.key_size, hashes.SHA256)
        return private_key.sign(message, ec.ECDSA(digest()))
    if isinstance(private_key, dsa.DSAPrivateKey):
        return private_key.sign(message, hashes.SHA256())
    return private_key.sign(message)  # Ed25519: not in the format; for the "unsupported key" case


def _name(common: str, serial: str = "FOC2104R15R", host: str = "r1.example.net") -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
        x509.NameAttribute(NameOID.UNSTRUCTURED_NAME, host),
    ])


def ku(digital_signature=False, key_encipherment=False, key_agreement=False,
       key_cert_sign=False, crl_sign=False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature, False, key_encipherment, False, key_agreement,
                         key_cert_sign, crl_sign, False, False)


ROOT_KU = ku(digital_signature=True, key_cert_sign=True, crl_sign=True)
LEAF_KU = ku(digital_signature=True, key_encipherment=True, key_agreement=True)


def _sign_cert(builder: x509.CertificateBuilder, issuer_key: Any, digest: Any) -> x509.Certificate:
    if isinstance(issuer_key, ed25519.Ed25519PrivateKey):
        return builder.sign(issuer_key, None)
    return builder.sign(issuer_key, digest)


def make_root(
    kind: str = "p256", *, name: str = "system-trustpoint root", not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None, ca: bool | None = True, key_usage: x509.KeyUsage | None = ROOT_KU,
    digest: Any = None, extra: list[tuple[x509.ExtensionType, bool]] = (), serial: int = 0x0B61,
) -> x509.Certificate:
    """A self-signed root like `crypto ca authenticate system-trustpoint` makes."""
    private_key = key(kind)
    builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
               .public_key(private_key.public_key()).serial_number(serial)
               .not_valid_before(not_before or NOW - 30 * DAY).not_valid_after(not_after or NOW + 3650 * DAY))
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    return _sign_cert(builder, private_key, digest or hashes.SHA256())


def make_leaf(
    kind: str = "p256", root_kind: str = "p256", root: x509.Certificate | None = None, *,
    name: str = "system-trustpoint", not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None, ca: bool | None = False, key_usage: x509.KeyUsage | None = LEAF_KU,
    digest: Any = None, extra: list[tuple[x509.ExtensionType, bool]] = (), serial: int = 0x0B62,
    issuer_name: x509.Name | None = None,
) -> x509.Certificate:
    """A leaf like `crypto ca enroll system-trustpoint` makes, signed by `root_kind`'s key."""
    root = root or make_root(root_kind)
    builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(issuer_name or root.subject)
               .public_key(key(kind).public_key()).serial_number(serial)
               .not_valid_before(not_before or NOW - 29 * DAY).not_valid_after(not_after or NOW + 365 * DAY))
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    return _sign_cert(builder, key(root_kind), digest or hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding
    return cert.public_bytes(Encoding.DER)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def signed_bytes(nonce: bytes, version: int, data: str, certs: list[x509.Certificate]) -> bytes:
    return nonce + struct.pack(">I", version) + data.encode("utf-8") + b"".join(der(c) for c in certs)


def dossier(nonce_hex: str, *, files: int = 0, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A dossier per ENVELOPE.md section 2; `files` adds a filesystem-inventory of that many files."""
    document: dict[str, Any] = {
        "collection-start-time": 1610168028.380901,
        "model-name": "http://cisco.com/ns/yang/Cisco-IOS-XR-ama",
        "model-revision": "2019-08-05",
        "nonce": nonce_hex,
        "license-udi": {"result-code": "Success", "license-udi": "UDI: PID:NCS-55A1-24H,SN:FOC2104R15R\n"},
        "version": {"result-code": "Success", "version": "Cisco IOS XR Software, Version 7.3.2\n"},
        "platform": {"result-code": "Success", "platform": "Node  Type  State\n0/RP0/CPU0  NCS-55A1-24H(Active)  IOS XR RUN\n"},
        "packages": {"result-code": "Success", "packages": [
            {"name": "ncs5500-xr", "version": "7.3.2", "arch": "x86_64",
             "install-fingerprint": "ab" * 32, "runtime-fingerprint": "ab" * 32}]},
    }
    if files:
        document["filesystem-inventory"] = {"result-code": "Success", "filesystem-inventory": {
            "0/RP0/CPU0": {"snapshots": [{
                "snapshot-block-no": 0, "snap-time": 1610168000.5, "snapshot-type": "full",
                "files": [{
                    "name": f"/opt/cisco/XR/packages/ncs5500-xr-7.3.2/lib/libfile{i:06d}.so",
                    "meta": {"uid": 0, "gid": 0, "inode": 100000 + i, "size": 4096 + i, "mode": 33261,
                             "atime": 1610168000.0, "mtime": 1610168000.0, "ctime": 1610168000.0},
                    "digest": {"algorithm": "SHA256", "digest-value": b64(i.to_bytes(32, "big"))},
                    "change-kind": "created", "package-kind": "rpm", "package-name": "ncs5500-xr",
                } for i in range(files)],
            }]}}}
    if extra:
        document.update(extra)
    document["collection-end-time"] = 1610168030.5
    return document


@dataclass
class Device:
    """One emulated device PKI: a root, a leaf, their key kinds."""

    root_kind: str = "p256"
    leaf_kind: str = "p256"
    root: x509.Certificate = None  # type: ignore[assignment]
    leaf: x509.Certificate = None  # type: ignore[assignment]
    nonce: bytes = b"\x15\x80"
    extra_certs: list[x509.Certificate] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = self.root or make_root(self.root_kind)
        self.leaf = self.leaf or make_leaf(self.leaf_kind, self.root_kind, self.root)

    def envelope(
        self, data: str | None = None, *, nonce: bytes | None = None, certs: list[x509.Certificate] | None = None,
        include_certificate: bool = True, version: int = 1, signer: str | None = None,
        document: dict[str, Any] | None = None, signature: bytes | None = None, indent: int | None = None,
        dossier_nonce: str | None = None,
    ) -> bytes:
        """The bytes `... | utility sign nonce N include-certificate` prints."""
        nonce = self.nonce if nonce is None else nonce
        if data is None:
            data = json.dumps(document or dossier(dossier_nonce if dossier_nonce is not None else nonce.hex()))
        if certs is None:
            certs = [self.root, *self.extra_certs, self.leaf] if include_certificate else []
        body: dict[str, Any] = {"signature_version": version, "nonce": b64(nonce), "data": data}
        if signature is None:
            signature = sign(key(signer or self.leaf_kind), signed_bytes(nonce, version, data, certs))
        body["signature"] = b64(signature)
        if certs:
            names = ["system-trustpoint ca-certificate"] + ["intermediate"] * (len(certs) - 2) + ["system-trustpoint certificate"]
            body["certificates"] = {"certificate": [
                {"name": n, "value": b64(der(c))} for n, c in zip(names[-len(certs):], certs)]}
        return json.dumps({"signed-envelope": body}, indent=indent).encode("utf-8")


_SHA256_RSA_OID = bytes.fromhex("06092a864886f70d01010b")  # sha256WithRSAEncryption
_SHA1_RSA_OID = bytes.fromhex("06092a864886f70d010105")  # sha1WithRSAEncryption: same length
_MD5_RSA_OID = bytes.fromhex("06092a864886f70d010104")  # md5WithRSAEncryption: same length
_WEAK_RSA_OIDS = {"sha1": _SHA1_RSA_OID, "md5": _MD5_RSA_OID}


def resign_weak(cert: x509.Certificate, issuer_kind: str, digest: Any) -> x509.Certificate:
    """Re-sign an RSA-signed certificate with SHA-1 or MD5 (`digest`, e.g. hashes.MD5();
    cryptography no longer signs certificates with them): swap the equal-length algorithm OIDs
    in the DER and replace the signature."""
    assert issuer_kind.startswith("rsa")
    weak_oid = _WEAK_RSA_OIDS[digest.name]
    original = der(cert)
    tbs = cert.tbs_certificate_bytes
    new_tbs = tbs.replace(_SHA256_RSA_OID, weak_oid, 1)
    new_signature = key(issuer_kind).sign(new_tbs, padding.PKCS1v15(), digest)
    rest = original.replace(tbs, new_tbs, 1).replace(cert.signature, new_signature, 1)
    head, tail = rest.split(new_tbs, 1)
    return x509.load_der_x509_certificate(head + new_tbs + tail.replace(_SHA256_RSA_OID, weak_oid, 1))


def resign_sha1(cert: x509.Certificate, issuer_kind: str) -> x509.Certificate:
    """Re-sign an RSA-signed certificate with SHA-1 (see `resign_weak`)."""
    return resign_weak(cert, issuer_kind, hashes.SHA1())
