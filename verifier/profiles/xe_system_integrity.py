"""Profile `xe-system-integrity`: IOS XE `show system integrity all trust_chain|compliance|
measurement nonce N`, as CLI text, NETCONF XML or RESTCONF JSON
(`Cisco-IOS-XE-system-integrity-oper`).

One part per location (`fru`, `slot`, `bay`, `chassis`, `node`: the YANG list keys), each
signed by that location's SUDI key (RSA PKCS#1 v1.5 SHA-256) over `u64 nonce || u32 version`
and then:

- trust_chain: DER(root) || DER(sub-CA) || DER(SUDI), as `xe-sudi-sign`;
- compliance: attribute || value for each capability in order, UTF-8, no separators;
- measurement: PCR0 || PCR8, with PCR0 folding the boot stages sorted by stage and PCR8 the
  package-integrity hashes in order.

The nonce is mandatory here; without the caller's nonce the signature cannot be checked.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from .._strictjson import JSONProblem, loads_strict
from ..chain import load_der_certificate
from ..findings import FindingId, Severity
from ..policy import Policy
from ._common import (
    MAX_U32,
    Anchors,
    Measurements,
    ProfileVerdict,
    certificate_summary,
    check_nonce_given,
    check_sudi_chain,
    decode_base64_der,
    decode_text,
    fold,
    parse_hex_signature,
    pem_blocks,
    rsa_sha256_ok,
    xe_header,
)
from .signer import Signer

__all__ = ["V2Part", "parse_v2", "verify_system_integrity"]

PROFILE = "xe-system-integrity"
LOCATION_KEYS = ("fru", "slot", "bay", "chassis", "node")
_KINDS = {"trust-chain": "trust_chain", "compliance": "compliance", "measurement": "measurement"}
_HEX_HASH = re.compile(r"[0-9A-Fa-f]{64}|[0-9A-Fa-f]{128}")
_PCR = re.compile(r"[0-9A-Fa-f]{64}")
_CLI_LOCATION = re.compile(r"LOCATION\s+(.*)")
MAX_JSON_DEPTH = 32  # RESTCONF integrity data nests 8 deep; deeper input is an attack
MAX_XML_DEPTH = 32  # NETCONF replies nest about 10 elements deep (rpc-reply/data/.../hash); the same margin
_XML_CHUNK = 64 * 1024  # read a chunk, check the depth: a hostile reply is refused early


@dataclass
class V2Part:
    """One location's answer to one request, whatever the encoding."""

    kind: str
    location: str | None
    printed_nonce: str | None = None
    certificates: list[tuple[str, x509.Certificate, bytes]] = field(default_factory=list)
    capabilities: list[tuple[str, str]] = field(default_factory=list)
    platform: str | None = None
    boot_stages: list[tuple[int, str | None, str]] = field(default_factory=list)
    os_version: str | None = None
    packages: list[tuple[str | None, str]] = field(default_factory=list)
    pcrs: dict[int, str] = field(default_factory=dict)
    version: int | None = None
    signature: bytes | None = None
    signed: bool = False


def parse_v2(text: str, verdict: ProfileVerdict) -> list[V2Part]:
    """Parts from CLI, XML or JSON text; problems become findings on `verdict`."""
    stripped = text.lstrip()
    if stripped.startswith("<"):
        return _parse_xml(stripped, verdict)
    if stripped.startswith("{"):
        return _parse_json(stripped, verdict)
    return _parse_cli(text, verdict)


# -- CLI ----------------------------------------------------------------------------------------
def _parse_cli(text: str, verdict: ProfileVerdict) -> list[V2Part]:
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _CLI_LOCATION.fullmatch(line.strip())]
    if not starts:
        verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR, "no 'LOCATION FRU=...' block in the output",
                    "LOCATION FRU=.. SLOT=.. BAY=.. CHASSIS=.. NODE=..", "none")
        return []
    parts = []
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(lines)
        keys = dict(re.findall(r"([A-Z]+)=(\S+)", lines[start]))
        location = _location_key({k.lower(): v for k, v in keys.items()}, verdict)
        block = lines[start + 1: end]
        part = _parse_cli_block(block, location, verdict)
        if part is not None:
            parts.append(part)
    return parts


