"""The NETCONF replies of `Cisco-IOS-XR-remote-attestation-act` read into plain values, with
bounds: the XML is refused if it declares a DTD or entities (XXE, entity expansion), is over
`MAX_REPLY_BYTES`, or nests deeper than a reply does. Leaf names are the model's; binary leaves
are base64 (RFC 7950 `binary`), a PCR value is the model's `leaf-list uint8` (one `<value>`
per byte) or one base64 `<value>`. Raises `ReplyError` (expected, found) for anything else.
"""

from __future__ import annotations

import base64
import functools
import binascii
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_REPLY_BYTES", "NAMESPACE", "BootEvent", "CertificateNode", "ImaEvent", "LogNode", "QuoteNode",
    "ReplyError", "parse_boot_log", "parse_certificates", "parse_ima_log", "parse_quote",
]

NAMESPACE = "http://cisco.com/ns/yang/Cisco-IOS-XR-remote-attestation-act"
#: A reply of one RPC for every node of a large chassis: the IMA log is the biggest (~200 bytes
#: an entry; an XR node measures a few thousand files). Anything larger is refused (DoS bound).
MAX_REPLY_BYTES = 32 * 1024 * 1024
#: Nodes in one reply: a large XR chassis has tens of nodes.
MAX_NODES = 1024
#: Entries of one event log (boot logs hold tens to hundreds; IMA logs thousands).
MAX_EVENTS = 200_000
#: Element depth of a reply (rpc-reply/container/node-data/list/leaf is 5-6).
MAX_DEPTH = 16
#: Replies parsed lately, by their bytes: the outputs of one poll each read the same
#: certificate and quote replies (a poll verifies four outputs; a run, several polls at once).
_PARSED_CACHE = 64
#: A DTD is how entity-expansion and external-entity attacks enter XML; no reply has one.
_DTD = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
_DECLARED_ENCODING = re.compile(r"\ufeff?\s*<\?xml\s[^>]*?\bencoding\s*=\s*[\"']([^\"']*)[\"']")
#: The encoding names a NETCONF reply may declare (RFC 6241: UTF-8; ASCII is a subset).
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_DIGEST_ALGORITHMS = {"0": "sha1", "1": "sha256", "2": "sha384", "3": "sha512",
                      "sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}


class ReplyError(ValueError):
    """A reply that is not the model's: `expected` and `found` say how."""

    def __init__(self, what: str, expected: str, found: str) -> None:
        super().__init__(f"{what}: expected {expected}, found {found}")
        self.expected, self.found = expected, found


@dataclass(frozen=True)
class QuoteNode:
    """One `node-data` of `attest-platform-config-registers`."""

    location: str
    up_time: int | None
    pcrs: dict[int, bytes]
    quote: bytes
    signature: bytes


@dataclass(frozen=True)
class CertificateNode:
    """One `system-certificates` of `get-certificate`: DER certificates as listed."""

    location: str
    certificates: tuple[bytes, ...]


@dataclass(frozen=True)
class BootEvent:
    """One TCG event of `get-platform-boot-integrity-event-logs`."""

    number: int
    event_type: int
    pcr_index: int
    digests: dict[str, bytes]
    data: bytes


@dataclass(frozen=True)
class ImaEvent:
    """One entry of `get-platform-ima-event-logs`."""

    number: int
    template: str
    filename: str
    #: `<alg>:<hex digest>` (as ima-ng's `d-ng` field spells it).
    filedata_hash: str
    template_hash_algorithm: str
    template_hash: bytes
    pcr_index: int


@dataclass(frozen=True)
class LogNode:
    """One node's event log (boot or IMA) and its `up-time`."""

    location: str
    up_time: int | None
    events: tuple = field(default_factory=tuple)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(raw: bytes, what: str) -> ET.Element:
    if len(raw) > MAX_REPLY_BYTES:
        raise ReplyError(what, f"a reply of at most {MAX_REPLY_BYTES} bytes", f"{len(raw)} bytes")
    # The checks below read the text the parser reads: bytes in another encoding (UTF-16) hid a
    # <!DOCTYPE from a check on the bytes, and a declared encoding could make another reader
    # of the same bytes see other content. Parsed as text, the declaration is not followed.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReplyError(what, "UTF-8 XML (RFC 6241)", f"a byte that is not UTF-8 at offset {exc.start}") from None
    if "\x00" in text:
        raise ReplyError(what, "UTF-8 XML (RFC 6241)", "NUL characters (UTF-16 or UTF-32 text?)")
    declared = _DECLARED_ENCODING.match(text)
    if declared is not None and declared.group(1).lower() not in _UTF8_NAMES:
        raise ReplyError(what, "UTF-8 XML (RFC 6241)", f"a declared encoding {declared.group(1)[:40]!r}")
    if _DTD.search(text):
        raise ReplyError(what, "XML without a DTD or entity declarations", "a <!DOCTYPE or <!ENTITY")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ReplyError(what, "well-formed XML", str(exc)) from None
    _check_depth(root, what)
    if _local(root.tag) == "rpc-reply":
        errors = [e for e in root.iter() if _local(e.tag) == "rpc-error"]
        if errors:
            message = next((e.text for e in errors[0].iter() if _local(e.tag) == "error-message"), None)
            raise ReplyError(what, "a reply with data", f"an rpc-error ({(message or 'no message').strip()[:200]})")
    return root


def _check_depth(root: ET.Element, what: str) -> None:
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ReplyError(what, f"elements nested at most {MAX_DEPTH} deep", "deeper")
        stack.extend((child, depth + 1) for child in element)


def _container(root: ET.Element, name: str, what: str) -> ET.Element:
    qualified = "}" + name
    found = [e for e in root.iter() if e.tag == name or e.tag.endswith(qualified)]
    if len(found) != 1:
        raise ReplyError(what, f"one <{name}> of {NAMESPACE}", f"{len(found)}")
    if not found[0].tag.startswith("{" + NAMESPACE + "}"):
        raise ReplyError(what, f"<{name}> in namespace {NAMESPACE}", found[0].tag.split("}")[0].lstrip("{") or "none")
    return found[0]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    qualified = "}" + name
    return [child for child in element if child.tag == name or child.tag.endswith(qualified)]


def _text(element: ET.Element, name: str, what: str, *, required: bool = True) -> str | None:
    found = _children(element, name)
    if len(found) > 1:
        raise ReplyError(what, f"one <{name}>", f"{len(found)}")
    if not found:
        if required:
            raise ReplyError(what, f"a <{name}>", "none")
        return None
    return (found[0].text or "").strip()


def _int(element: ET.Element, name: str, what: str, bits: int, *, required: bool = True) -> int | None:
    text = _text(element, name, what, required=required)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 20 or int(text) >= 1 << bits:
        raise ReplyError(what, f"<{name}> a {bits}-bit unsigned integer", repr(text[:40]))
    return int(text)


def _binary(text: str | None, what: str, name: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise ReplyError(what, f"<{name}> base64", repr((text or "")[:40])) from None


def _hex_or_base64(text: str, what: str, name: str) -> bytes:
    compact = "".join(text.split())
    if re.fullmatch(r"(?:[0-9a-fA-F]{2}){20,64}", compact):
        return bytes.fromhex(compact)
    return _binary(compact, what, name)


def _file_hash(text: str, algorithm: str, what: str) -> str:
    """`filedata-hash` as `<alg>:<hex>`: the model's leaf is the raw digest (base64, the
    algorithm `template-hash-algorithm`'s); an `alg:hex` spelling (Linux's ascii log) is kept."""
    if ":" in text:
        return text
    return f"{algorithm or 'sha256'}:{_hex_or_base64(text, what, 'filedata-hash').hex()}"


def _nodes(container: ET.Element, name: str, what: str) -> list[ET.Element]:
    nodes = _children(container, name)
    if not nodes or len(nodes) > MAX_NODES:
        raise ReplyError(what, f"1 to {MAX_NODES} <{name}> entries", str(len(nodes)))
    return tuple(nodes)


@functools.lru_cache(maxsize=_PARSED_CACHE)
def parse_quote(raw: bytes) -> tuple[QuoteNode, ...]:
    """The nodes of an `attest-platform-config-registers` reply."""
    what = "attest-platform-config-registers reply"
    container = _container(_parse(raw, what), "platform-config-registers", what)
    nodes = []
    for node in _nodes(container, "node-data", what):
        location = _text(node, "node-location", what) or ""
        pcrs: dict[int, bytes] = {}
        for pcr in _children(node, "PCR") + _children(node, "pcr"):
            index = _int(pcr, "index", what, 16)
            assert index is not None
            values = [(v.text or "").strip() for v in _children(pcr, "value")]
            if len(values) > 1 or (values and values[0].isdigit() and int(values[0]) < 256 and len(values[0]) <= 3):
                if not all(v.isascii() and v.isdigit() and int(v) < 256 for v in values) or len(values) > 64:
                    raise ReplyError(what, f"PCR {index}: up to 64 <value> bytes 0-255", repr(values[:3]))
                value = bytes(int(v) for v in values)
            else:
                value = _binary(values[0] if values else "", what, f"PCR {index} value")
            if index in pcrs:
                raise ReplyError(what, f"PCR {index} once on node {location}", "twice")
            pcrs[index] = value
        nodes.append(QuoteNode(location, _int(node, "up-time", what, 32, required=False), pcrs,
                               _binary(_text(node, "pcr-quote", what), what, "pcr-quote"),
                               _binary(_text(node, "pcr-quote-signature", what), what, "pcr-quote-signature")))
    return tuple(nodes)


@functools.lru_cache(maxsize=_PARSED_CACHE)
def parse_certificates(raw: bytes) -> tuple[CertificateNode, ...]:
    """The nodes of a `get-certificate` reply (certificates as listed, DER)."""
    what = "get-certificate reply"
    container = _container(_parse(raw, what), "get-certificate-response", what)
    nodes = []
    for node in _nodes(container, "system-certificates", what):
        ders = []
        for holder in _children(node, "certificates"):
            for cert in _children(holder, "certificate"):
                ders.append(_binary(_text(cert, "value", what), what, "certificate value"))
        nodes.append(CertificateNode(_text(node, "node-location", what) or "", tuple(ders)))
    return tuple(nodes)


def _log_nodes(raw: bytes, operation: str, container_name: str, entry_names: tuple[str, ...],
               read_entry: Any) -> tuple[LogNode, ...]:
    """The nodes of an event-log reply: each node's entries (named `entry_names`) read by
    `read_entry(entry, what)`, at most MAX_EVENTS a node."""
    what = f"{operation} reply"
    container = _container(_parse(raw, what), container_name, what)
    nodes = []
    for node in _nodes(container, "node-data", what):
        entries = [entry for name in entry_names for entry in _children(node, name)]
        if len(entries) > MAX_EVENTS:
            raise ReplyError(what, f"at most {MAX_EVENTS} events", str(len(entries)))
        nodes.append(LogNode(_text(node, "node-location", what) or "", _int(node, "up-time", what, 32, required=False),
                             tuple(read_entry(entry, what) for entry in entries)))
    return tuple(nodes)


def _boot_event(entry: ET.Element, what: str) -> BootEvent:
    digests: dict[str, bytes] = {}
    for item in _children(entry, "digest-list"):
        algorithm = _DIGEST_ALGORITHMS.get((_text(item, "digest-hash-algorithm", what) or "").lower())
        if algorithm is None:
            raise ReplyError(what, "digest-hash-algorithm SHA1, SHA256, SHA384 or SHA512",
                             repr(_text(item, "digest-hash-algorithm", what)))
        digests[algorithm] = _hex_or_base64(_text(item, "digest", what) or "", what, "digest")
    data = _text(entry, "event-data", what, required=False)
    return BootEvent(_int(entry, "event-number", what, 32) or 0, _int(entry, "event-type", what, 32) or 0,
                     _int(entry, "pcr-index", what, 16) or 0, digests, _binary(data, what, "event-data") if data else b"")


def _ima_event(entry: ET.Element, what: str) -> ImaEvent:
    algorithm = (_text(entry, "template-hash-algorithm", what) or "").lower()
    return ImaEvent(_int(entry, "event-number", what, 64) or 0, _text(entry, "ima-template", what) or "",
                    _text(entry, "filename-hint", what) or "",
                    _file_hash(_text(entry, "filedata-hash", what) or "", algorithm, what), algorithm,
                    _hex_or_base64(_text(entry, "template-hash", what) or "", what, "template-hash"),
                    _int(entry, "pcr-index", what, 16) or 0)


@functools.lru_cache(maxsize=_PARSED_CACHE)
def parse_boot_log(raw: bytes) -> tuple[LogNode, ...]:
    """The nodes of a `get-platform-boot-integrity-event-logs` reply (the model names an entry
    `event_log`; `event-log` is read alike)."""
    return _log_nodes(raw, "get-platform-boot-integrity-event-logs", "system-boot-integrity",
                      ("event_log", "event-log"), _boot_event)


@functools.lru_cache(maxsize=_PARSED_CACHE)
def parse_ima_log(raw: bytes) -> tuple[LogNode, ...]:
    """The nodes of a `get-platform-ima-event-logs` reply."""
    return _log_nodes(raw, "get-platform-ima-event-logs", "system-ima", ("ima-event-log",), _ima_event)
