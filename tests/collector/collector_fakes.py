"""A tiny real SSH server and a real envelope signer, for collector tests that must not wait
for the full emulator: paramiko on loopback, port 0, readiness by event; ECDSA P-256 chain
built per ENVELOPE.md section 4 and signed per section 3."""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paramiko
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TIMESTAMP = "Sun Oct 20 13:07:24.136 UTC\n"
NONCE_RE = re.compile(r"nonce ([0-9A-Fa-f]+)")


# --- PKI and signing ---------------------------------------------------------------------


@dataclass
class DevicePki:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate


def _name(cn: str, serial: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def make_pki(hostname: str = "xr", *, leaf_days: int = 300, root_days: int = 367,
             now: datetime | None = None) -> DevicePki:
    now = now or datetime.now(UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{hostname}-ca", "c44a11fc")
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(0x0B62)
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=root_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder().subject_name(_name(f"{hostname}-ads", "c44a11fc")).issuer_name(root_name)
        .public_key(leaf_key.public_key()).serial_number(0x0B63)
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=leaf_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, True, False, False, False, False), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    return DevicePki(root_key, root, leaf_key, leaf)


def dossier_text(nonce_hex: str, items: list[str]) -> str:
    dossier: dict[str, object] = {
        "collection-start-time": 1610168028.380901,
        "model-name": "http://cisco.com/ns/yang/Cisco-IOS-XR-ama",
        "model-revision": "2019-08-05",
        "nonce": nonce_hex,
        "license-udi": {"result-code": "Success", "license-udi": "UDI: PID:NCS-55A1-24H,SN:FOC2104R15R\n"},
        "version": {"result-code": "Success", "version": "Cisco IOS XR Software, Version 7.3.1\n"},
        "platform": {"result-code": "Success", "platform": "Node  Type  State\n"},
    }
    keyed_by_node = {"reboot-history", "system-integrity-snapshot", "filesystem-inventory"}
    for item in items:
        dossier[item] = {"result-code": "Success", item: {} if item in keyed_by_node else []}
    dossier["collection-end-time"] = 1610168029.0
    return json.dumps(dossier) + "\n"


def sign_envelope(pki: DevicePki, data: str, nonce_hex: str) -> str:
    nonce = bytes.fromhex(nonce_hex)
    root_der = pki.root.public_bytes(serialization.Encoding.DER)
    leaf_der = pki.leaf.public_bytes(serialization.Encoding.DER)
    signed = nonce + struct.pack(">I", 1) + data.encode() + root_der + leaf_der
    signature = pki.leaf_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    envelope = {"signed-envelope": {
        "signature_version": 1,
        "nonce": base64.b64encode(nonce).decode(),
        "data": data,
        "signature": base64.b64encode(signature).decode(),
        "certificates": {"certificate": [
            {"name": "system-trustpoint ca-certificate", "value": base64.b64encode(root_der).decode()},
            {"name": "system-trustpoint certificate", "value": base64.b64encode(leaf_der).decode()},
        ]},
    }}
    return json.dumps(envelope) + "\n"


def answer_dossier(pki: DevicePki, command: str) -> bytes:
    """What a device prints for the dossier command: timestamp line, then the envelope."""
    nonce_hex = NONCE_RE.findall(command)[-1]
    items = command.split(" include ", 1)[1].split(" nonce ", 1)[0].split()
    items = [i for i in items if not i.startswith(("filesystem-inventory-options", "'"))]
    return (TIMESTAMP + sign_envelope(pki, dossier_text(nonce_hex, items), nonce_hex)).encode()


# --- SSH server --------------------------------------------------------------------------


Handler = Callable[[str, paramiko.Channel], None]


@dataclass
class FakeDevice:
    """One loopback SSH server. `handler(command, channel)` answers each exec request."""

    name: str
    handler: Handler
    password: str = "secret"
    username: str = "admin"
    host_key: paramiko.PKey = field(default_factory=lambda: _ed25519())
    host: str = "127.0.0.1"
    port: int = 0
    commands: list[str] = field(default_factory=list)
    refuse_sessions: bool = False
    #: Public keys accepted for the user (key-file and agent credentials).
    authorized_keys: list[paramiko.PKey] = field(default_factory=list)
    #: Act as a jump host: accept `direct-tcpip` channels and forward them.
    forwards: list[tuple[str, int]] = field(default_factory=list)
    jump: bool = False

    def host_key_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}"


def _ed25519() -> paramiko.PKey:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    import io

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))


class _Server(paramiko.ServerInterface):
    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.command: str | None = None
        self.exec_event = threading.Event()
        self.destinations: dict[int, tuple[str, int]] = {}

    def check_auth_password(self, username: str, password: str) -> int:
        ok = username == self.device.username and password == self.device.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == self.device.username and any(
            key.asbytes() == allowed.asbytes() for allowed in self.device.authorized_keys)
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid: int, origin: tuple[str, int],
                                           destination: tuple[str, int]) -> int:
        if not self.device.jump:
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.destinations[chanid] = destination
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.command = command.decode()
        self.exec_event.set()
        return True