def _parse_cli_block(block: list[str], location: str | None, verdict: ProfileVerdict) -> V2Part | None:
    body = [line.strip() for line in block]
    if any(line.startswith("-----BEGIN CERTIFICATE-----") for line in body):
        part = V2Part("trust_chain", location)
        blocks = pem_blocks(block, verdict)
        if blocks is None:
            return None
        names = [body[b.first_line - 1].partition(":")[2].strip() if b.first_line else "" for b in blocks]
        part.certificates = [(name, b.certificate, b.der) for name, b in zip(names, blocks)]
    elif "Compliance:" in body:
        part = V2Part("compliance", location)
        index = body.index("Compliance:") + 1
        while index < len(body) and body[index] and body[index] != "Signature:":
            attribute, sep, value = body[index].partition(": ")
            if not sep:
                attribute, sep, value = body[index].rstrip(":"), ":", ""
            part.capabilities.append((attribute, value))
            index += 1
    elif "Registers:" in body or "Boot Hashes:" in body:
        part = V2Part("measurement", location)
        section = None
        for line in body:
            if line in ("Boot Hashes:", "OS:", "Hashes:", "Registers:", "Signature:"):
                section = line
                continue
            if section == "Signature:" or not line or line.startswith("---"):
                continue
            label, _, value = line.partition(": ")
            if line.startswith("Platform:"):
                part.platform = line.partition(":")[2].strip()
            elif section == "Boot Hashes:":
                part.boot_stages.append((len(part.boot_stages), label, value.strip()))
            elif section == "OS:" and line.startswith("Version:"):
                part.os_version = line.partition(":")[2].strip()
            elif section == "Hashes:":
                part.packages.append((label, value.strip()))
            elif section == "Registers:" and re.fullmatch(r"PCR\d+", label):
                part.pcrs[int(label[3:])] = value.strip()
    else:
        verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR,
                    f"the block for {location} has no trust chain, compliance or measurement",
                    "one of them", "none")
        return None
    if "Signature:" in body:
        index = body.index("Signature:")
        version_line = body[index + 1] if index + 1 < len(body) else ""
        value_line = body[index + 2] if index + 2 < len(body) else ""
        hex_line = body[index + 3] if index + 3 < len(body) else ""
        part.signed = True
        match = re.fullmatch(r"Version:\s*(\d{1,10})", version_line)
        if match is None or value_line != "Value:":
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, "the signature block is malformed",
                        "Signature: / Version: V / Value: / hex", f"{version_line[:30]} | {value_line[:30]}")
        else:
            part.version = int(match.group(1))
            part.signature = parse_hex_signature(hex_line)
    return part


# -- XML and JSON -------------------------------------------------------------------------------
def _parse_xml(text: str, verdict: ProfileVerdict) -> list[V2Part]:
    if "<!DOCTYPE" in text or "<!ENTITY" in text:  # a device reply never declares entities
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, "the XML declares a DOCTYPE or entities",
                    "plain NETCONF XML", "DOCTYPE/ENTITY")
        return []
    try:
        root = _xml_within_depth(text.strip())
    except ET.ParseError as exc:
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"the XML cannot be parsed ({exc})",
                    "well-formed XML", str(exc))
        return []
    except _TooDeep:
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR,
                    f"the XML nests deeper than {MAX_XML_DEPTH} elements; a device never prints that, so "
                    "it is refused", f"at most {MAX_XML_DEPTH} levels", f"more than {MAX_XML_DEPTH}")
        return []
    return [part for location in _xml_find(root, "location")
            for part in _parts_from_tree(_xml_to_tree(location), verdict)]


class _TooDeep(Exception):
    """The XML nests deeper than MAX_XML_DEPTH (raised while reading it)."""


