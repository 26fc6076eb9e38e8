"""One NETCONF session on an SSH channel: hellos, then `<rpc>`s until `<close-session>` or EOF.

XML comes from the client, so it is parsed with entity resolution, DTD loading and network
access off, a document with a DOCTYPE is refused, and messages are bounded (framing).
"""

from __future__ import annotations

import itertools
import logging
import socket
from typing import Any, Callable

from lxml import etree

from . import attestation
from .errors import RpcError
from .framing import FramingError, MessageReader, frame

__all__ = ["BASE_1_0", "BASE_1_1", "NS_BASE", "RpcError", "serve_netconf"]

log = logging.getLogger(__name__)

NS_BASE = "urn:ietf:params:xml:ns:netconf:base:1.0"
BASE_1_0 = "urn:ietf:params:netconf:base:1.0"
BASE_1_1 = "urn:ietf:params:netconf:base:1.1"
CAPABILITIES = (BASE_1_0, BASE_1_1, attestation.CAPABILITY)
# A session with no message for this long is closed (IOS XR's netconf-yang agent idle default
# is none; an emulator thread must not wait for ever on a vanished client).
IDLE_TIMEOUT_S = 600.0
_SESSION_IDS = itertools.count(1)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                          huge_tree=False, remove_blank_text=True)


def _q(tag: str, ns: str = NS_BASE) -> str:
    return f"{{{ns}}}{tag}"


def parse(message: bytes) -> Any:
    """The message's root element; RpcError(malformed-message) for what is not plain XML."""
    try:
        tree = etree.fromstring(message, _PARSER).getroottree()
    except etree.XMLSyntaxError as exc:
        raise RpcError("malformed-message", f"expected well-formed XML, found: {exc}", error_type="rpc") from None
    if tree.docinfo.doctype:
        raise RpcError("malformed-message", "expected XML without a DOCTYPE, found one", error_type="rpc")
    return tree.getroot()


def _hello(session_id: int) -> bytes:
    hello = etree.Element(_q("hello"), nsmap={None: NS_BASE})
    caps = etree.SubElement(hello, _q("capabilities"))
    for capability in CAPABILITIES:
        etree.SubElement(caps, _q("capability")).text = capability
    etree.SubElement(hello, _q("session-id")).text = str(session_id)
    return etree.tostring(hello, xml_declaration=True, encoding="UTF-8")


def _reply(request: Any | None) -> Any:
    """An empty `<rpc-reply>` carrying the request's attributes (RFC 6241 4.2)."""
    reply = etree.Element(_q("rpc-reply"), nsmap={None: NS_BASE})
    if request is not None:
        for name, value in request.attrib.items():
            reply.set(name, value)
    return reply


def error_reply(request: Any | None, error: RpcError) -> bytes:
    reply = _reply(request)
    rpc_error = etree.SubElement(reply, _q("rpc-error"))
    etree.SubElement(rpc_error, _q("error-type")).text = error.error_type
    etree.SubElement(rpc_error, _q("error-tag")).text = error.tag
    etree.SubElement(rpc_error, _q("error-severity")).text = "error"
    text = etree.SubElement(rpc_error, _q("error-message"))
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = error.message
    if error.info:
        info = etree.SubElement(rpc_error, _q("error-info"))
        for name, value in error.info.items():
            etree.SubElement(info, _q(name)).text = value
    return etree.tostring(reply, encoding="UTF-8")


class _Session:
    def __init__(self, device: Any, username: str, send: Callable[[bytes], None],
                 receive: Callable[[int], bytes]) -> None:
        self.device = device
        self.username = username
        self.send = send
        self.reader = MessageReader(receive)
        self.session_id = next(_SESSION_IDS)

    def write(self, message: bytes) -> None:
        self.send(frame(message, self.reader.chunked))

    def run(self) -> None:
        self.write(_hello(self.session_id))
        if not self._read_hello():
            return
        while True:
            try:
                message = self.reader.read()
            except FramingError as exc:
                # The stream cannot be resynchronised: say why (in the framing the client chose) and end.
                self.write(error_reply(None, RpcError("malformed-message", str(exc), error_type="rpc")))
                return
            if message is None:
                return
            if not self._answer(message):
                return

    def _read_hello(self) -> bool:
        try:
            message = self.reader.read()
            if message is None:
                return False
            hello = parse(message)
        except (FramingError, RpcError) as exc:
            log.debug("%s: bad NETCONF hello: %s", self.device.name, exc)
            return False
        if hello.tag != _q("hello"):
            log.debug("%s: expected <hello>, found %s", self.device.name, hello.tag)
            return False
        offered = {(cap.text or "").strip() for cap in hello.iter(_q("capability"))}
        if BASE_1_0 not in offered and BASE_1_1 not in offered:
            return False  # RFC 6241 8.1: no common base version: the session ends
        self.reader.chunked = BASE_1_1 in offered
        return True

    def _answer(self, message: bytes) -> bool:
        """Answer one message; False when the session ends."""
        request = None
        try:
            request = parse(message)
            if request.tag != _q("rpc"):
                raise RpcError("malformed-message", f"expected <rpc>, found <{etree.QName(request).localname}>",
                               error_type="rpc")
            if request.get("message-id") is None:
                raise RpcError("missing-attribute", "expected a message-id attribute on <rpc>, found none",
                               error_type="rpc", info={"bad-attribute": "message-id", "bad-element": "rpc"})
            operations = [child for child in request if isinstance(child.tag, str)]
            if len(operations) != 1:
                raise RpcError("malformed-message", f"expected one operation in <rpc>, found {len(operations)}",
                               error_type="rpc")
            operation = operations[0]
            if operation.tag == _q("close-session"):
                reply = _reply(request)
                etree.SubElement(reply, _q("ok"))
                self.write(etree.tostring(reply, encoding="UTF-8"))
                return False
            reply = _reply(request)
            if operation.tag == _q("get"):
                etree.SubElement(reply, _q("data"))  # the emulator models no operational data
            else:
                reply.extend(attestation.answer(self.device, self.username, operation))
            self.write(etree.tostring(reply, encoding="UTF-8"))
        except RpcError as error:
            self.write(error_reply(request if request is not None and request.tag == _q("rpc") else None, error))
        return True


def serve_netconf(channel: Any, device: Any, username: str) -> None:
    """Serve the `netconf` subsystem on a paramiko channel until the session ends."""
    channel.settimeout(IDLE_TIMEOUT_S)

    def receive(count: int) -> bytes:
        try:
            return channel.recv(count)
        except socket.timeout:
            return b""

    try:
        _Session(device, username, channel.sendall, receive).run()
    except (OSError, EOFError) as exc:
        log.debug("%s: NETCONF session ended: %s", device.name, exc)
