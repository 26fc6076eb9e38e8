"""A real software TPM (swtpm in socket mode, driven by tpm2-tools) for the TPM verifier's
tests, and builders of the Cisco-IOS-XR-remote-attestation-act replies around what it returns.

The TPM makes every quote; the vendor CA (root -> sub-CA -> attestation certificate over the
TPM's AK) is made here with `cryptography`, as the emulated vendor's would be.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from verifier.tpm.attestation import ima_ng_template
from verifier.tpm.replies import NAMESPACE

TOOLS = ("swtpm", "swtpm_setup", "tpm2_createak", "tpm2_quote", "tpm2_checkquote", "tpm2_pcrextend")
AK_HANDLE = "0x81010002"
#: Seconds to wait for swtpm to accept a connection (it starts in ~50 ms).
START_TIMEOUT = 10.0


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Quote:
    message: bytes  # TPMS_ATTEST
    signature: bytes  # TPMT_SIGNATURE
    pcrs: dict[int, bytes]


class SoftTPM:
    """One swtpm process with an RSA AK persisted at AK_HANDLE (sha256 bank)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        state = workdir / "state"
        state.mkdir(parents=True)
        subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--overwrite"], check=True,
                       capture_output=True)
        for _ in range(5):  # a port taken between the probe and swtpm's bind: try another
            port = _free_port()  # the swtpm TCTI finds the control channel on the next port
            self.process = subprocess.Popen(
                ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
                 "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                 "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                 "--flags", "not-need-init,startup-clear"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._wait(port):
                break
            self.process.kill()
            self.process.wait()
        else:
            raise RuntimeError("swtpm did not start")
        self.ctrl_port = port + 1
        self.env = {**os.environ, "TPM2TOOLS_TCTI": f"swtpm:host=127.0.0.1,port={port}"}
        self.run("tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
        self.run("tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", "rsa", "-s", "rsassa", "-g", "sha256",
                 "-u", "ak.pem", "-f", "pem", "-n", "ak.name")
        self.run("tpm2_flushcontext", "-t")
        self.run("tpm2_evictcontrol", "-C", "o", "-c", "ak.ctx", AK_HANDLE)
        self.run("tpm2_flushcontext", "-t")
        self.ak_pem = (workdir / "ak.pem").read_bytes()

    def _wait(self, port: int) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.02)  # swtpm gives no readiness signal but its listening port
        return False

    def run(self, *args: str) -> bytes:
        done = subprocess.run(args, cwd=self.dir, env=self.env, capture_output=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def extend(self, pcr: int, digest: bytes) -> None:
        self.run("tpm2_pcrextend", f"{pcr}:sha256={digest.hex()}")

    def quote(self, nonce: bytes, pcrs: Sequence[int]) -> Quote:
        self.run("tpm2_quote", "-c", AK_HANDLE, "-l", "sha256:" + ",".join(map(str, pcrs)), "-q", nonce.hex(),
                 "-m", "q.msg", "-s", "q.sig", "-o", "q.pcrs", "-g", "sha256")
        message, signature = (self.dir / "q.msg").read_bytes(), (self.dir / "q.sig").read_bytes()
        return Quote(message, signature, _read_pcrs_file((self.dir / "q.pcrs").read_bytes(), sorted(pcrs)))

    def checkquote(self, quote: Quote, nonce: bytes, pcr_values: dict[int, bytes]) -> bool:
        """tpm2-tools' own verdict on a quote (with the PCR values a reply lists)."""
        (self.dir / "c.msg").write_bytes(quote.message)
        (self.dir / "c.sig").write_bytes(quote.signature)
        pcrs_file = _pcrs_file(pcr_values)
        (self.dir / "c.pcrs").write_bytes(pcrs_file)
        done = subprocess.run(["tpm2_checkquote", "-u", "ak.pem", "-m", "c.msg", "-s", "c.sig", "-f", "c.pcrs",
                               "-g", "sha256", "-q", nonce.hex()], cwd=self.dir, env=self.env, capture_output=True,
                              timeout=30)
        return done.returncode == 0

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _read_pcrs_file(data: bytes, indexes: Sequence[int]) -> dict[int, bytes]:
    """The values of the PCR file `tpm2_quote -o` writes (see `_pcrs_file`)."""
    values, offset = {}, 4 + 16 * 8 + 4
    for start in range(0, len(indexes), 8):
        offset += 4
        for slot, index in enumerate(indexes[start:start + 8]):
            at = offset + slot * 66
            size = int.from_bytes(data[at:at + 2], "little")
            values[index] = data[at + 2:at + 2 + size]
        offset += 8 * 66
    return values


def _pcrs_file(values: dict[int, bytes]) -> bytes:
    """The PCR file `tpm2_quote -o` writes (tpm2-tools 5: host structs, little-endian): a
    TPML_PCR_SELECTION (count, 16 entries of hash u16, sizeofSelect u8, pcrSelect[4], pad), the
    number of TPML_DIGEST chunks, each a count and 8 TPM2B_DIGESTs (u16 size, 64-byte buffer)."""
    bitmap = bytearray(4)
    for index in values:
        bitmap[index // 8] |= 1 << (index % 8)
    entry = (0x000B).to_bytes(2, "little") + bytes([3]) + bytes(bitmap) + bytes(1)
    head = (1).to_bytes(4, "little") + entry + bytes(8 * 15)
    ordered = [values[i] for i in sorted(values)]
    chunks = [ordered[i:i + 8] for i in range(0, len(ordered), 8)]
    body = len(chunks).to_bytes(4, "little")
    for chunk in chunks:
        body += len(chunk).to_bytes(4, "little")
        for digest in chunk + [b""] * (8 - len(chunk)):
            body += len(digest).to_bytes(2, "little") + digest.ljust(64, b"\0")
    return head + body


# --- the vendor CA and the model's replies -----------------------------------------------------

_BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Emulated Vendor"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(subject: str, key, issuer: str, issuer_key, ca: bool, serial: int) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key).serial_number(serial).not_valid_before(_BASE)
               .not_valid_after(_BASE + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class VendorCA:
    """Root -> sub-CA -> attestation certificates over TPM keys."""

    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    sub_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        self.root = _cert("Vendor Attestation Root", self.root_key.public_key(), "Vendor Attestation Root",
                          self.root_key, True, 1)
        self.sub = _cert("Vendor Attestation Sub-CA", self.sub_key.public_key(), "Vendor Attestation Root",
                         self.root_key, True, 2)

    def attestation_certificate(self, ak_pem: bytes, device: str) -> x509.Certificate:
        key = serialization.load_pem_public_key(ak_pem)
        return _cert(f"{device} TPM AK", key, "Vendor Attestation Sub-CA", self.sub_key, False, 3)


def _der64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _reply(body: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" '
            f'message-id="101">{body}</rpc-reply>').encode()


def certificate_reply(nodes: dict[str, Sequence[x509.Certificate]], nonce: bytes = b"") -> bytes:
    parts = []
    for location, certs in nodes.items():
        listed = "".join(f"<certificate><name>{i}</name><value>{_der64(c)}</value></certificate>"
                         for i, c in enumerate(certs))
        parts.append(f"<system-certificates><node-location>{location}</node-location><nonce>{_b64(nonce)}</nonce>"
                     f"<certificates>{listed}</certificates></system-certificates>")
    return _reply(f'<get-certificate-response xmlns="{NAMESPACE}">{"".join(parts)}</get-certificate-response>')


def quote_reply(nodes: dict[str, tuple[Quote, int]], *, byte_list: bool = True) -> bytes:
    parts = []
    for location, (quote, up_time) in nodes.items():
        pcrs = "".join(
            f"<PCR><index>{i}</index>"
            + ("".join(f"<value>{b}</value>" for b in v) if byte_list else f"<value>{_b64(v)}</value>")
            + "</PCR>" for i, v in sorted(quote.pcrs.items()))
        parts.append(f"<node-data><node-location>{location}</node-location><up-time>{up_time}</up-time>{pcrs}"
                     f"<pcr-quote>{_b64(quote.message)}</pcr-quote>"
                     f"<pcr-quote-signature>{_b64(quote.signature)}</pcr-quote-signature></node-data>")
    return _reply(f'<platform-config-registers xmlns="{NAMESPACE}">{"".join(parts)}</platform-config-registers>')


@dataclass(frozen=True)
class Event:
    number: int
    pcr: int
    digest: bytes
    data: bytes = b""
    event_type: int = 0x0D  # EV_IPL


def boot_log_reply(nodes: dict[str, tuple[Iterable[Event], int]]) -> bytes:
    parts = []
    for location, (events, up_time) in nodes.items():
        listed = "".join(
            f"<event_log><event-number>{e.number}</event-number><event-type>{e.event_type}</event-type>"
            f"<pcr-index>{e.pcr}</pcr-index><digest-list><digest-hash-algorithm>SHA256</digest-hash-algorithm>"
            f"<digest>{_b64(e.digest)}</digest></digest-list><event-size>{len(e.data)}</event-size>"
            f"<event-data>{_b64(e.data)}</event-data></event_log>" for e in events)
        parts.append(f"<node-data><node-location>{location}</node-location><up-time>{up_time}</up-time>{listed}</node-data>")
    return _reply(f'<system-boot-integrity xmlns="{NAMESPACE}">{"".join(parts)}</system-boot-integrity>')


@dataclass(frozen=True)
class ImaEntry:
    number: int
    filename: str
    file_hash: bytes  # the file's SHA-256

    def template_hash(self) -> bytes:
        return hashlib.sha256(ima_ng_template("sha256:" + self.file_hash.hex(), self.filename)).digest()


def ima_entry(number: int, filename: str, content: bytes) -> ImaEntry:
    return ImaEntry(number, filename, hashlib.sha256(content).digest())


def ima_log_reply(nodes: dict[str, tuple[Iterable[ImaEntry], int]], *, template_hashes: dict[int, bytes] | None = None) -> bytes:
    parts = []
    for location, (entries, up_time) in nodes.items():
        listed = "".join(
            f"<ima-event-log><event-number>{e.number}</event-number><ima-template>ima-ng</ima-template>"
            f"<filename-hint>{e.filename}</filename-hint><filedata-hash>{_b64(e.file_hash)}</filedata-hash>"
            f"<template-hash-algorithm>sha256</template-hash-algorithm>"
            f"<template-hash>{_b64((template_hashes or {}).get(e.number, e.template_hash()))}</template-hash>"
            f"<pcr-index>10</pcr-index></ima-event-log>" for e in entries)
        parts.append(f"<node-data><node-location>{location}</node-location><up-time>{up_time}</up-time>{listed}</node-data>")
    return _reply(f'<system-ima xmlns="{NAMESPACE}">{"".join(parts)}</system-ima>')