class FakeFleet:
    """Several FakeDevices on their own ports; `with FakeFleet(...) as fleet:` all listening."""

    def __init__(self, devices: list[FakeDevice]) -> None:
        self.devices = devices
        #: (server->client, client->server) cipher of each connection served
        self.negotiated: list[tuple[str | None, str | None]] = []
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> FakeFleet:
        for device in self.devices:
            listener = socket.socket()
            listener.bind((device.host, 0))
            listener.listen(64)
            listener.settimeout(0.2)
            device.port = listener.getsockname()[1]
            self._sockets.append(listener)
            thread = threading.Thread(target=self._accept, args=(listener, device), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        for listener in self._sockets:
            listener.close()

    def _accept(self, listener: socket.socket, device: FakeDevice) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if device.refuse_sessions:
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn, device), daemon=True).start()

    def _transport(self, conn: socket.socket, device: FakeDevice) -> paramiko.Transport:
        """The server side of one connection (a subclass may restrict its algorithms)."""
        transport = paramiko.Transport(conn)
        transport.add_server_key(device.host_key)
        return transport

    def _serve(self, conn: socket.socket, device: FakeDevice) -> None:
        transport = self._transport(conn, device)
        server = _Server(device)
        try:
            transport.start_server(server=server)
            self.negotiated.append((transport.local_cipher, transport.remote_cipher))
            channel = transport.accept(10)
            if channel is not None and channel.get_id() in server.destinations:
                destination = server.destinations[channel.get_id()]
                device.forwards.append(destination)
                _pump(channel, socket.create_connection(destination))
                return
            if channel is None or not server.exec_event.wait(10):
                return
            device.commands.append(server.command or "")
            device.handler(server.command or "", channel)
        except (paramiko.SSHException, EOFError, OSError):
            return
        finally:
            # Let the client read what was sent before the transport goes away.
            deadline = time.monotonic() + 5
            while transport.is_active() and time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(0.01)
            transport.close()

    def write_inventory(self, path: Path, *, password_dir: Path, extra: str = "") -> Path:
        lines = ["devices:"]
        password_dir.mkdir(parents=True, exist_ok=True)
        for device in self.devices:
            secret = password_dir / f"{device.name}.password"
            secret.write_text(device.password + "\n")
            secret.chmod(0o600)
            lines += [
                f"  - name: {device.name}",
                f"    host: {device.host}",
                f"    port: {device.port}",
                f"    username: {device.username}",
                f"    credential: {{password_file: {secret}}}",
                f'    host_key: "{device.host_key_line()}"',
                "    platform: iosxr",
            ]
        path.write_text("\n".join(lines) + "\n" + extra)
        return path


def _pump(channel: paramiko.Channel, sock: socket.socket) -> None:
    """Copy bytes both ways between a forwarded channel and a socket until either closes."""

    def copy(read: Callable[[int], bytes], write: Callable[[bytes], None], done: Callable[[], None]) -> None:
        try:
            while data := read(65536):
                write(data)
        except OSError:
            pass
        finally:
            done()

    back = threading.Thread(target=copy, args=(sock.recv, channel.sendall, channel.close), daemon=True)
    back.start()
    copy(channel.recv, sock.sendall, lambda: sock.shutdown(socket.SHUT_WR))
    back.join(10)
    sock.close()


def reply(output: bytes, status: int = 0) -> Handler:
    """A handler that prints `output` and exits with `status`."""

    def handle(command: str, channel: paramiko.Channel) -> None:
        channel.sendall(output)
        channel.send_exit_status(status)
        channel.shutdown_write()
        channel.close()

    return handle


def dossier_handler(pki: DevicePki) -> Handler:
    def handle(command: str, channel: paramiko.Channel) -> None:
        reply(answer_dossier(pki, command))(command, channel)

    return handle


def stale_nonce_handler(pki: DevicePki, stale_hex: str = "1580") -> Handler:
    """Answers with an old nonce, validly signed: a replay."""

    def handle(command: str, channel: paramiko.Channel) -> None:
        items = command.split(" include ", 1)[1].split(" nonce ", 1)[0].split()
        output = TIMESTAMP + sign_envelope(pki, dossier_text(stale_hex, items), stale_hex)
        reply(output.encode())(command, channel)

    return handle


def data_changed_handler(pki: DevicePki) -> Handler:
    """Signs, then alters the data (a tampered answer)."""

    def handle(command: str, channel: paramiko.Channel) -> None:
        output = answer_dossier(pki, command).replace(b"Version 7.3.1", b"Version 6.6.6")
        reply(output)(command, channel)

    return handle


def filesystem_handler(pki: DevicePki, newest_block: list[int]) -> Handler:
    """A device with file-system snapshots 0..newest_block[0]; honours block_start."""

    def handle(command: str, channel: paramiko.Channel) -> None:
        nonce_hex = NONCE_RE.findall(command)[-1]
        start = 0
        match = re.search(r"filesystem-inventory-options '([^']*)'", command)
        if match:
            start = json.loads(match.group(1))["0/RP0/CPU0"]["block_start"]
        snapshots = [{"snapshot-block-no": n, "snap-time": 1610168028 + n, "snapshot-type":
                      "full" if n == 0 else "incremental", "files": []}
                     for n in range(start, newest_block[0] + 1)]
        dossier = json.loads(dossier_text(nonce_hex, ["filesystem-inventory"]))
        dossier["filesystem-inventory"]["filesystem-inventory"] = {"0/RP0/CPU0": {"snapshots": snapshots}}
        output = TIMESTAMP + sign_envelope(pki, json.dumps(dossier) + "\n", nonce_hex)
        reply(output.encode())(command, channel)

    return handle
