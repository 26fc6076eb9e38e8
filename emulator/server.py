"""The SSH side of the emulator: paramiko servers for many devices, one accept thread.

One thread watches every listening socket (a fleet of 1,000 devices does not need 1,000
accept threads); each accepted connection gets a thread that runs the SSH handshake and then
serves its channels: an `exec` request runs one command (how collectors work), a `shell`
request with a PTY gets the interactive CLI, the `sftp` subsystem or an `scp -f` exec
reads files from harddisk: (emulator.filetransfer), and the `netconf` subsystem runs a NETCONF
session (emulator.netconf). A device's separate NETCONF port serves only that subsystem.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paramiko

from .commands import Session, session_loop
from . import filetransfer
from .device import Device
from .faults import Fault
from .netconf.agent import serve_netconf
from .terminal import ChannelTerminal, SessionClosed

__all__ = ["NETCONF_SUBSYSTEM", "DeviceServer", "Listener"]

NETCONF_SUBSYSTEM = "netconf"

log = logging.getLogger(__name__)

# Time a client has to finish the SSH handshake and authenticate: a stalled client must not
# hold a thread for ever.
HANDSHAKE_TIMEOUT_S = 30.0
AUTH_TIMEOUT_S = 30.0
# How long to wait, after authentication, for the client to open a channel and ask for exec/shell.
CHANNEL_REQUEST_TIMEOUT_S = 30.0
# A request the client wants no answer to runs after this long (one it wants answered runs as
# soon as the answer is sent: `_ServerInterface._accepted`).
UNANSWERED_REQUEST_S = 0.5
# Chunk size for output writes; SLOW_OUTPUT spreads its delay over this many chunks.
SLOW_OUTPUT_CHUNKS = 10
# FLOOD_STDERR: one SSH data packet's payload (paramiko's largest packet is 32 KiB), and how long
# a flood lasts when the client never closes (a test server's loop is bounded in time).
FLOOD_CHUNK_BYTES = 32_000
FLOOD_DEFAULT_S = 10.0


class _ServerInterface(paramiko.ServerInterface):
    def __init__(self, device: Device, netconf_only: bool = False) -> None:
        self.device = device
        self.netconf_only = netconf_only
        self.username: str | None = None
        self.requests: dict[int, tuple[str, Any]] = {}
        # Requests accepted whose answer is not sent yet (see `_accepted`), and when.
        self.answering: dict[int, tuple[tuple[str, Any], float]] = {}
        self.pty: dict[int, tuple[int, int]] = {}
        self.event = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        if self.device.check_password(username, password):
            self.username = username
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if self.device.check_publickey(username, key):
            self.username = username
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, channel, term, width, height, pixelwidth, pixelheight, modes) -> bool:  # type: ignore[no-untyped-def]
        self.pty[channel.get_id()] = (width, height)
        return True

    def check_channel_window_change_request(self, channel, width, height, pixelwidth, pixelheight) -> bool:  # type: ignore[no-untyped-def]
        self.pty[channel.get_id()] = (width, height)
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        if self.netconf_only:
            return False
        self._accepted(channel, ("shell", None))
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        if self.netconf_only:
            return False
        self._accepted(channel, ("exec", command.decode("utf-8", errors="replace")))
        return True

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        allowed = (NETCONF_SUBSYSTEM,) if self.netconf_only else (NETCONF_SUBSYSTEM, filetransfer.SFTP_SUBSYSTEM)
        if name not in allowed:
            return False
        self._accepted(channel, ("subsystem", name))
        return True

    def _accepted(self, channel: paramiko.Channel, request: tuple[str, Any]) -> None:
        """paramiko answers a request after this returns, from its transport thread, while the
        command runs in the connection's own thread: handed over at once, a short command
        could print, exit and close the channel before the answer went out, and the client's
        exec failed with "Channel closed." (seen under load). A device answers first, so the
        request waits here until the answer is sent (`answer_sent`)."""
        self.answering[channel.get_id()] = (request, time.monotonic())

    def answer_sent(self) -> None:
        """The transport thread sent a message: the requests it accepted before were answered
        (it answers each right after accepting it)."""
        if self.answering:
            self._hand_over(list(self.answering))

    def take_late_answers(self, older_than_s: float) -> None:
        """Requests accepted longer ago than this: a client that asked for no answer gets none,
        so they are handed over after a while (in the connection's thread)."""
        now = time.monotonic()
        self._hand_over([key for key, (_, when) in list(self.answering.items()) if now - when > older_than_s])

    def _hand_over(self, channel_ids: list[int]) -> None:
        for channel_id in channel_ids:
            entry = self.answering.pop(channel_id, None)
            if entry is not None:
                self.requests[channel_id] = entry[0]
        if channel_ids:
            self.event.set()

    def check_channel_env_request(self, channel, name, value) -> bool:  # type: ignore[no-untyped-def]
        return True


def _hand_over_after_answers(transport: paramiko.Transport, interface: _ServerInterface) -> None:
    """Have `interface.answer_sent` called after each message the transport thread sends
    (paramiko has no hook for "request answered"; it answers through `_send_user_message`).
    With a paramiko that lacks it, requests are handed over after UNANSWERED_REQUEST_S."""
    send = getattr(transport, "_send_user_message", None)
    if send is None:
        return

    def send_then_hand_over(message: paramiko.Message) -> None:
        send(message)
        if threading.current_thread() is transport:  # its answers; not the command's output
            interface.answer_sent()

    transport._send_user_message = send_then_hand_over  # type: ignore[method-assign]


class DeviceServer:
    """Serves SSH connections for one device (`netconf_only`: its separate NETCONF port)."""

    def __init__(self, device: Device, netconf_only: bool = False) -> None:
        self.device = device
        self.netconf_only = netconf_only

    def handle(self, sock: socket.socket) -> None:
        """Run one connection to completion (called in its own thread)."""
        device = self.device
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see PERFORMANCE.md: Nagle
        if self.netconf_only and not device.netconf_agent_ssh():
            sock.close()  # `netconf-yang agent ssh` is not configured: the port is closed to clients
            return
        if not device.admit_session():
            # Over `ssh server rate-limit` (or the RATE_LIMIT fault): refuse before any SSH.
            sock.close()
            return
        transport = paramiko.Transport(sock)
        transport.banner_timeout = HANDSHAKE_TIMEOUT_S
        transport.handshake_timeout = HANDSHAKE_TIMEOUT_S
        transport.auth_timeout = AUTH_TIMEOUT_S
        transport.add_server_key(device.host_key)
        interface = _ServerInterface(device, self.netconf_only)
        _hand_over_after_answers(transport, interface)
        try:
            transport.start_server(server=interface)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.debug("%s: handshake failed: %s", device.name, exc)
            transport.close()
            return
        try:
            self._serve_channels(transport, interface)
        finally:
            transport.close()

    def _serve_channels(self, transport: paramiko.Transport, interface: _ServerInterface) -> None:
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S + AUTH_TIMEOUT_S
        while transport.is_active():
            channel = transport.accept(timeout=1.0)
            if channel is None:
                if interface.username is None and time.monotonic() > deadline:
                    return
                continue
            request = self._wait_request(channel, interface)
            if request is None:
                channel.close()
                continue
            kind, command = request
            assert interface.username is not None
            try:
                if kind == "subsystem" and command == NETCONF_SUBSYSTEM:
                    serve_netconf(channel, self.device, interface.username)
                elif kind == "subsystem":
                    filetransfer.serve_sftp(channel, interface, self.device, interface.username,
                                            self.device.line_timeouts()[0])
                elif kind == "exec" and filetransfer.is_scp(command):
                    status = filetransfer.run_scp(channel, self.device, interface.username, command)
                    channel.send_exit_status(status)
                    channel.shutdown_write()
                elif kind == "exec":
                    self._run_exec(transport, channel, interface.username, command)
                else:
                    self._run_shell(channel, interface.username, interface.pty.get(channel.get_id()))
            except SessionClosed:
                pass
            finally:
                try:
                    channel.close()
                except (OSError, EOFError):
                    pass
            if kind == "exec" and not transport.is_active():
                return

    @staticmethod
    def _wait_request(channel: paramiko.Channel, interface: _ServerInterface) -> tuple[str, Any] | None:
        deadline = time.monotonic() + CHANNEL_REQUEST_TIMEOUT_S
        while time.monotonic() < deadline:
            request = interface.requests.pop(channel.get_id(), None)
            if request is not None:
                return request
            interface.event.wait(UNANSWERED_REQUEST_S)
            interface.event.clear()
            interface.take_late_answers(UNANSWERED_REQUEST_S)
            if channel.closed:
                return None
        return None

    def _output_hook(self, transport: paramiko.Transport, channel: paramiko.Channel) -> Any:
        """A writer that applies the output faults (slow, dropped mid-output) to channel writes."""
        faults = self.device.faults
        if Fault.SLOW_OUTPUT in faults:
            delay = float(faults.params(Fault.SLOW_OUTPUT).get("delay", 2.0))

            def slow(data: bytes) -> None:
                step = max(1, len(data) // SLOW_OUTPUT_CHUNKS)
                for start in range(0, len(data), step):
                    channel.sendall(data[start : start + step])
                    time.sleep(delay / SLOW_OUTPUT_CHUNKS)

            return slow
        if Fault.DROP_MID_OUTPUT in faults:

            def drop(data: bytes) -> None:
                if len(data) < 64:  # the timestamp line and prompts go through
                    channel.sendall(data)
                    return
                channel.sendall(data[: len(data) // 2])
                transport.close()
                raise SessionClosed("connection dropped mid-output (fault)")

            return drop
        return None

    def _run_exec(self, transport: paramiko.Transport, channel: paramiko.Channel, username: str, command: str) -> None:
        if Fault.FLOOD_STDERR in self.device.faults:
            _flood(transport, channel, self.device.faults.params(Fault.FLOOD_STDERR))
            return
        term = ChannelTerminal(channel, pty=False, idle_timeout=lambda: None)
        term.write_hook = self._output_hook(transport, channel)
        session = Session(self.device, username, term)
        session.execute(command)
        if session.candidate is not None:
            session.leave_config()
        channel.send_exit_status(0)
        channel.shutdown_write()

    def _run_shell(self, channel: paramiko.Channel, username: str, size: tuple[int, int] | None) -> None:
        device = self.device
        exec_timeout, session_timeout = device.line_timeouts()
        started = time.monotonic()

        def idle() -> float | None:
            limits = [t for t in (exec_timeout,) if t]
            if session_timeout:
                limits.append(max(0.01, session_timeout - (time.monotonic() - started)))
            return min(limits) if limits else None

        term = ChannelTerminal(channel, pty=size is not None, idle_timeout=idle)
        term.write_hook = self._output_hook(channel.get_transport(), channel)
        session = Session(device, username, term)
        term.help_hook = session.help
        if size:
            session.width = size[0]
        term.write("\n")
        try:
            session_loop(session)
        except SessionClosed:
            pass
        finally:
            if session.uncommitted():
                session.leave_config()  # an abandoned configuration session is discarded
        try:
            channel.send_exit_status(0)
        except (OSError, EOFError):
            pass


def _flood(transport: paramiko.Transport, channel: paramiko.Channel, params: dict[str, Any]) -> None:
    """FLOOD_STDERR: extended data (and stdout) sent with no regard to the client's window.

    paramiko's `send_stderr` waits for window space, as a device that plays fair would; a hostile
    one writes the packets itself, so these are built here and queued on the transport directly.
    """
    streams: list[int | None] = [1]  # SSH_EXTENDED_DATA_STDERR
    if params.get("stdout"):
        streams.append(None)
    payload = b"E" * FLOOD_CHUNK_BYTES
    deadline = time.monotonic() + float(params.get("seconds", FLOOD_DEFAULT_S))
    try:
        while not channel.closed and transport.is_active() and time.monotonic() < deadline:
            for stream in streams:
                message = paramiko.Message()
                if stream is None:
                    message.add_byte(paramiko.common.cMSG_CHANNEL_DATA)
                    message.add_int(channel.remote_chanid)
                else:
                    message.add_byte(paramiko.common.cMSG_CHANNEL_EXTENDED_DATA)
                    message.add_int(channel.remote_chanid)
                    message.add_int(stream)
                message.add_string(payload)
                transport._send_user_message(message)
    except (OSError, EOFError, paramiko.SSHException) as exc:  # the client hung up: the flood is over
        log.debug("flood ended by the client: %s", exc)


@dataclass
class _Bound:
    sock: socket.socket
    server: DeviceServer
    port: int


@dataclass
class Listener:
    """Accepts connections on every device's listening socket from one thread."""

    host: str = "127.0.0.1"
    backlog: int = 64
    bound: dict[str, _Bound] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._connections: set[threading.Thread] = set()

    def add(self, device: Device, port: int = 0, *, netconf_only: bool = False) -> int:
        """Listen for `device` on `port` (0: any free port); returns the port. `netconf_only`:
        the device's separate NETCONF port."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.listen(self.backlog)
        sock.setblocking(False)
        bound = _Bound(sock, DeviceServer(device, netconf_only), sock.getsockname()[1])
        self.bound[f"{device.name}#netconf" if netconf_only else device.name] = bound
        self._selector.register(sock, selectors.EVENT_READ, bound)
        return bound.port

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="emulator-accept", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=1.0):
                bound = key.data
                if bound is None:
                    self._wake_r.recv(64)
                    continue
                try:
                    conn, _ = bound.sock.accept()
                except (BlockingIOError, OSError):
                    continue
                conn.setblocking(True)
                thread = threading.Thread(
                    target=self._handle, args=(bound.server, conn), name=f"ssh-{bound.server.device.name}", daemon=True
                )
                self._connections.add(thread)
                thread.start()

    def _handle(self, server: DeviceServer, conn: socket.socket) -> None:
        try:
            server.handle(conn)
        except Exception:  # noqa: BLE001 - one broken connection must not take the fleet down
            log.exception("%s: connection failed", server.device.name)
        finally:
            self._connections.discard(threading.current_thread())

    def stop(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        for bound in self.bound.values():
            try:
                self._selector.unregister(bound.sock)
            except (KeyError, ValueError):
                pass
            bound.sock.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
