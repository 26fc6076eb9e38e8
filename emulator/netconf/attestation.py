"""The four RPCs of Cisco-IOS-XR-remote-attestation-act (2017-06-08), answered from the device's TPMs.

Leaf names and types are the model's (docs/tpm-attestation.md), binary leaves base64.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives import serialization
from lxml import etree

from .. import signing
from ..nonce import NonceError, parse_base64_nonce
from ..tpm.model import AK_CERTIFICATE_ID, TpmError
from ..tpm.swtpm import SwtpmError
from .errors import RpcError

__all__ = ["CAPABILITY", "CERTIFICATE_IDS", "NS", "REQUIRED_TASKS", "NodeCertificates", "answer",
           "node_certificates"]

NS = "http://cisco.com/ns/yang/Cisco-IOS-XR-remote-attestation-act"
MODULE = "Cisco-IOS-XR-remote-attestation-act"
REVISION = "2017-06-08"
CAPABILITY = f"{NS}?module={MODULE}&revision={REVISION}"
# Task IDs an attestation RPC needs: reading the system's state and its crypto material.
REQUIRED_TASKS = [("read", "system"), ("read", "crypto")]
MAX_UINT64 = (1 << 64) - 1
# get-certificate's identifiers: the TPM's attestation key (default), or the system trustpoint's
# chain, whose key signs the dossier (as `show platform security attest certificate` answers).
SYSTEM_CERTIFICATE_IDS = ("system-identity", signing.SYSTEM_TRUSTPOINT)
CERTIFICATE_IDS = (AK_CERTIFICATE_ID, *SYSTEM_CERTIFICATE_IDS)


@dataclass(frozen=True)
class NodeCertificates:
    """One node's get-certificate answer: the chain (name, DER), leaf first, and the signature
    over nonce || uint32 version || the DERs (None without a nonce)."""

    node: str
    certificates: list[tuple[str, bytes]]
    signature: bytes | None
    signature_version: int = signing.SIGNATURE_VERSION


def node_certificates(device: Any, identifier: str, nodes: list[str], nonce: bytes | None) -> list[NodeCertificates]:
    """The get-certificate answer per node for `identifier` (one of CERTIFICATE_IDS); raises
    ValueError naming the identifiers for another, signing.SignError when the system
    trustpoint has no key or certificate."""
    if identifier not in CERTIFICATE_IDS:
        raise ValueError(f"certificate identifier {identifier!r} not found: expected one of {', '.join(CERTIFICATE_IDS)}")
    answers = []
    if identifier != AK_CERTIFICATE_ID:
        key, chain = device.signing_credentials()
        listed = [(name, cert.public_bytes(serialization.Encoding.DER)) for name, cert in chain]
        signed = signing.signed_bytes(nonce, "", [der for _, der in listed]) if nonce is not None else b""
        for node in nodes:
            # Each node signs for itself; the emulated nodes share the system trustpoint's key.
            signature = signing._sign(signing._private_key_of(key), signed) if nonce is not None else None
            answers.append(NodeCertificates(node, listed, signature))
        return answers
    for node in nodes:
        listed = [(name, cert.public_bytes(serialization.Encoding.DER)) for name, cert in device.tpm.chain(node)]
        signature = device.tpm.sign(node, signing.signed_bytes(nonce, "", [der for _, der in listed])) \
            if nonce is not None else None
        answers.append(NodeCertificates(node, listed, signature))
    return answers


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _leaf(parent: Any, tag: str, value: object) -> Any:
    element = etree.SubElement(parent, _q(tag))
    element.text = value if isinstance(value, str) else str(value)
    return element


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- input ---------------------------------------------------------------------------------------
def _children(operation: Any, name: str) -> list[Any]:
    return [child for child in operation if child.tag == _q(name)]


def _text(operation: Any, name: str) -> str | None:
    found = _children(operation, name)
    if len(found) > 1:
        raise RpcError("invalid-value", f"expected one <{name}>, found {len(found)}", info={"bad-element": name})
    return None if not found else (found[0].text or "").strip()


def _nonce(operation: Any) -> bytes | None:
    """The `<nonce>` by emulator.nonce's rule for the model's base64 form; None when absent."""
    text = _text(operation, "nonce")
    if text is None:
        return None
    try:
        return parse_base64_nonce(text)
    except NonceError as exc:
        raise RpcError("invalid-value", exc.message.removeprefix("% "), info={"bad-element": "nonce"}) from None


def _integer(text: str, name: str, maximum: int) -> int:
    if not text.isdigit() or int(text) > maximum:
        raise RpcError("invalid-value", f"expected <{name}> an integer 0-{maximum}, found {text[:40]!r}",
                       info={"bad-element": name})
    return int(text)


def _event_range(operation: Any) -> tuple[int, int]:
    start_text, end_text = _text(operation, "start-event-number"), _text(operation, "end-event-number")
    start = _integer(start_text, "start-event-number", MAX_UINT64) if start_text is not None else 0
    end = _integer(end_text, "end-event-number", MAX_UINT64) if end_text is not None else MAX_UINT64
    if end < start:
        raise RpcError("invalid-value", f"expected end-event-number >= start-event-number ({start}), found {end}",
                       info={"bad-element": "end-event-number"})
    return start, end


def _nodes(device: Any, operation: Any) -> list[str]:
    try:
        return device.tpm.nodes(_text(operation, "location"))
    except TpmError as exc:
        raise RpcError("invalid-value", str(exc), info={"bad-element": "location"}) from None


def _attestation_key_id(operation: Any, name: str) -> None:
    identifier = _text(operation, name)
    if identifier not in (None, AK_CERTIFICATE_ID):
        raise RpcError("invalid-value", f"expected <{name}> {AK_CERTIFICATE_ID!r}, found {identifier[:40]!r}",
                       info={"bad-element": name})


# -- the RPCs ------------------------------------------------------------------------------------
def _get_certificate(device: Any, operation: Any) -> Any:
    identifier = _text(operation, "certificate-identifier") or AK_CERTIFICATE_ID
    nonce = _nonce(operation)
    try:
        answers = node_certificates(device, identifier, _nodes(device, operation), nonce)
    except ValueError as exc:
        raise RpcError("invalid-value", str(exc), info={"bad-element": "certificate-identifier"}) from None
    except signing.SignError as exc:
        raise RpcError("operation-failed", str(exc).lstrip("% ")) from None
    response = etree.Element(_q("get-certificate-response"), nsmap={None: NS})
    for answer in answers:
        system = etree.SubElement(response, _q("system-certificates"))
        _leaf(system, "node-location", answer.node)
        if nonce is not None:
            _leaf(system, "nonce", _b64(nonce))
        certificates = etree.SubElement(system, _q("certificates"))
        for name, der in answer.certificates:
            entry = etree.SubElement(certificates, _q("certificate"))
            _leaf(entry, "name", name)
            _leaf(entry, "value", _b64(der))
        if answer.signature is not None:
            _leaf(system, "signature_version", answer.signature_version)
            _leaf(system, "signature", _b64(answer.signature))
    return response


def _attest(device: Any, operation: Any) -> Any:
    _attestation_key_id(operation, "attestation-certificate-identifier")
    texts = [(child.text or "").strip() for child in _children(operation, "pcr-index")]
    if not texts:
        raise RpcError("missing-element", "expected at least one <pcr-index>, found none",
                       error_type="protocol", info={"bad-element": "pcr-index"})
    indexes = sorted({_integer(text, "pcr-index", 65535) for text in texts})
    nonce = _nonce(operation)
    nodes = _nodes(device, operation)
    registers = etree.Element(_q("platform-config-registers"), nsmap={None: NS})
    if nonce is not None:
        _leaf(registers, "nonce", _b64(nonce))
    for node in nodes:
        try:
            quote = device.tpm.quote(node, indexes, nonce or b"")
        except TpmError as exc:
            raise RpcError("invalid-value", str(exc), info={"bad-element": "pcr-index"}) from None
        data = etree.SubElement(registers, _q("node-data"))
        _leaf(data, "node-location", node)
        _leaf(data, "up-time", quote.up_time)
        for index in indexes:
            pcr = etree.SubElement(data, _q("PCR"))
            _leaf(pcr, "index", index)
            for byte in quote.pcrs[index]:
                _leaf(pcr, "value", byte)
        _leaf(data, "pcr-quote", _b64(quote.attest))
        _leaf(data, "pcr-quote-signature", _b64(quote.signature))
    return registers


def _event_logs(device: Any, operation: Any, root: str, events: Callable[[str], list[Any]],
                add_entry: Callable[[Any, Any], None]) -> Any:
    """Per node: location, up-time, then each event numbered within (start, end]."""
    start, end = _event_range(operation)
    logs = etree.Element(_q(root), nsmap={None: NS})
    for node in _nodes(device, operation):
        data = etree.SubElement(logs, _q("node-data"))
        _leaf(data, "node-location", node)
        _leaf(data, "up-time", device.tpm.up_time(node))
        for event in events(node):
            if start < event.number <= end:
                add_entry(data, event)
    return logs


def _boot_event(data: Any, event: Any) -> None:
    entry = etree.SubElement(data, _q("event_log"))
    _leaf(entry, "event-number", event.number)
    _leaf(entry, "event-type", event.event_type)
    _leaf(entry, "pcr-index", event.pcr_index)
    digests = etree.SubElement(entry, _q("digest-list"))
    _leaf(digests, "digest-hash-algorithm", "SHA256")
    _leaf(digests, "digest", _b64(event.digest))
    _leaf(entry, "event-size", len(event.data))
    _leaf(entry, "event-data", _b64(event.data))


def _ima_event(data: Any, event: Any) -> None:
    entry = etree.SubElement(data, _q("ima-event-log"))
    _leaf(entry, "event-number", event.number)
    _leaf(entry, "ima-template", event.template)
    _leaf(entry, "filename-hint", event.filename)
    _leaf(entry, "filedata-hash", _b64(event.filedata_hash))
    _leaf(entry, "template-hash-algorithm", "sha256")
    _leaf(entry, "template-hash", _b64(event.template_hash))
    _leaf(entry, "pcr-index", event.pcr_index)


def _boot_logs(device: Any, operation: Any) -> Any:
    return _event_logs(device, operation, "system-boot-integrity", device.tpm.boot_log, _boot_event)


def _ima_logs(device: Any, operation: Any) -> Any:
    return _event_logs(device, operation, "system-ima", device.tpm.ima_log, _ima_event)


RPCS: dict[str, Callable[[Any, Any], Any]] = {
    "get-certificate": _get_certificate,
    "attest-platform-config-registers": _attest,
    "get-platform-boot-integrity-event-logs": _boot_logs,
    "get-platform-ima-event-logs": _ima_logs,
}


def answer(device: Any, username: str, operation: Any) -> list[Any]:
    """The rpc-reply's children for `operation`; RpcError for what the device does not answer."""
    qname = etree.QName(operation)
    handler = RPCS.get(qname.localname) if qname.namespace == NS else None
    if handler is None:
        raise RpcError("operation-not-supported",
                       f"expected one of <get>, <close-session> or the {MODULE} RPCs "
                       f"({', '.join(RPCS)}), found <{qname.localname}> in {qname.namespace or 'no namespace'}",
                       error_type="protocol")
    missing = device.authorize(username, REQUIRED_TASKS)
    if missing:
        needed = ", ".join(f"{permission} {task}" for permission, task in missing)
        raise RpcError("access-denied", f"user {username!r} lacks task IDs: {needed}", error_type="application")
    try:
        with device.lock:
            return [handler(device, operation)]
    except SwtpmError as exc:  # the device's software TPM failed: the client hears it, the agent goes on
        raise RpcError("operation-failed", f"the node's TPM failed: {exc}") from None
