"""Profile `kgv`: Cisco Known Good Values (KGV) files, and appraisal against them.

A KGV file is JSON published by Cisco listing approved boot-0, boot-loader, OS-image and
package hashes (`biv_hash`). It is authentic when its detached raw signature (RSA PKCS#1 v1.5
over the exact file bytes; SHA-512 for a 512-byte signature, SHA-256 for 256 bytes) verifies
under the signer's key and the signer chains to the caller's anchor (Cisco Root CA M2, through
Innerspace SubCA RSA). Cisco's certificates are never shipped here: the caller supplies them.

Library API for appraisal policies:

    kgv = load_kgv("kgv.json", [root_ca_m2], signer=signer_pem_bytes)   # raises KGVError
    findings = appraise_integrity(verdict.measurements[0], kgv)           # [] when all known
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .._strictjson import JSONProblem, brackets_outside_strings, check_depth
from ..chain import CERTIFICATE_ERRORS, format_name, is_ca, read_now
from ..findings import Finding, FindingId, Severity
from ..truststore import TrustStore
from ._common import Anchors, Measurements, ProfileError, ProfileVerdict, check_ca_path, load_anchors

__all__ = ["KGVError", "KnownGoodValues", "appraise_integrity", "load_kgv", "parse_kgv", "verify_kgv_file"]

PROFILE = "kgv"
MAX_KGV_BYTES = 64 * 1024 * 1024  # Cisco's full KGV is a few MB; bound hostile input
MAX_KGV_DEPTH = 32  # the deepest layout (products/.../entries/pkg) nests 9; deeper input is an attack
SIGNATURE_SUFFIX = ".signature"  # how Cisco publishes the detached signature beside the file
_SIGNATURE_HASHES = {512: hashes.SHA512, 256: hashes.SHA256}  # signature length -> hash (upstream rule)
_HEX = re.compile(r"[0-9A-Fa-f]{64}|[0-9A-Fa-f]{128}")
# the three published layouts: section name -> kind
_SECTIONS = {
    "boot0Versions": "boot0", "bootLoaderVersions": "boot_loader", "osImageVersions": "os_image",
    "Boot 0 Versions": "boot0", "Boot Loader Versions": "boot_loader", "OS Image Versions": "os_image",
}
_DTYPES = {"boot0": "boot0", "blr": "boot_loader", "osimage": "os_image"}


class KGVError(ProfileError):
    """A KGV file cannot be used: unreadable, malformed, or not authentic."""


@dataclass
class KnownGoodValues:
    """Approved hashes by kind (upper-case hex -> the file name or version Cisco lists).

    `authenticated` is True only when the detached signature verified to the caller's anchor.
    """

    layout: str
    boot0: dict[str, str] = field(default_factory=dict)
    boot_loader: dict[str, str] = field(default_factory=dict)
    os_image: dict[str, str] = field(default_factory=dict)
    package: dict[str, str] = field(default_factory=dict)
    authenticated: bool = False
    signer: x509.Certificate | None = None
    sha256: str = ""

    def kinds(self) -> dict[str, dict[str, str]]:
        return {"boot0": self.boot0, "boot_loader": self.boot_loader, "os_image": self.os_image,
                "package": self.package}


def parse_kgv(data: bytes) -> KnownGoodValues:
    """Parse any of the three layouts (`products`, `platforms`, `bulkHash`); not authenticated.

    Raises KGVError when the file is not a KGV file or a hash is malformed.
    """
    if len(data) > MAX_KGV_BYTES:
        raise KGVError(f"the KGV file is {len(data)} bytes, over the {MAX_KGV_BYTES} limit")
    try:
        # Depth first: `json` recurses once per level and a hostile file nests 100,000 deep.
        check_depth(brackets_outside_strings(data), MAX_KGV_DEPTH, FindingId.KGV_MALFORMED)
        document = json.loads(data)
    except JSONProblem as problem:
        raise KGVError(f"the KGV file is not a KGV file: {problem.message}") from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer too long to convert (4,300 digits)
        raise KGVError(f"the KGV file is not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("header"), dict):
        raise KGVError("expected a KGV JSON object with a 'header'; found something else")
    layouts = [name for name in ("products", "platforms", "bulkHash") if name in document]
    if len(layouts) != 1:
        raise KGVError(f"expected one of 'products', 'platforms' or 'bulkHash'; found {layouts or 'none'}")
    kgv = KnownGoodValues(layout=layouts[0], sha256=hashlib.sha256(data).hexdigest())
    for kind, biv_hash, name in _entries(document, layouts[0]):
        if not isinstance(biv_hash, str) or not _HEX.fullmatch(biv_hash):
            raise KGVError(f"a {kind} entry ({name!r}) has a malformed biv_hash: expected 64 or 128 hex "
                           f"digits, found {str(biv_hash)[:40]!r}")
        if kind == "os_image" and isinstance(name, str) and name.endswith(".pkg"):
            kind = "package"
        kgv.kinds()[kind][biv_hash.upper()] = str(name)
    return kgv


def _entries(document: dict[str, Any], layout: str) -> Iterator[tuple[str, Any, Any]]:
    def listed(value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise KGVError(f"{where}: expected a list, found {type(value).__name__}")
        return value

    def objects(value: Any, where: str) -> Iterator[dict[str, Any]]:
        """The items of the list `value`, each an object (else KGVError naming `where`)."""
        for item in listed(value, where):
            if not isinstance(item, dict):
                raise KGVError(f"{where}: expected objects, found a {type(item).__name__}")
            yield item

    def packages(entry: dict[str, Any], where: str) -> Iterator[tuple[str, Any, Any]]:
        for package in objects(entry.get("pkg") or [], f"{where}/pkg"):
            yield "package", package.get("biv_hash"), package.get("filename")

    def from_sections(container: Any, where: str) -> Iterator[tuple[str, Any, Any]]:
        if not isinstance(container, dict):
            raise KGVError(f"{where}: expected an object, found a {type(container).__name__}")
        for section, kind in _SECTIONS.items():
            for version in objects(container.get(section, []), f"{where}/{section}"):
                for entry in objects(version.get("entries", []), f"{where}/{section}/entries"):
                    yield kind, entry.get("biv_hash"), entry.get("filename") or entry.get("biv_version")
                    yield from packages(entry, f"{where}/{section}/entries")

    if layout == "products":
        for product in objects(document["products"], "products"):
            yield from from_sections(product, f"products/{str(product.get('product', '?'))[:40]}")
    elif layout == "platforms":
        for item in objects(document["platforms"], "platforms"):
            for name, container in item.items():
                yield from from_sections(container, f"platforms/{name[:40]}")
    else:
        for entry in objects(document["bulkHash"], "bulkHash"):
            dtype = entry.get("dtype")
            if not isinstance(dtype, str) or dtype not in _DTYPES:
                raise KGVError(f"bulkHash: expected dtype boot0, blr or osimage; found {entry!r:.80}")
            yield _DTYPES[dtype], entry.get("biv_hash"), entry.get("filename")
            yield from packages(entry, "bulkHash")


def _split_signer(signer: bytes | Sequence[x509.Certificate] | x509.Certificate) -> tuple[
        x509.Certificate, list[x509.Certificate]]:
    if isinstance(signer, x509.Certificate):
        certs = [signer]
    elif isinstance(signer, bytes | bytearray):
        try:
            certs = [read_now(cert) for cert in x509.load_pem_x509_certificates(bytes(signer))]
        except CERTIFICATE_ERRORS as exc:
            raise KGVError(f"the KGV signer file is not PEM certificates ({exc})") from None
    else:
        certs = list(signer)
    leaves = [c for c in certs if not is_ca(c)]
    if len(leaves) != 1:
        raise KGVError(f"expected one signing (non-CA) certificate among the signer certificates, "
                       f"found {len(leaves)}")
    return leaves[0], [c for c in certs if c is not leaves[0]]


def _check_signature(verdict: ProfileVerdict, data: bytes, signature: bytes, signer: Any,
                     anchors: Anchors, when: dt.datetime) -> x509.Certificate | None:
    """Findings for the detached signature and the signer's chain; the signer if both hold."""
    try:
        leaf, intermediates = _split_signer(signer)
    except KGVError as exc:
        verdict.add(FindingId.KGV_SIGNER_UNTRUSTED, Severity.ERROR, str(exc), "the KGV signer certificate", "none usable")
        return None
    chain_ok = check_ca_path(verdict, leaf, intermediates, anchors, when)
    if not chain_ok:
        verdict.add(FindingId.KGV_SIGNER_UNTRUSTED, Severity.ERROR,
                    f"the KGV signer {format_name(leaf.subject)} does not chain to a pinned anchor "
                    "(Cisco Root CA M2 for Cisco's KGV files)", "a chain to the pinned anchor", "none")
    algorithm = _SIGNATURE_HASHES.get(len(signature))
    key = leaf.public_key()
    if algorithm is None or not isinstance(key, rsa.RSAPublicKey) or key.key_size // 8 != len(signature):
        verdict.add(FindingId.KGV_SIGNATURE_INVALID, Severity.ERROR,
                    "the detached signature does not fit the signer's RSA key",
                    "a 256- or 512-byte RSA signature matching the key size", f"{len(signature)} bytes")
        return None
    try:
        key.verify(signature, data, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        verdict.add(FindingId.KGV_SIGNATURE_INVALID, Severity.ERROR,
                    "the KGV file's detached signature does not verify: the file or signature was changed",
                    f"RSA PKCS#1 v1.5 {algorithm.name.upper()} by the signer", "a signature that does not verify")
        return None
    return leaf if chain_ok else None


def verify_kgv_file(
    raw: bytes, *, signature: bytes | None, signer: Any, roots: Sequence[x509.Certificate] = (),
    trust_store: TrustStore | None = None, at: dt.datetime,
) -> ProfileVerdict:
    """A verdict for a KGV file: parses, and its detached signature verifies to an anchor."""
    verdict = ProfileVerdict(profile=PROFILE, verified_at=at, envelope_sha256=hashlib.sha256(raw).hexdigest())
    try:
        kgv = parse_kgv(raw)
    except KGVError as exc:
        verdict.add(FindingId.KGV_MALFORMED, Severity.ERROR, str(exc), "a KGV JSON file", "not one")
        return verdict
    verdict.unauthenticated = {"layout": kgv.layout, "entries": sum(len(v) for v in kgv.kinds().values())}
    if signature is None:
        verdict.add(FindingId.OUTPUT_UNSIGNED, Severity.ERROR,
                    "no detached signature was given, so the KGV file is not authenticated; pass the "
                    "'.signature' file Cisco publishes beside it", "a detached signature", "none")
        return verdict
    verdict.signed = True
    if signer is None:
        verdict.add(FindingId.KGV_SIGNER_UNTRUSTED, Severity.ERROR,
                    "no signer certificate given: pass the KGV signer's certificate (and its sub-CA)",
                    "the KGV signer certificate", "none")
        return verdict
    anchors = load_anchors(roots, trust_store, None, at)
    verdict.signature_algorithm = f"RSASSA-PKCS1-v1_5 {'SHA-512' if len(signature) == 512 else 'SHA-256'}"
    leaf = _check_signature(verdict, raw, signature, signer, anchors, at)
    if leaf is not None:
        verdict.leaf = leaf
        verdict.authenticated, verdict.unauthenticated = verdict.unauthenticated, {}
    verdict.add(FindingId.NONCE_NOT_CHECKED, Severity.INFO, "a KGV file is published data; it has no nonce",
                None, None)
    return verdict


def load_kgv(
    path: str | Path,
    anchors: Sequence[x509.Certificate] | Anchors,
    *,
    signer: bytes | Sequence[x509.Certificate] | x509.Certificate | None = None,
    signature: bytes | str | Path | None = None,
    at: dt.datetime | None = None,
    allow_unsigned: bool = False,
) -> KnownGoodValues:
    """Read a KGV file and verify its detached signature (default: `<path>.signature`) by
    `signer` (PEM bytes or certificates: the signing certificate and its sub-CA) to `anchors`.

    Raises KGVError if anything fails. `allow_unsigned=True` accepts a file with no signature
    file at all (e.g. a sandbox KGV) as `authenticated=False`; a signature that fails never loads.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise KGVError(f"{file}: cannot read ({exc.strerror or exc})") from None
    kgv = parse_kgv(data)
    if signature is None:
        candidate = file.with_name(file.name + SIGNATURE_SUFFIX)
        if not candidate.exists():
            if allow_unsigned:
                return kgv
            raise KGVError(f"{file}: no detached signature ({candidate.name}); pass signature= or "
                           "allow_unsigned=True to use it as unauthenticated reference values")
        signature = candidate
    if not isinstance(signature, bytes):
        try:
            signature = Path(signature).read_bytes()
        except OSError as exc:
            raise KGVError(f"{signature}: cannot read ({exc.strerror or exc})") from None
    if signer is None:
        raise KGVError("no KGV signer certificate given; pass signer= (the signing certificate and its sub-CA)")
    when = at or dt.datetime.now(dt.UTC)
    scratch = ProfileVerdict(profile=PROFILE)
    anchor_set = anchors if isinstance(anchors, Anchors) else Anchors(tuple(anchors))
    leaf = _check_signature(scratch, data, signature, signer, anchor_set, when)
    if leaf is None:
        raise KGVError(f"{file}: not authentic: " + "; ".join(f.message for f in scratch.errors))
    kgv.authenticated, kgv.signer = True, leaf
    return kgv


def appraise_integrity(measurements: Measurements | ProfileVerdict, kgv: KnownGoodValues) -> list[Finding]:
    """One `kgv.hash_unknown` error per measured hash the KGV does not list (all are reported).

    Boot stage 0 is compared with boot-0 values, later stages with boot loaders, a single OS
    hash or a `.bin` with OS images, and each package with packages (or images). Versions and
    the platform are not compared: nothing signs them.
    """
    if isinstance(measurements, ProfileVerdict):
        found: list[Finding] = []
        for item in measurements.measurements:
            found.extend(appraise_integrity(item, kgv))
        return found
    findings: list[Finding] = []
    where = f" at {measurements.location}" if measurements.location else ""
    if not kgv.authenticated:
        findings.append(Finding(FindingId.KGV_UNAUTHENTICATED, Severity.WARNING,
                                "the KGV file used for appraisal is not authenticated (no verified signature)",
                                "a KGV file signed by Cisco", f"layout {kgv.layout}, SHA-256 {kgv.sha256}"))

    def check(kind: str, allowed: dict[str, str], value: str, what: str) -> None:
        if value.upper() not in allowed:
            findings.append(Finding(FindingId.KGV_HASH_UNKNOWN, Severity.ERROR,
                                    f"the {what}{where} is not a known-good {kind.replace('_', ' ')} hash",
                                    f"a {kind} hash listed in the KGV", value.upper()))

    for stage, version, value in measurements.boot_stages:
        if stage == 0:
            check("boot0", kgv.boot0, value, f"boot 0 hash (version {version})")
        else:
            check("boot_loader", kgv.boot_loader, value, f"boot loader stage {stage} hash (version {version})")
    for name, value in measurements.os_hashes:
        if name is None or name.endswith(".bin"):
            check("os_image", kgv.os_image, value, f"OS image hash ({name or 'OS Hash'})")
        else:
            check("package", {**kgv.package, **kgv.os_image}, value, f"package hash ({name})")
    return findings