def _xml_within_depth(text: str) -> ET.Element:
    """The XML's root element, read a chunk at a time and refused (`_TooDeep`) as soon as it
    nests deeper than MAX_XML_DEPTH: `_xml_to_tree` recurses once per level, so the bound is
    what keeps it (and the tree built) small. Raises ET.ParseError for malformed XML."""
    parser = ET.XMLPullParser(events=("start", "end"))
    depth = 0
    root: ET.Element | None = None
    for offset in range(0, len(text), _XML_CHUNK):
        parser.feed(text[offset:offset + _XML_CHUNK])
        for event, element in parser.read_events():
            if event == "end":
                depth -= 1
                continue
            depth += 1
            if root is None:
                root = element
            if depth > MAX_XML_DEPTH:
                raise _TooDeep
    parser.close()  # raises ET.ParseError for unclosed elements or trailing junk
    if root is None:
        raise ET.ParseError("no element found")
    return root


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_find(element: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in element.iter() if _local(e.tag) == name]


def _xml_to_tree(element: ET.Element) -> Any:
    """XML as JSON-like data: repeated children become lists, leaves stay strings."""
    children = list(element)
    if not children:
        return (element.text or "").strip()
    tree: dict[str, Any] = {}
    for child in children:
        name = _local(child.tag)
        value = _xml_to_tree(child)
        if name in tree:
            if not isinstance(tree[name], list) or name not in _REPEATED:
                tree[name] = [tree[name]] if not isinstance(tree[name], list) else tree[name]
            tree[name].append(value)
        else:
            tree[name] = [value] if name in _REPEATED else value
    return tree


_REPEATED = {"integrity", "trust-chain", "capability", "boot-loader", "package-integrity", "register", "location"}


def _parse_json(text: str, verdict: ProfileVerdict) -> list[V2Part]:
    try:  # strict: a duplicate key would let two readers see different signed values
        document = loads_strict(text, max_depth=MAX_JSON_DEPTH)
    except JSONProblem as problem:
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"the JSON cannot be used: {problem.message}",
                    problem.expected or "strict RESTCONF JSON", problem.found)
        return []
    data = next((v for k, v in document.items() if k.endswith("system-integrity-oper-data")), None) \
        if isinstance(document, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("location"), list):
        verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR, "no system-integrity-oper-data/location list",
                    "Cisco-IOS-XE-system-integrity-oper:system-integrity-oper-data", "absent")
        return []
    return [part for location in data["location"] for part in _parts_from_tree(location, verdict)]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _objects(value: Any, what: str, where: str | None, verdict: ProfileVerdict) -> list[dict[str, Any]]:
    """The objects `value` holds (one, or a list of them); any other item is a finding."""
    items = _as_list(value)
    objects = [item for item in items if isinstance(item, dict)]
    if len(objects) != len(items):
        other = next(item for item in items if not isinstance(item, dict))
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"a {what} at {where} is not an object",
                    f"{what} objects", type(other).__name__)
    return objects


def _text(value: Any, what: str, where: str | None, verdict: ProfileVerdict) -> str | None:
    """A leaf's text (numbers as printed); None when absent; a container is a finding."""
    if value is None:
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value).strip()
    verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"the {what} at {where} is not a value",
                "a string or number", type(value).__name__)
    return None


