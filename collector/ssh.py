"""Run one command on one device over an SSH exec channel, with strict host keys and deadlines.

We drive `paramiko.Transport` directly rather than `SSHClient` so that each phase has its own
deadline (connect, authentication, command, whole device) and the host-key check is ours:
an unknown or changed key is refused with the host, the offered key's fingerprint and the
line to pin, never auto-accepted.
"""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import paramiko
from paramiko.buffered_pipe import BufferedPipe

from verifier.policy import MAX_ENVELOPE_BYTES

from .errors import (
    AuthError,
    CollectorError,
    ConnectError,
    ConnectionLostError,
    DeadlineError,
    HostKeyError,
    OutputTooLargeError,
    RateLimitedError,
)
from .inventory import Credential, Device, HostKey, JumpHost, ssh_fingerprint

__all__ = ["MAX_OUTPUT_BYTES", "PREFERRED_CIPHERS", "CommandResult", "DeviceSession", "offered_host_key",
           "prefer_ciphers", "run_command"]

#: Bytes one command may send, stdout and stderr together: what the verifier accepts, since
#: more cannot verify and would only hold memory. It is the XR envelope's bound; IOS XE outputs
#: are checked against a smaller one (verifier/profiles/_common.py, 16 MiB), and this module
#: does not know the platform, so the larger of the two serves both (a test checks the order).
#: An XE device between the two still fails, as `input.too_large` from the verifier.
MAX_OUTPUT_BYTES = MAX_ENVELOPE_BYTES
#: One recv per SSH window-sized chunk; chunks are joined once at the end (no quadratic copying).
RECV_CHUNK_BYTES = 256 * 1024
#: After EOF a well-behaved server has sent exit-status; wait this long for it before deciding
#: the session was cut.
EXIT_STATUS_GRACE_S = 2.0
#: Ciphers offered first, before paramiko's own order (which starts with aes128-ctr +
#: hmac-sha2-256, encrypt-and-MAC): AES-GCM is an AEAD, so no separate MAC per packet. IOS XR
#: (`ssh server algorithms cipher`) and OpenSSH offer both; a device that offers neither
#: still gets paramiko's usual list after these. It also costs less CPU per poll on both
#: sides (BENCHMARKS.md).
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@dataclass(frozen=True)
class CommandResult:
    """What the device printed, byte for byte, and when."""

    output: bytes
    started: datetime
    received: datetime
    duration_s: float
    exit_status: int | None


class _Deadlines:
    def __init__(self, device: Device, run_deadline: float | None) -> None:
        self.start = time.monotonic()
        self.device_deadline = self.start + device.timeouts.device
        if run_deadline is not None:
            self.device_deadline = min(self.device_deadline, run_deadline)
        self.timeouts = device.timeouts
        self.name = device.name

    def budget(self, phase_seconds: float, phase: str) -> float:
        remaining = self.device_deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineError(
                f"{self.name}: whole-device deadline of {self.timeouts.device:g} s passed before "
                f"{phase}; raise timeouts.device in the inventory if the device is just slow"
            )
        return min(phase_seconds, remaining)


