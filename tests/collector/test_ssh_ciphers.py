"""collector.ssh: AES-GCM offered first (`PREFERRED_CIPHERS`, `prefer_ciphers`), against the real
emulator, a loopback server that records the client's KEXINIT off the wire, and a loopback
paramiko server that offers no GCM at all."""

from __future__ import annotations

import dataclasses
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from collector.errors import CollectorError
from collector.inventory import Device, load_inventory
from collector.ssh import PREFERRED_CIPHERS, DeviceSession, prefer_ciphers, run_command
from collector_fakes import FakeDevice, FakeFleet, reply
from emulator.fleet import Fleet

GCM = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
NO_GCM = ("aes256-ctr", "aes128-ctr")
MSG_KEXINIT = 20


def paramiko_default_ciphers() -> tuple[str, ...]:
    """What a fresh paramiko client transport offers, in its order (nothing connected)."""
    left, right = socket.socketpair()
    try:
        return tuple(paramiko.Transport(left).get_security_options().ciphers)
    finally:
        left.close()
        right.close()


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    tmp = tmp_path_factory.mktemp("ciphers")
    with Fleet(state_dir=tmp / "fleet", devices=1, provisioned=True, files=20, seed=5) as fleet:
        fleet.write_inventory(tmp / "inventory.yaml")
        yield load_inventory(tmp / "inventory.yaml").devices[0]


def test_a_session_to_the_emulator_negotiates_aes128_gcm(emulated: Device) -> None:
    with DeviceSession(emulated) as session:
        transport = session._transport
        assert transport is not None
        assert (transport.local_cipher, transport.remote_cipher) == ("aes128-gcm@openssh.com",) * 2
        output, status = session.exec("show version")
    assert status == 0 and b"Cisco IOS XR" in output
    # The polling path (run_command) goes through the same handshake and works over GCM.
    assert b"Cisco IOS XR" in run_command(emulated, "show version").output


def test_prefer_ciphers_puts_gcm_first_and_keeps_paramikos_others_in_order() -> None:
    default = paramiko_default_ciphers()
    assert set(GCM) <= set(default), "this paramiko has AES-GCM"
    assert PREFERRED_CIPHERS == GCM
    left, right = socket.socketpair()
    try:
        transport = paramiko.Transport(left)
        prefer_ciphers(transport)
        offered = tuple(transport.get_security_options().ciphers)
        assert offered == GCM + tuple(c for c in default if c not in GCM)
        prefer_ciphers(transport)  # idempotent
        assert tuple(transport.get_security_options().ciphers) == offered
        # A transport restricted to ciphers without GCM keeps exactly those (no GCM is invented).
        transport.get_security_options().ciphers = NO_GCM
        prefer_ciphers(transport)
        assert tuple(transport.get_security_options().ciphers) == NO_GCM
    finally:
        left.close()
        right.close()


# --- what the client really offers: its KEXINIT, read off the wire ------------------------------

def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


def _name_lists(payload: bytes, count: int) -> list[list[str]]:
    assert payload[0] == MSG_KEXINIT
    offset, lists = 1 + 16, []  # message number, cookie
    for _ in range(count):
        (length,) = struct.unpack(">I", payload[offset:offset + 4])
        offset += 4
        lists.append(payload[offset:offset + length].decode().split(","))
        offset += length
    return lists


class KexinitRecorder:
    """A TCP server that speaks SSH just far enough to read the client's KEXINIT, then hangs up."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lists: list[list[str]] | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            conn.sendall(b"SSH-2.0-OpenSSH_9.6 kexinit-recorder\r\n")
            banner = b""
            while not banner.endswith(b"\n"):
                banner += _read_exactly(conn, 1)
            assert banner.startswith(b"SSH-2.0-"), banner
            (packet_length,) = struct.unpack(">I", _read_exactly(conn, 4))
            packet = _read_exactly(conn, packet_length)
            padding = packet[0]
            # kex, host key, ciphers c->s, ciphers s->c, macs c->s, macs s->c
            self.lists = _name_lists(packet[1:len(packet) - padding], 6)

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


def test_the_client_offers_gcm_first_then_paramikos_ciphers_on_the_wire(emulated: Device) -> None:
    recorder = KexinitRecorder()
    try:
        device = dataclasses.replace(emulated, port=recorder.port)
        with pytest.raises(CollectorError):  # the recorder hangs up after the KEXINIT
            with DeviceSession(device):
                pass
    finally:
        recorder.close()
    assert recorder.lists is not None
    _, _, to_server, to_client, macs, _ = recorder.lists
    default = paramiko_default_ciphers()
    assert to_server == to_client == [*GCM, *(c for c in default if c not in GCM)]
    # The fallback is there: every cipher paramiko offers by default is still offered.
    assert set(default) <= set(to_server) and "aes128-ctr" in to_server[2:]
    assert macs, "MACs are still offered for the non-AEAD ciphers"


# --- a server that offers no GCM ----------------------------------------------------------------

class NoGcmFleet(FakeFleet):
    """FakeFleet whose servers offer only AES-CTR (no GCM): like an old device or a locked-down
    `ssh server algorithms cipher` list (FakeFleet records what each connection negotiated)."""

    def _transport(self, conn: socket.socket, device: FakeDevice) -> paramiko.Transport:
        transport = super()._transport(conn, device)
        transport.get_security_options().ciphers = NO_GCM
        return transport


def test_a_server_without_gcm_still_works(tmp_path: Path) -> None:
    fake = FakeDevice("xr-0001", reply(b"no gcm here\n"))
    with NoGcmFleet([fake]) as fleet:
        device = load_inventory(fleet.write_inventory(tmp_path / "inv.yaml", password_dir=tmp_path / "pw")).devices[0]
        with DeviceSession(device) as session:
            assert session._transport is not None
            assert (session._transport.local_cipher, session._transport.remote_cipher) == ("aes128-ctr",) * 2
            assert session.exec("show x") == (b"no gcm here\n", 0)
        result = run_command(device, "show y")
    assert result.output == b"no gcm here\n" and result.exit_status == 0
    assert fake.commands == ["show x", "show y"]
    # The client's order decides among what both have (RFC 4253 7.1): after the GCM ones it
    # does not get, paramiko's first choice, aes128-ctr, though the server lists aes256-ctr first.
    assert all(pair == ("aes128-ctr", "aes128-ctr") for pair in fleet.negotiated), fleet.negotiated
