"""SSH client helpers for emulator tests: exec one command, or drive the interactive CLI."""

from __future__ import annotations

import io
import re
import socket
import time
from typing import Any

import paramiko

PROMPT_RE = re.compile(r"RP/0/RP0/CPU0:[\w.-]+(\([\w-]+\))?#$")


def connect(device: Any, *, username: str | None = None, password: str | None = None,
            pkey: paramiko.PKey | None = None, timeout: float = 20.0) -> paramiko.SSHClient:
    """A paramiko client with the device's host key pinned (no auto-accept) and TCP_NODELAY."""
    client = paramiko.SSHClient()
    host_keys = client.get_host_keys()
    where, key_type, key_b64 = device.host_key_line.split()
    host_keys.add(where, key_type, paramiko.PKey.from_type_string(key_type, __import__("base64").b64decode(key_b64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    sock = socket.create_connection((device.host, device.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.connect(
        device.host, port=device.port, username=username or device.username,
        password=None if pkey else (password if password is not None else device.password),
        pkey=pkey, sock=sock, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
        look_for_keys=False, allow_agent=False,
    )
    return client


def run(device: Any, command: str, *, stdin: str | None = None, **kwargs: Any) -> str:
    """Run one command over an exec channel; return everything it printed."""
    client = connect(device, **kwargs)
    try:
        channel = client.get_transport().open_session()  # type: ignore[union-attr]
        channel.settimeout(60)
        channel.exec_command(command)
        if stdin is not None:
            channel.sendall(stdin.encode())
        channel.shutdown_write()
        chunks = []
        while True:
            data = channel.recv(65536)
            if not data:
                break
            chunks.append(data)
        channel.recv_exit_status()
        return b"".join(chunks).decode("utf-8")
    finally:
        client.close()


def strip_timestamp(output: str) -> str:
    """Drop the `Sun Oct 20 13:07:24.136 UTC` line IOS XR prints first."""
    first, _, rest = output.partition("\n")
    assert re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d\.\d{3} UTC", first), first
    return rest


class Shell:
    """An interactive session (PTY) driven line by line, as a person or netmiko would.

    Like a script, it starts with `terminal length 0` (no ` --More-- ` paging) unless `paging`."""

    def __init__(self, device: Any, *, paging: bool = False, **kwargs: Any) -> None:
        self.client = connect(device, **kwargs)
        self.channel = self.client.invoke_shell(width=200, height=50)
        self.channel.settimeout(30)
        self.buffer = ""
        self.read_until(PROMPT_RE)
        if not paging:
            self.cmd("terminal length 0")

    def read_until(self, pattern: re.Pattern[str] | str, timeout: float = 30.0) -> str:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            text = self.buffer.replace("\r\n", "\n")
            match = regex.search(text)
            if match:
                self.buffer = text[match.end() :]  # keep what came after, for the next read
                return text[: match.end()]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {regex.pattern!r} in {self.buffer[-500:]!r}")
            data = self.channel.recv(65536)
            if not data:
                raise EOFError(f"session closed; got {self.buffer[-500:]!r}")
            self.buffer += data.decode("utf-8", errors="replace")

    def send(self, text: str) -> None:
        self.channel.sendall(text.encode())

    def cmd(self, line: str, expect: re.Pattern[str] | str = PROMPT_RE) -> str:
        """Type `line` and Enter; return what came back up to `expect` (the next prompt)."""
        self.send(line + "\r")
        return self.read_until(expect)

    @property
    def prompt(self) -> str:
        return self._last_prompt

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Shell":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def generate_client_key() -> tuple[paramiko.RSAKey, str]:
    """An RSA key for public-key login, and its public part as an OpenSSH line."""
    key = paramiko.RSAKey.generate(2048)
    return key, f"{key.get_name()} {key.get_base64()}"


def private_key_text(key: paramiko.PKey) -> str:
    out = io.StringIO()
    key.write_private_key(out)
    return out.getvalue()
