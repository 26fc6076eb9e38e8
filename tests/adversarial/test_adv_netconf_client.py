"""The collector's NETCONF session against a hostile server: what the server sends before the
hellos are done (an endless `<hello>`) is bounded like every reply after them, so a device
cannot grow the collector's memory for the whole handshake deadline."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

import collector.netconf as netconf
from collector.errors import OutputTooLargeError
from collector.inventory import load_inventory
from collector_fakes import FakeDevice, FakeFleet, _Server

MiB = 1024 * 1024
#: The session bound the test sets (the real one is 64 MiB: too slow to send in a test).
TEST_SESSION_BYTES = 1 * MiB
#: What the server offers before it gives up: far over the bound, far under the real one.
FLOOD_BYTES = 48 * MiB


class _NetconfServer(_Server):
    def __init__(self, device: FakeDevice) -> None:
        super().__init__(device)
        self.subsystem = threading.Event()

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        self.subsystem.set()
        return name == "netconf"


class EndlessHelloFleet(FakeFleet):
    """A NETCONF server whose `<hello>` never ends: it sends as long as the client reads."""

    def __init__(self, devices: list[FakeDevice]) -> None:
        super().__init__(devices)
        self.sent = 0

    def _serve(self, conn: socket.socket, device: FakeDevice) -> None:
        transport = self._transport(conn, device)
        server = _NetconfServer(device)
        try:
            transport.start_server(server=server)
            channel = transport.accept(10)
            if channel is None or not server.subsystem.wait(10):
                return
            channel.settimeout(10)
            channel.sendall(b'<?xml version="1.0"?><hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                            b"<capabilities><capability>")
            chunk = b"x" * 32768
            while self.sent < FLOOD_BYTES and not self._stop.is_set():
                channel.sendall(chunk)
                self.sent += len(chunk)
        except (paramiko.SSHException, EOFError, OSError, TimeoutError):
            return
        finally:
            transport.close()


@pytest.fixture
def endless_hello(tmp_path: Path) -> Iterator[tuple[EndlessHelloFleet, Path]]:
    fleet = EndlessHelloFleet([FakeDevice("xr-nc", lambda command, channel: None)])
    with fleet:
        inventory = fleet.write_inventory(tmp_path / "inventory.yaml", password_dir=tmp_path / "secrets",
                                          extra="defaults:\n  timeouts: {connect: 5, auth: 20, device: 30}\n")
        yield fleet, inventory


def test_an_endless_hello_is_bounded_like_a_reply(endless_hello: tuple[EndlessHelloFleet, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, inventory = endless_hello
    monkeypatch.setattr(netconf, "MAX_SESSION_BYTES", TEST_SESSION_BYTES)
    device = load_inventory(inventory).devices[0].with_credentials_loaded()
    with pytest.raises(OutputTooLargeError, match="more than"):
        with netconf.NetconfSession(device):
            pass
    # What the client took in before it closed the session: the bound, plus what was in
    # flight (SSH windows of 2 MiB each way, packet overhead).
    assert fleet.sent < TEST_SESSION_BYTES + 4 * MiB, fleet.sent
