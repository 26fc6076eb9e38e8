"""Call NETCONF RPCs on one device with ncclient (the client operators use): the same strict
host keys, credentials and deadlines as the SSH polls, and bounded replies.

- Host key: the inventory's pin (`host_key`), given to ncclient as the one key the server
  must present (`hostkey_b64`); an unpinned device is refused before connecting, as for SSH.
- Deadline: one for the whole session (connect, hellos, every RPC), the device's and the
  run's, whichever is first. ncclient's own waits have no overall bound (its handshake waits
  as long as the server trickles bytes), so a watchdog closes the socket when it passes: every
  wait then ends, and the session fails as timed out.
- Size: what one session may receive is counted in paramiko's transport thread before it is
  kept (`MAX_SESSION_BYTES`); past it the session is closed and fails as too large.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from verifier.tpm.replies import MAX_REPLY_BYTES

from .errors import (
    AuthError,
    CollectorError,
    CommandError,
    ConnectError,
    DeadlineError,
    HostKeyError,
    OutputTooLargeError,
    Reason,
)
from .inventory import Device
from .ssh import CommandResult, _BoundedPipe, _open_socket, _ReceiveBudget

__all__ = ["MAX_SESSION_BYTES", "NetconfSession"]

#: A TPM poll asks for four replies; each is bounded by what the verifier reads
#: (verifier/tpm/replies.py), and the session by two of the largest (the IMA log dominates).
MAX_SESSION_BYTES = 2 * MAX_REPLY_BYTES
#: Bytes on the wire per byte of channel data, at most: SSH packet headers, padding and MACs
#: add a few percent; the rest of the allowance is for the key exchange and the hellos.
_WIRE_OVERHEAD = 1.25
#: Error tags (RFC 6241 appendix A) that mean "this user may not": not retried.
_ACCESS_TAGS = ("access-denied",)
#: How often ncclient's session thread looks for a request to send (its `TICK`, 0.1 s, a
#: module global): a request waits for the next look, so a poll of five messages (hello, four
#: RPCs) spent ~0.4 s waiting. At 10 ms it takes ~0.06 s; each idle session then wakes 100
#: times a second, and a session lives only for its poll.
NCCLIENT_TICK_S = 0.01


@dataclass
class _Expiry:
    """Set by the watchdog when the deadline passed (so a closed socket reads as a timeout)."""

    passed: bool = False


class NetconfSession:
    """One NETCONF session over SSH; use as a context manager, then `rpc(xml)` per RPC.
    Raises CollectorError subclasses as `collector.ssh` does (ConnectError, DeadlineError,
    AuthError, HostKeyError, CommandError, OutputTooLargeError)."""

    def __init__(self, device: Device, *, run_deadline: float | None = None) -> None:
        self.device = device
        start = time.monotonic()
        self.deadline = start + device.timeouts.device
        if run_deadline is not None:
            self.deadline = min(self.deadline, run_deadline)
        self.port = device.netconf_port or device.port
        self.budget = _ReceiveBudget(MAX_SESSION_BYTES)
        self._manager: Any = None
        self._sock: Any = None
        self._watchdog: threading.Timer | None = None
        self._expiry = _Expiry()
        self.wire = _ReceiveBudget(0)

    @property
    def where(self) -> str:
        return f"{self.device.host}:{self.port} (NETCONF)"

    def _left(self, phase_seconds: float, phase: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineError(f"{self.device.name}: the device deadline passed before {phase}")
        return min(phase_seconds, left)

    def __enter__(self) -> NetconfSession:
        import ncclient.transport.session
        from ncclient import manager
        from ncclient.operations.rpc import RaiseMode

        ncclient.transport.session.TICK = NCCLIENT_TICK_S

        device = self.device
        if device.jump_host is not None:
            raise ConnectError(f"{device.name}: TPM evidence over NETCONF through a jump host is not supported; "
                               "expected a device reached directly, found jump_host set")
        pinned = device.host_key
        if pinned is None:
            raise HostKeyError(f"{device.name}: host key for {device.known_hosts_name} is not pinned; NETCONF uses "
                               "the same pin as SSH: run `dossier hostkeys` (or pin `host_key:` in the inventory) first. "
                               "Unknown keys are never accepted automatically.")
        # Counted from the first byte: ncclient keeps the server's <hello> whole before the
        # channel's buffer below can be bounded, and an endless one would grow without bound.
        self.wire = _ReceiveBudget(int(MAX_SESSION_BYTES * _WIRE_OVERHEAD))
        self._sock = _CountingSocket(
            _open_socket(device.host, self.port, self._left(device.timeouts.connect, "connect"), device.name),
            self.wire, self.close)
        self._watchdog = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()
        credential = device.credential
        secret = None
        if credential.kind in ("password_env", "password_file"):
            secret = credential.password()
        elif credential.kind == "key_file" and credential.passphrase_env:
            secret = os.environ.get(credential.passphrase_env)  # ncclient opens the key file with it
        try:
            self._manager = manager.connect(
                host=device.host, port=self.port, sock=self._sock, username=device.username, password=secret,
                key_filename=credential.reference if credential.kind == "key_file" else None,
                allow_agent=credential.kind == "agent", look_for_keys=False,
                hostkey_verify=True, hostkey_b64=pinned.key_base64, unknown_host_cb=lambda *_: False,
                timeout=self._left(device.timeouts.connect + device.timeouts.auth, "the NETCONF handshake"),
            )
        except BaseException as exc:
            self.close()
            raise self._translate(exc, "connecting") from exc
        self._manager.raise_mode = RaiseMode.NONE  # an rpc-error is read here, not raised by ncclient
        # Bounded from here on: the hellos are done and the server sends nothing until asked.
        channel = self._manager._session._channel
        bounded = _ClosingPipe(self.budget, self.close)
        if getattr(channel, "_pipe", None) is not None:  # ncclient selects on the channel: wake it as before
            bounded.set_event(channel._pipe)
        channel.in_buffer = bounded
        return self

    def _expire(self) -> None:
        self._expiry.passed = True
        self.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        manager, self._manager = self._manager, None
        if manager is not None:
            from ncclient.transport.errors import TransportError

            try:
                manager._session.close()  # no <close-session> round trip: the session is done
            except (TransportError, OSError, EOFError):
                pass  # a session that already failed: closing it has nothing more to say
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass

    def rpc(self, request: str) -> CommandResult:
        """Send one RPC (its XML, without the `<rpc>` envelope) and return the reply as received:
        raises CommandError for an `<rpc-error>` reply, the connection errors otherwise."""
        from lxml import etree

        if self._manager is None:
            raise ConnectError(f"{self.device.name}: the NETCONF session to {self.where} is closed")
        started, begin = datetime.now(UTC), time.monotonic()
        self._manager.timeout = self._left(self.device.timeouts.command, "an RPC")
        try:
            reply = self._manager.dispatch(etree.fromstring(request))
        except BaseException as exc:
            raise self._translate(exc, "waiting for an RPC reply") from exc
        raw = reply.xml.encode("utf-8")  # ncclient decoded the UTF-8 it received; encoded back, the same bytes
        if reply.errors:
            first = reply.errors[0]
            error = CommandError(f"{self.device.name}: expected an RPC reply with data, found the device error "
                                 f"{first.tag!r}: {(first.message or '').strip()[:300]!r}")
            if first.tag in _ACCESS_TAGS:
                error.reason = Reason.DEVICE_NOT_AUTHORIZED
            raise error
        return CommandResult(raw, started, datetime.now(UTC), time.monotonic() - begin, None)

    def _translate(self, exc: BaseException, phase: str) -> CollectorError | BaseException:
        """ncclient's and the socket layer's exceptions as the collector's."""
        from ncclient.operations.errors import TimeoutExpiredError
        from ncclient.transport.errors import AuthenticationError, SSHUnknownHostError

        name, where = self.device.name, self.where
        if isinstance(exc, CollectorError):
            return exc
        if self.budget.exceeded or self.wire.exceeded:
            return OutputTooLargeError(f"{name}: {where} sent more than {self.budget.limit} bytes in one session; "
                                       "the session was closed")
        if self._expiry.passed or isinstance(exc, (TimeoutExpiredError, TimeoutError)):
            return DeadlineError(f"{name}: timed out {phase} ({where})")
        if isinstance(exc, SSHUnknownHostError):
            pinned = self.device.host_key
            return HostKeyError(f"{name}: HOST KEY MISMATCH for {where}: expected {pinned.key_type if pinned else ''} "
                                f"{pinned.fingerprint if pinned else ''} (pinned in the inventory), found a key with MD5 "
                                f"fingerprint {getattr(exc, 'fingerprint', '?')}. Someone may be intercepting the "
                                "connection, or the device was re-imaged.")
        if isinstance(exc, AuthenticationError):
            return AuthError(f"{name}: {where} rejected the credentials for user {self.device.username!r}; "
                             "check the credential the inventory points to. Not retried.")
        if isinstance(exc, Exception):
            return ConnectError(f"{name}: NETCONF session with {where} failed {phase}: "
                                f"{type(exc).__name__}: {str(exc)[:200]}")
        return exc


class _ClosingPipe(_BoundedPipe):
    """A channel buffer under the session's budget that closes the session once it is spent
    (the RPC then fails at once instead of waiting for a reply that was thrown away)."""

    def __init__(self, budget: _ReceiveBudget, close: Any) -> None:
        super().__init__(budget)
        self._close = close

    def feed(self, data: bytes) -> None:
        super().feed(data)
        if self._budget.exceeded:
            threading.Thread(target=self._close, daemon=True).start()  # not from paramiko's own thread


class _CountingSocket:
    """The session's socket, counting what it receives against `budget` (the whole session,
    key exchange and hellos included); past it the session is closed and reading ends."""

    def __init__(self, sock: Any, budget: _ReceiveBudget, close: Any) -> None:
        self._sock, self._budget, self._close = sock, budget, close

    def recv(self, size: int) -> bytes:
        if self._budget.exceeded:
            return b""  # paramiko reads this as the peer closing the connection
        data = self._sock.recv(size)
        if not self._budget.take(len(data)):
            threading.Thread(target=self._close, daemon=True).start()  # not from paramiko's own thread
            return b""
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