def _parts_from_tree(location: Any, verdict: ProfileVerdict) -> list[V2Part]:
    if not isinstance(location, dict):
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, "a location is not an object", "object", "other")
        return []
    key = _location_key(location, verdict)
    parts = []
    for integrity in _as_list(location.get("integrity")):
        kinds = [name for name in _KINDS if isinstance(integrity, dict) and name in integrity]
        if len(kinds) != 1:
            verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR,
                        f"expected one of trust-chain, compliance, measurement at {key}", "one", str(kinds))
            continue
        node = integrity[kinds[0]]
        if isinstance(node, list) and len(node) == 1:  # XML: the container shares a name with its list
            node = node[0]
        if not isinstance(node, dict):
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"{kinds[0]} at {key} is not a container",
                        "an object", type(node).__name__)
            continue
        part = V2Part(_KINDS[kinds[0]], key, printed_nonce=_text(integrity.get("nonce"), "nonce", key, verdict) or None)
        if part.kind == "trust_chain":
            for item in _objects(node.get("trust-chain"), "trust-chain certificate", key, verdict):
                name = _text(item.get("name"), "certificate name", key, verdict) or ""
                try:
                    der = decode_base64_der(_text(item.get("value"), "certificate", key, verdict) or "")
                    part.certificates.append((name, load_der_certificate(der), der))
                except ValueError as exc:  # load_der_certificate: every malformed certificate is one
                    verdict.add(FindingId.OUTPUT_BAD_CERTIFICATE, Severity.ERROR,
                                f"the certificate {name!r} at {key} cannot be read ({exc})",
                                "base64 DER", str(exc)[:80])
                    part.certificates = []
                    break
        elif part.kind == "compliance":
            part.capabilities = [(_text(c.get("attribute"), "attribute", key, verdict) or "",
                                  _text(c.get("value"), "capability value", key, verdict) or "")
                                 for c in _objects(node.get("capability"), "capability", key, verdict)]
        else:
            part.platform = _text(node.get("platform"), "platform", key, verdict) or None
            for stage in _objects(node.get("boot-loader"), "boot stage", key, verdict):
                try:
                    number = int(stage.get("stage"))  # type: ignore[arg-type]
                except (TypeError, ValueError, OverflowError):
                    number = -1
                part.boot_stages.append((number, _text(stage.get("version"), "boot version", key, verdict),
                                         _text(stage.get("hash"), "boot hash", key, verdict) or ""))
            systems = _objects(node.get("operating-system"), "operating-system", key, verdict)
            system = systems[0] if len(systems) == 1 else {}
            part.os_version = _text(system.get("version"), "OS version", key, verdict)
            part.packages = [(_text(p.get("name"), "package name", key, verdict),
                              _text(p.get("hash"), "package hash", key, verdict) or "")
                             for p in _objects(system.get("package-integrity"), "package", key, verdict)]
            for register in _objects(node.get("register"), "register", key, verdict):
                try:
                    index = int(register.get("index"))  # type: ignore[arg-type]
                except (TypeError, ValueError, OverflowError):
                    verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"a register at {key} has no index",
                                "index", str(register)[:60])
                    continue
                part.pcrs[index] = _text(register.get("pcr-content"), "PCR", key, verdict) or ""
        signature = node.get("signature")
        if isinstance(signature, dict):
            part.signed = True
            try:
                part.version = int(signature.get("version"))  # type: ignore[arg-type]
            except (TypeError, ValueError, OverflowError):
                part.version = None
            part.signature = parse_hex_signature(_text(signature.get("signature"), "signature", key, verdict) or "")
        parts.append(part)
    return parts


def _location_key(location: dict[str, Any], verdict: ProfileVerdict) -> str | None:
    missing = [key for key in LOCATION_KEYS if key not in location or location[key] in (None, "")]
    if missing:
        verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR,
                    f"a location lacks its YANG list keys ({', '.join(missing)}); the model requires them",
                    ", ".join(LOCATION_KEYS), "missing: " + ", ".join(missing))
        return None
    return " ".join(f"{key}={str(location[key]).strip()}" for key in LOCATION_KEYS)


# -- verification -------------------------------------------------------------------------------
def _signer_for(part: V2Part, signers: Sequence[Signer]) -> Signer | None:
    exact = [s for s in signers if s.location is not None and s.location == part.location]
    if exact:
        return exact[0]
    anywhere = [s for s in signers if s.location is None]
    return anywhere[0] if len(anywhere) == 1 else None  # never another location's certificate


