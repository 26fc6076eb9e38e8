"""Clients for the emulator's NETCONF agent as operators run them (ncclient, scrapli, paramiko)
and tpm2-tools' tpm2_checkquote."""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree
from ncclient import manager

from emulator.netconf.attestation import NS

VIEWER = "viewer"
VIEWER_PASSWORD = "viewer-pass-1"
BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
REQUIRE_TPM_TOOLS_ENV = "DOSSIER_REQUIRE_TPM_TOOLS"  # CI: tpm2_checkquote must run, not skip


def connect(entry: Any, *, port: int | None = None, username: str | None = None,
            password: str | None = None) -> Any:
    """An ncclient session (base:1.1, chunked framing) to `entry`'s NETCONF port."""
    return manager.connect(host=entry.host, port=port or entry.netconf_port, username=username or entry.username,
                           password=password or entry.password, hostkey_verify=False, look_for_keys=False,
                           allow_agent=False, timeout=30)


def rpc(name: str, **leaves: Any) -> Any:
    """`<name xmlns=NS>` with a child per keyword (underscores as hyphens; a list repeats it)."""
    element = etree.Element(f"{{{NS}}}{name}", nsmap={None: NS})
    for key, value in leaves.items():
        for item in value if isinstance(value, list) else [value]:
            etree.SubElement(element, f"{{{NS}}}{key.replace('_', '-')}").text = str(item)
    return element


def call(session: Any, name: str, **leaves: Any) -> Any:
    """The reply's output element (the rpc-reply's first child)."""
    reply = session.dispatch(rpc(name, **leaves))
    return etree.fromstring(reply.xml.encode())[0]


def b64(element: Any, path: str) -> bytes:
    return base64.b64decode(element.findtext(path, namespaces={"a": NS}))


def find(element: Any, path: str) -> list[Any]:
    return element.findall(path, namespaces={"a": NS})


def pcr_values(node_data: Any) -> dict[int, bytes]:
    return {int(pcr.findtext("a:index", namespaces={"a": NS})): bytes(int(v.text) for v in find(pcr, "a:value"))
            for pcr in find(node_data, "a:PCR")}


# tpm2-tools' "serialized" PCR file: its C structures in little-endian memory layout
# (TPML_PCR_SELECTION with 16 bank slots of 8 bytes, a uint32 count of TPML_DIGESTs, each of
# 8 TPM2B_DIGEST slots of 2 + 64 bytes). tpm2_checkquote 5.4 mis-reads a plain values file of
# 8 PCRs or more, so the tests give it this one (what `tpm2_quote -o` writes by default).
PCR_BANK_SLOTS = 16
DIGESTS_PER_LIST = 8
DIGEST_SLOT_BYTES = 64


def serialized_pcrs(pcrs: dict[int, bytes]) -> bytes:
    indexes = sorted(pcrs)
    bitmap = bytearray(4)
    for index in indexes:
        bitmap[index // 8] |= 1 << (index % 8)
    selection = struct.pack("<IHB", 1, 0x000B, 3) + bytes(bitmap) + b"\0" + bytes(8 * (PCR_BANK_SLOTS - 1))
    lists = [indexes[start:start + DIGESTS_PER_LIST] for start in range(0, len(indexes), DIGESTS_PER_LIST)]
    out = selection + struct.pack("<I", len(lists))
    for chunk in lists:
        out += struct.pack("<I", len(chunk))
        for index in chunk:
            out += struct.pack("<H", len(pcrs[index])) + pcrs[index].ljust(DIGEST_SLOT_BYTES, b"\0")
        out += bytes((2 + DIGEST_SLOT_BYTES) * (DIGESTS_PER_LIST - len(chunk)))
    return out


def require_tpm_tools(*tools: str) -> None:
    """Skip (fail in CI: DOSSIER_REQUIRE_TPM_TOOLS) when a tool is not installed."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        if os.environ.get(REQUIRE_TPM_TOOLS_ENV):
            pytest.fail(f"{', '.join(missing)} missing and {REQUIRE_TPM_TOOLS_ENV} is set")
        pytest.skip(f"{', '.join(missing)} not installed (Debian: swtpm, swtpm-tools, tpm2-tools)")


def tpm2_checkquote(folder: Path, ak_certificate: Any, node_data: Any, nonce: bytes) -> subprocess.CompletedProcess:
    """tpm2_checkquote on one node-data of an attest reply: AK public key as PEM, -m the quote,
    -s its signature, -f the returned PCR values, -q the nonce sent."""
    require_tpm_tools("tpm2_checkquote")
    files = {"ak.pem": ak_certificate.public_key().public_bytes(
                 serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
             "quote.msg": b64(node_data, "a:pcr-quote"), "quote.sig": b64(node_data, "a:pcr-quote-signature"),
             "quote.pcrs": serialized_pcrs(pcr_values(node_data))}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return subprocess.run(
        ["tpm2_checkquote", "-u", str(folder / "ak.pem"), "-m", str(folder / "quote.msg"),
         "-s", str(folder / "quote.sig"), "-f", str(folder / "quote.pcrs"), "-g", "sha256", "-q", nonce.hex()],
        capture_output=True, text=True, timeout=30, check=False)


class RawSession:
    """The `netconf` subsystem over paramiko, for what no NETCONF client sends on purpose
    (bad XML, a missing message-id, an oversized message)."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.channel.sendall(data)

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            data = self.channel.recv(65536)
            if not data:
                raise EOFError(f"closed before {marker!r}; read {self.buffer[-200:]!r}")
            self.buffer += data
        message, _, self.buffer = self.buffer.partition(marker)
        return message

    def hello(self, *capabilities: str) -> bytes:
        server_hello = self.read_until(b"]]>]]>")
        caps = "".join(f"<capability>{cap}</capability>" for cap in capabilities)
        self.send(f'<hello xmlns="{BASE_NS}"><capabilities>{caps}</capabilities></hello>]]>]]>'.encode())
        return server_hello


@contextmanager
def raw_session(entry: Any, port: int | None = None) -> Iterator[RawSession]:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(entry.host, port=port or entry.netconf_port, username=entry.username, password=entry.password,
                   look_for_keys=False, allow_agent=False, timeout=30)
    try:
        channel = client.get_transport().open_session(timeout=30)
        channel.settimeout(30)
        channel.invoke_subsystem("netconf")
        yield RawSession(channel)
    finally:
        client.close()