def _open_socket(host: str, port: int, timeout: float, name: str) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError as exc:
        raise DeadlineError(f"{name}: TCP connect to {host}:{port} timed out after {timeout:g} s") from exc
    except ConnectionRefusedError as exc:
        raise ConnectError(f"{name}: connection to {host}:{port} refused; is SSH running there?") from exc
    except OSError as exc:
        raise ConnectError(f"{name}: cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    # paramiko leaves Nagle on, which stalls each handshake on delayed ACKs (PERFORMANCE.md).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def prefer_ciphers(transport: paramiko.Transport) -> None:
    """Offer `PREFERRED_CIPHERS` first (those this paramiko has), then paramiko's own order."""
    options = transport.get_security_options()
    first = tuple(c for c in PREFERRED_CIPHERS if c in options.ciphers)
    options.ciphers = first + tuple(c for c in options.ciphers if c not in first)


def _prefer_pinned_key_type(transport: paramiko.Transport, pinned: HostKey | None) -> None:
    if pinned is None:
        return
    options = transport.get_security_options()
    wanted = [pinned.key_type]
    if pinned.key_type == "ssh-rsa":
        wanted = [t for t in ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa") if t in options.key_types]
    options.key_types = wanted + [t for t in options.key_types if t not in wanted]


def _check_host_key(transport: paramiko.Transport, known_name: str, pinned: HostKey | None,
                    name: str) -> None:
    offered = transport.get_remote_server_key()
    blob = offered.asbytes()
    if pinned is not None and pinned.blob == blob:
        return  # the public key blob (type name and key) is exactly the pinned one
    offered_line = f"{known_name} {offered.get_name()} {base64.b64encode(blob).decode()}"
    fingerprint = ssh_fingerprint(blob)
    if pinned is None:
        raise HostKeyError(
            f"{name}: host key for {known_name} is not pinned; the device offered "
            f"{offered.get_name()} {fingerprint}. Check that fingerprint on the device's console "
            f"(show crypto key mypubkey), then pin it with `host_key: \"{offered_line}\"` in the "
            "inventory. Unknown keys are never accepted automatically."
        )
    if pinned.to_pkey().asbytes() == blob:
        return  # the same key, pinned in another (non-canonical) encoding
    raise HostKeyError(
        f"{name}: HOST KEY MISMATCH for {known_name}: expected {pinned.key_type} "
        f"{pinned.fingerprint} (pinned in the inventory), found {offered.get_name()} "
        f"{fingerprint}. Someone may be intercepting the connection, or the device was "
        f"re-imaged. Verify on the console; only then replace the pin with "
        f"`host_key: \"{offered_line}\"`."
    )


def _authenticate(transport: paramiko.Transport, username: str, credential: Credential,
                  name: str, where: str) -> None:
    try:
        if credential.kind in ("password_env", "password_file"):
            transport.auth_password(username, credential.password())
        elif credential.kind == "key_file":
            transport.auth_publickey(username, credential.private_key())
        else:
            keys = paramiko.Agent().get_keys()
            if not keys:
                raise AuthError(f"{name}: ssh-agent has no keys (is SSH_AUTH_SOCK set?)")
            for key in keys:
                try:
                    transport.auth_publickey(username, key)
                    break
                except paramiko.AuthenticationException:
                    continue
            else:
                raise AuthError(f"{name}: the device accepted none of the ssh-agent's {len(keys)} keys for {username}")
    except paramiko.BadAuthenticationType as exc:
        raise AuthError(
            f"{name}: {where} refused the {credential.kind} method for {username}; it allows "
            f"{', '.join(exc.allowed_types)}"
        ) from exc
    except paramiko.AuthenticationException as exc:
        if "timeout" in str(exc).lower():
            raise DeadlineError(f"{name}: authentication to {where} timed out") from exc
        raise AuthError(
            f"{name}: {where} rejected the credentials for user {username!r} ({credential.kind}); "
            "check the credential the inventory points to. Not retried."
        ) from exc
    if not transport.is_authenticated():
        raise AuthError(f"{name}: authentication to {where} did not complete")


def _closed_before_banner(exc: paramiko.SSHException) -> bool:
    """paramiko wraps the banner read's EOF / reset in a generic SSHException; look beneath."""
    cause = exc.__cause__ or exc.__context__
    return "protocol banner" in str(exc) and isinstance(cause, (EOFError, ConnectionResetError))


def _no_banner(name: str, known_name: str, timeout: float) -> DeadlineError:
    return DeadlineError(f"{name}: no SSH banner from {known_name} within {timeout:g} s: not an SSH server, "
                         "or overloaded")


def _start_transport(sock: socket.socket | paramiko.Channel, deadlines: _Deadlines,
                     known_name: str, pinned: HostKey | None, name: str, *,
                     check_host_key: bool = True) -> paramiko.Transport:
    transport = paramiko.Transport(sock)
    prefer_ciphers(transport)
    _prefer_pinned_key_type(transport, pinned)
    timeout = deadlines.budget(deadlines.timeouts.connect, "the SSH handshake")
    transport.banner_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
    except paramiko.SSHException as exc:
        transport.close()
        text = str(exc)
        if isinstance(exc.__cause__ or exc.__context__, TimeoutError):
            if "protocol banner" in text:
                raise _no_banner(name, known_name, timeout) from exc
            raise DeadlineError(f"{name}: SSH handshake with {known_name} timed out ({timeout:g} s)") from exc
        if "rate" in text.lower() or "too many" in text.lower() or _closed_before_banner(exc):
            # IOS XR's `ssh server rate-limit` accepts the TCP connection and closes it before
            # sending its SSH banner: that is the signature we can see from here.
            raise RateLimitedError(
                f"{name}: {known_name} closed the connection before its SSH banner, as a device "
                f"over `ssh server rate-limit` does, or a server refusing more sessions or this "
                f"client ({text}); retried with backoff") from exc
        if "timeout" in text.lower() or "timed out" in text.lower():
            raise DeadlineError(f"{name}: SSH handshake with {known_name} timed out ({timeout:g} s)") from exc
        raise ConnectError(f"{name}: SSH handshake with {known_name} failed: {text or type(exc).__name__}; "
                           "the device may be refusing sessions (rate limit) or not speak SSH") from exc
    except (EOFError, OSError) as exc:
        transport.close()
        raise ConnectError(f"{name}: {known_name} closed the connection during the SSH handshake "
                           f"({type(exc).__name__}); it may be rate-limiting sessions") from exc
    if not transport.initial_kex_done:
        # start_client returns without an error when its timeout passes mid-handshake; the
        # host key asked for next would fail in paramiko's words ("No existing session").
        transport.close()
        if not transport.remote_version:
            raise _no_banner(name, known_name, timeout)
        raise DeadlineError(f"{name}: SSH handshake with {known_name} did not finish within {timeout:g} s "
                            f"(it sent the banner {transport.remote_version!r})")
    if not check_host_key:
        return transport
    try:
        _check_host_key(transport, known_name, pinned, name)
    except HostKeyError:
        transport.close()
        raise
    return transport


def _open_jump(jump: JumpHost, device: Device, deadlines: _Deadlines) -> tuple[paramiko.Transport, paramiko.Channel]:
    known = jump.host if jump.port == 22 else f"[{jump.host}]:{jump.port}"
    sock = _open_socket(jump.host, jump.port, deadlines.budget(deadlines.timeouts.connect, "connect"), device.name)
    transport = _start_transport(sock, deadlines, known, jump.host_key, device.name)
    try:
        transport.auth_timeout = deadlines.budget(deadlines.timeouts.auth, "jump host authentication")
        _authenticate(transport, jump.username, jump.credential, device.name, f"jump host {known}")
        channel = transport.open_channel(
            "direct-tcpip", (device.host, device.port), ("127.0.0.1", 0),
            timeout=deadlines.budget(deadlines.timeouts.connect, "the jump channel"),
        )
    except paramiko.ChannelException as exc:
        transport.close()
        raise ConnectError(f"{device.name}: jump host {known} could not reach "
                           f"{device.host}:{device.port}: {exc}") from exc
    except BaseException:
        transport.close()
        raise
    return transport, channel


def offered_host_key(device: Device) -> HostKey:
    """The host key the device offers in the SSH handshake (through its jump host, whose own
    key must match its pin), for an operator to confirm before it is pinned: nothing is
    authenticated or trusted here. Raises what `run_command` raises for the connection."""
    deadlines = _Deadlines(device, None)
    jump: paramiko.Transport | None = None
    with _translated(device):
        try:
            if device.jump_host is not None:
                jump, sock = _open_jump(device.jump_host, device, deadlines)
            else:
                sock = _open_socket(device.host, device.port, deadlines.budget(device.timeouts.connect, "connect"),
                                    device.name)
            transport = _start_transport(sock, deadlines, device.known_hosts_name, device.host_key, device.name,
                                         check_host_key=False)
            offered = transport.get_remote_server_key()
            transport.close()
        finally:
            if jump is not None:
                jump.close()
    return HostKey.parse(f"{device.known_hosts_name} {offered.get_name()} {offered.get_base64()}")


class DeviceSession:
    """One authenticated SSH connection that can run several exec commands (provisioning).

    Use as a context manager; `exec` returns each command's exact output. Raises what
    `run_command` raises.
    """

    def __init__(self, device: Device, *, run_deadline: float | None = None) -> None:
        self.device = device
        self.deadlines = _Deadlines(device, run_deadline)
        self._transport: paramiko.Transport | None = None
        self._jump: paramiko.Transport | None = None

    def __enter__(self) -> DeviceSession:
        device = self.device
        with _translated(device):
            try:
                if device.jump_host is not None:
                    self._jump, sock = _open_jump(device.jump_host, device, self.deadlines)
                else:
                    sock = _open_socket(device.host, device.port,
                                        self.deadlines.budget(device.timeouts.connect, "connect"), device.name)
                self._transport = _start_transport(sock, self.deadlines, device.known_hosts_name,
                                                   device.host_key, device.name)
                self._transport.auth_timeout = self.deadlines.budget(device.timeouts.auth, "authentication")
                _authenticate(self._transport, device.username, device.credential, device.name,
                              device.known_hosts_name)
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for transport in (self._transport, self._jump):
            if transport is not None:
                transport.close()
        self._transport = self._jump = None

    def exec(self, command: str, *, stdin: bytes = b"",
             max_output_bytes: int = MAX_OUTPUT_BYTES) -> tuple[bytes, int | None]:
        """Run one command; `stdin` answers its questions (then end of input: the defaults)."""
        assert self._transport is not None, "use DeviceSession as a context manager"
        with _translated(self.device):
            return _exec(self._transport, command, self.device, self.deadlines, max_output_bytes, stdin=stdin)


    def shell(self, lines: list[str], prompt: re.Pattern[str]) -> list[str]:
        """Type `lines` into an interactive shell (no PTY); returns what each line printed.

        Waits for `prompt` after connecting and after every line; the command deadline bounds
        each wait.
        """
        assert self._transport is not None, "use DeviceSession as a context manager"
        with _translated(self.device):
            channel, budget = _open_bounded(
                self._transport, self.deadlines.budget(self.device.timeouts.command, "opening a shell"),
                MAX_OUTPUT_BYTES)
            try:
                channel.invoke_shell()
                self._until_prompt(channel, prompt, budget)
                outputs = []
                for line in lines:
                    channel.sendall(line.encode() + b"\n")
                    outputs.append(self._until_prompt(channel, prompt, budget))
                return outputs
            finally:
                channel.close()

    def _until_prompt(self, channel: paramiko.Channel, prompt: re.Pattern[str], budget: _ReceiveBudget) -> str:
        deadline = min(time.monotonic() + self.device.timeouts.command, self.deadlines.device_deadline)
        chunks: list[bytes] = []
        tail = ""
        while not prompt.search(tail):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineError(f"{self.device.name}: no prompt within the command deadline; "
                                    f"last output: {tail[-200:]!r}")
            channel.settimeout(remaining)
            try:
                data = channel.recv(RECV_CHUNK_BYTES)
            except TimeoutError:
                continue
            if budget.exceeded:  # the shell's whole session, both streams (stderr is never read)
                raise _too_large(self.device, budget, "in the shell session")
            if not data:
                raise ConnectError(f"{self.device.name}: the shell closed before its prompt")
            chunks.append(data)
            tail = (tail + data.decode("utf-8", "replace"))[-4096:]
        return b"".join(chunks).decode("utf-8", "replace")


class _translated:
    """Turn paramiko's and the socket layer's exceptions into the collector's."""

    def __init__(self, device: Device) -> None:
        self.device = device

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, CollectorError):
            return False
        where = self.device.known_hosts_name
        if isinstance(exc, paramiko.SSHException):
            raise ConnectError(f"{self.device.name}: SSH error talking to {where}: {exc}") from exc
        if isinstance(exc, (EOFError, ConnectionError)):
            raise ConnectError(f"{self.device.name}: connection to {where} was reset "
                               f"({type(exc).__name__})") from exc
        if isinstance(exc, TimeoutError):
            raise DeadlineError(f"{self.device.name}: timed out talking to {where}") from exc
        return False


def run_command(device: Device, command: str, *, run_deadline: float | None = None,
                max_output_bytes: int = MAX_OUTPUT_BYTES) -> CommandResult:
    """Connect, authenticate, run `command` on an exec channel and return its exact output.

    Raises a CollectorError subclass: ConnectError / RateLimitedError / DeadlineError
    (transient), AuthError / HostKeyError (not), OutputTooLargeError.
    """
    started = datetime.now(UTC)
    with DeviceSession(device, run_deadline=run_deadline) as session:
        output, exit_status = session.exec(command, max_output_bytes=max_output_bytes)
    received = datetime.now(UTC)
    return CommandResult(output=output, started=started, received=received,
                         duration_s=time.monotonic() - session.deadlines.start, exit_status=exit_status)


class _ReceiveBudget:
    """What one channel may receive, stdout and stderr together, counted as paramiko buffers it.

    paramiko's client neither enforces its receive window nor bounds its buffers, and a hostile
    device may ignore the window: counting in the transport thread, before anything is kept,
    bounds memory however slowly (or whether) the reader reads. Past `limit` nothing more is
    kept and `exceeded` is set; `arrived` wakes the reader on data for either stream or on EOF.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = 0
        self.exceeded = False
        self.arrived = threading.Event()
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Count `size` more bytes; False (keep none of them) once the total is over `limit`."""
        with self._lock:
            if not self.exceeded:
                self.received += size
                self.exceeded = self.received > self.limit
            return not self.exceeded


class _BoundedPipe(BufferedPipe):
    """A channel buffer (stdout or stderr) that keeps only what its budget allows."""

    def __init__(self, budget: _ReceiveBudget) -> None:
        super().__init__()
        self._budget = budget

    def feed(self, data: bytes) -> None:
        if self._budget.take(len(data)):
            super().feed(data)
        self._budget.arrived.set()

    def close(self) -> None:
        super().close()
        self._budget.arrived.set()


def _open_bounded(transport: paramiko.Transport, timeout: float,
                  max_output_bytes: int) -> tuple[paramiko.Channel, _ReceiveBudget]:
    """A session channel whose two input buffers share one `_ReceiveBudget`."""
    channel = transport.open_session(timeout=timeout)
    budget = _ReceiveBudget(max_output_bytes)
    # Swapped before any request: a device sends nothing on a channel before it is asked to.
    channel.in_buffer = _BoundedPipe(budget)
    channel.in_stderr_buffer = _BoundedPipe(budget)
    return channel, budget


def _too_large(device: Device, budget: _ReceiveBudget, found: str) -> OutputTooLargeError:
    return OutputTooLargeError(
        f"{device.name}: output exceeded {budget.limit} bytes: expected at most {budget.limit} bytes "
        f"of stdout and stderr together (what the verifier accepts), found {budget.received} ({found}); "
        "the session was closed. Ask for fewer items or fewer file-system blocks"
    )


def _exec(transport: paramiko.Transport, command: str, device: Device, deadlines: _Deadlines,
          max_output_bytes: int, *, stdin: bytes = b"") -> tuple[bytes, int | None]:
    channel, budget = _open_bounded(
        transport, deadlines.budget(device.timeouts.command, "opening a channel"), max_output_bytes)
    command_deadline = time.monotonic() + device.timeouts.command
    channel.exec_command(command)
    if stdin:
        channel.sendall(stdin)
    # End of input: a device question that gets no answer takes its default, never hangs.
    channel.shutdown_write()
    chunks: list[bytes] = []
    stdout_bytes = stderr_bytes = 0
    while True:
        # Cleared before looking, so data or EOF arriving from here on wakes the wait below.
        budget.arrived.clear()
        # EOF (or a closed channel) is seen only after the data sent before it was buffered.
        ended = channel.eof_received or channel.closed
        while channel.recv_ready():
            data = channel.recv(RECV_CHUNK_BYTES)
            stdout_bytes += len(data)
            chunks.append(data)
        # stderr is read so its window is given back, and counted; nothing reads its content.
        while channel.recv_stderr_ready():
            stderr_bytes += len(channel.recv_stderr(RECV_CHUNK_BYTES))
        if budget.exceeded:
            raise _too_large(device, budget, f"{stdout_bytes} read on stdout, {stderr_bytes} on stderr")
        if ended:
            break
        remaining = min(command_deadline, deadlines.device_deadline) - time.monotonic()
        if remaining <= 0:
            raise DeadlineError(
                f"{device.name}: command deadline passed after {stdout_bytes + stderr_bytes} bytes "
                f"(timeouts.command {device.timeouts.command:g} s, timeouts.device "
                f"{device.timeouts.device:g} s)"
            )
        budget.arrived.wait(remaining)
    # paramiko sets status_event on close too, leaving exit_status at -1: that means the
    # session was cut before the device finished (no exit-status message ever came).
    channel.status_event.wait(min(EXIT_STATUS_GRACE_S, max(0.0, deadlines.device_deadline - time.monotonic())))
    exit_status: int | None = channel.exit_status if channel.status_event.is_set() else None
    if exit_status == -1 or (exit_status is None and not transport.is_active()):
        raise ConnectionLostError(
            f"{device.name}: the session ended after {stdout_bytes} bytes without an exit status: "
            "the connection was cut mid-output"
        )
    return b"".join(chunks), exit_status