def _verify_part(verdict: ProfileVerdict, part: V2Part, anchors: Anchors, signers: Sequence[Signer],
                 nonce: int | None, when: dt.datetime) -> dict[str, Any] | None:
    where = part.location or "a location without keys"
    if nonce is not None and part.printed_nonce is not None and part.printed_nonce != str(nonce):
        verdict.add(FindingId.NONCE_MISMATCH, Severity.ERROR,
                    f"the output at {where} answers another nonce: a replay or a mix-up",
                    str(nonce), part.printed_nonce)
    signed_tail = b""
    pcrs_ok = True
    leaf: x509.Certificate | None = None
    result: dict[str, Any] = {"location": part.location, "request": part.kind}
    if part.kind == "trust_chain":
        if len(part.certificates) != 3:
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR,
                        f"expected root, sub-CA and SUDI certificates at {where}", "3", str(len(part.certificates)))
            return None
        signed_tail = b"".join(der for _, _, der in part.certificates)
        leaf = part.certificates[2][1]
        chain_ok = check_sudi_chain(verdict, leaf, anchors, when, printed_root=part.certificates[0][1],
                                    printed_sub_ca=part.certificates[1][1])
        result["device_certificate"] = certificate_summary(leaf)
    else:
        if part.kind == "compliance":
            if not part.capabilities:
                verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR, f"no capability listed at {where}",
                            "capabilities", "none")
                return None
            signed_tail = b"".join(a.encode() + v.encode() for a, v in part.capabilities)
            result["capabilities"] = dict(part.capabilities)
        else:
            pcrs_ok = _check_measurement(verdict, part, where)
            if not pcrs_ok and not all(_PCR.fullmatch(part.pcrs.get(i, "")) for i in (0, 8)):
                return None
            signed_tail = bytes.fromhex(part.pcrs[0]) + bytes.fromhex(part.pcrs[8])
            result.update({"pcr0": part.pcrs[0].upper(), "pcr8": part.pcrs[8].upper(),
                           "boot_stages": [{"stage": s, "hash": h.upper()} for s, _, h in part.boot_stages],
                           "packages": [{"name": n, "hash": h.upper()} for n, h in part.packages]})
        signer = _signer_for(part, signers)
        if signer is None:
            verdict.add(FindingId.CHAIN_NO_CERTIFICATE, Severity.ERROR,
                        f"no SUDI certificate for {where}, so its signature cannot be checked: pass the same "
                        "device's trust_chain output (--signer)", "the location's SUDI certificate",
                        f"{len(signers)} signer(s), none for this location")
            return None
        leaf = signer.leaf
        chain_ok = check_sudi_chain(verdict, leaf, anchors, when, printed_root=signer.root,
                                    printed_sub_ca=signer.sub_ca)
    if not part.signed:
        verdict.add(FindingId.OUTPUT_UNSIGNED, Severity.ERROR, f"the {part.kind} at {where} carries no signature",
                    "a signature block", "none")
        return None
    if part.version is None or part.version > MAX_U32 or part.signature is None:
        verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"the signature at {where} is malformed",
                    "version 1 and 512 upper-case hex digits", "something else")
        return None
    if part.version != 1:
        verdict.add(FindingId.OUTPUT_UNSUPPORTED_VERSION, Severity.ERROR, "unknown signature version", "1",
                    str(part.version))
        return None
    if nonce is None:
        verdict.add(FindingId.SIGNATURE_INVALID, Severity.ERROR,
                    f"the signature at {where} cannot be checked without the nonce that was sent "
                    "(v2 outputs always sign one): pass --nonce", "the nonce", "none")
        return None
    ok, problem = rsa_sha256_ok(leaf, part.signature, xe_header(nonce, part.version) + signed_tail)
    if not ok:
        verdict.add(FindingId.SIGNATURE_INVALID if problem is None else FindingId.SIGNATURE_UNSUPPORTED_KEY,
                    Severity.ERROR,
                    problem or f"the {part.kind} signature at {where} does not verify (checked with nonce "
                               f"{nonce}): the data, nonce or signer differ",
                    "a signature by the SUDI key", "a signature that does not verify")
        return None
    verdict.nonce = nonce.to_bytes(8, "big")
    return result if (chain_ok and pcrs_ok) else None


def _check_measurement(verdict: ProfileVerdict, part: V2Part, where: str) -> bool:
    ok = True
    for stage, _, value in part.boot_stages:
        if not _HEX_HASH.fullmatch(value):
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"boot stage {stage} hash at {where} is malformed",
                        "64 or 128 hex digits", f"{len(value)} characters")
            ok = False
    for name, value in part.packages:
        if not _HEX_HASH.fullmatch(value):
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"the hash of {name} at {where} is malformed",
                        "64 or 128 hex digits", f"{len(value)} characters")
            ok = False
    stages = sorted(s for s, _, _ in part.boot_stages)
    if not part.boot_stages or stages != list(range(len(stages))):
        verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR, f"the boot stages at {where} are not 0..n",
                    "stages 0, 1, ...", str(stages))
        ok = False
    if not part.packages:
        verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR, f"no package hash at {where}", "package-integrity",
                    "none")
        ok = False
    for index in (0, 8):
        if not _PCR.fullmatch(part.pcrs.get(index, "")):
            verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR, f"PCR{index} at {where} is missing or malformed",
                        "64 hex digits", part.pcrs.get(index, "absent")[:70])
            ok = False
    if not ok:
        return False
    pcr0 = fold(h for _, _, h in sorted(part.boot_stages, key=lambda s: s[0]))
    pcr8 = fold(h for _, h in part.packages)
    for index, computed in ((0, pcr0), (8, pcr8)):
        if computed.hex().upper() != part.pcrs[index].upper():
            verdict.add(FindingId.MEASUREMENT_PCR_MISMATCH, Severity.ERROR,
                        f"PCR{index} at {where} does not recompute from the printed hashes",
                        computed.hex().upper(), part.pcrs[index].upper())
            ok = False
    return ok


def verify_system_integrity(
    raw: bytes, *, anchors: Anchors, signers: Sequence[Signer], nonce: int | None, when: dt.datetime,
    policy: Policy,
) -> ProfileVerdict:
    """Verify every location's part; trusted only if every part verifies."""
    verdict = ProfileVerdict(profile=PROFILE, verified_at=when)
    text = decode_text(raw, verdict)
    if text is None:
        return verdict
    parts = parse_v2(text, verdict)
    if not parts:
        if not verdict.errors:
            verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR, "no integrity data in the output",
                        "trust_chain, compliance or measurement", "none")
        return verdict
    verdict.signed = all(part.signed for part in parts)
    results = []
    unauthenticated: dict[str, Any] = {}
    for part in parts:
        result = _verify_part(verdict, part, anchors, signers, nonce, when)
        if part.kind == "measurement":
            unauthenticated[part.location or "?"] = {
                "platform": part.platform, "os_version": part.os_version,
                "boot_versions": [v for _, v, _ in part.boot_stages],
            }
            if all(_HEX_HASH.fullmatch(h) for _, _, h in part.boot_stages):
                verdict.measurements.append(Measurements(
                    location=part.location, platform=part.platform,
                    boot_stages=tuple((s, v, h.upper()) for s, v, h in sorted(part.boot_stages, key=lambda x: x[0])),
                    os_version=part.os_version,
                    os_hashes=tuple((n, h.upper()) for n, h in part.packages),
                    bound=result is not None,
                ))
        if result is not None:
            results.append(result)
    check_nonce_given(verdict, nonce, policy)
    if unauthenticated:
        verdict.unauthenticated = unauthenticated
        verdict.add(FindingId.OUTPUT_UNAUTHENTICATED, Severity.INFO,
                    "platform and version strings are not covered by the signature or the PCRs, so not verified",
                    None, None)
    if len(results) == len(parts) and not verdict.errors:
        verdict.authenticated = {"parts": results, "nonce": str(nonce)}
    return verdict
