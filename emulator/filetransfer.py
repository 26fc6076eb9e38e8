"""SCP and SFTP of the device's `harddisk:`, read-only, for the users and task IDs of the CLI.

Files leave the device the way an operator fetches them from IOS XR: OpenSSH's `scp` (SFTP
by default since OpenSSH 9.0, the legacy protocol with `scp -O`), `sftp`, or a library's SFTP
client. The session was authenticated like a CLI session (same users, passwords, public keys
and rate limit); each read then needs the task IDs the CLI's `more` needs, and each listing
those of `dir` (`describe more harddisk:x` shows them), so a user who can read a file at the
prompt can fetch it and one who cannot is refused.

Paths are written as on the router: `harddisk:/name`, `/harddisk:/name`, or `name` relative to
`harddisk:`. Nothing outside the device's folder is reachable: `..`, absolute paths outside
`harddisk:` and symbolic links that leave it are refused. Writes are refused with the SFTP
permission error (`scp -t` with a protocol error).
"""

from __future__ import annotations

import logging
import os
import posixpath
import shlex
import socket
from pathlib import Path
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.sftp import SFTP_FAILURE, SFTP_NO_SUCH_FILE, SFTP_PERMISSION_DENIED

from .commands import NOT_AUTHORIZED, PERSONALITIES
from .device import HARDDISK_PREFIXES, Device, DeviceError
from .grammar import GrammarError, match_line

__all__ = ["SFTP_SUBSYSTEM", "DeviceSFTP", "TransferRefused", "authorize", "canonical", "is_scp", "resolve", "run_scp",
           "serve_sftp"]

log = logging.getLogger(__name__)

SFTP_SUBSYSTEM = "sftp"
# The CLI commands whose task IDs a file read and a folder listing need (one owner: the table).
READ_COMMAND = "more harddisk:x"
LIST_COMMAND = "dir harddisk:"
# The canonical name SFTP clients are given for harddisk:'s top (`pwd` shows it).
ROOT_NAME = "/harddisk:"
# A client that stops acknowledging an scp transfer frees its connection after this long.
SCP_ACK_TIMEOUT_S = 30.0
# scp data is sent in pieces of this size (paramiko's largest packet is 32 KiB).
SCP_CHUNK_BYTES = 32_768
# The files and folders one SFTP session may hold open at once (DoS bound: each is a file
# descriptor or a folder listing in memory); past it an open is answered SFTP_FAILURE.
MAX_SFTP_HANDLES = 64
# What an scp or SFTP client sees when it asks to write.
READ_ONLY = "harddisk: is read-only over SCP and SFTP on this device"


class TransferRefused(Exception):
    """A file request refused; `message` says why, `sftp_code` is the SFTP status to answer."""

    def __init__(self, message: str, sftp_code: int = SFTP_PERMISSION_DENIED) -> None:
        super().__init__(message)
        self.message = message
        self.sftp_code = sftp_code


def _required_tasks(device: Device, command: str) -> list[tuple[str, str]] | None:
    """The task IDs the device's CLI asks for `command`; None when the platform has no such command."""
    try:
        match = match_line(command, PERSONALITIES[device.platform].exec_rows)
    except GrammarError:
        return None
    return list(match.row.meta.get("tasks", []))


def authorize(device: Device, username: str, command: str) -> None:
    """Raise TransferRefused unless `username` holds the task IDs of `command` (READ_COMMAND, LIST_COMMAND)."""
    tasks = _required_tasks(device, command)
    if tasks is None:
        raise TransferRefused(f"file transfer needs `{command.split()[0]}`, which this {device.platform} device lacks")
    if device.authorize(username, tasks):
        raise TransferRefused(NOT_AUTHORIZED.strip().lstrip("% "))


def _below_harddisk(path: str) -> str | None:
    """What follows `harddisk:` in `path` (`harddisk:/a`, `/harddisk:/a`, or a relative `a`);
    None for an absolute path outside harddisk:."""
    for prefix in HARDDISK_PREFIXES:
        for spelling in (prefix, "/" + prefix.lstrip("/")):
            if path.startswith(spelling):
                return path[len(spelling) :]
    return None if path.startswith("/") else path


def _parts(path: str) -> list[str]:
    """The parts of `path` below harddisk:'s top; refuses `..` and absolute paths outside it."""
    rest = _below_harddisk(path)
    if rest is None:
        raise TransferRefused(f"{path}: outside harddisk: (expected harddisk:/<name> or a name on harddisk:)")
    parts = [part for part in rest.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise TransferRefused(f"{path}: '..' is not allowed (expected a path inside harddisk:)")
    return parts


def resolve(device: Device, path: str) -> Path:
    """The file or folder `path` names in the device's harddisk: folder; raises TransferRefused
    for any path that would leave it (symbolic links included: `Device.harddisk_path` resolves)."""
    parts = _parts(path)
    root = device.folder / "harddisk"
    root.mkdir(exist_ok=True)
    if not parts:
        return root.resolve()
    try:
        return device.harddisk_path("/".join(parts))
    except DeviceError as error:
        raise TransferRefused(error.message.lstrip("% ")) from None


def canonical(path: str) -> str:
    """`path` as the SFTP client should show it: `/harddisk:/a/b` (`..` stops at the top, as in a
    chroot); an absolute path outside harddisk: is returned normalised, and refused when used."""
    rest = _below_harddisk(path)
    if rest is None:
        return posixpath.normpath(path)
    kept: list[str] = []
    for part in rest.split("/"):
        if part == "..":
            if kept:
                kept.pop()
        elif part not in ("", "."):
            kept.append(part)
    return "/".join([ROOT_NAME, *kept])


# -- SFTP ------------------------------------------------------------------------------------


class _ReadHandle(paramiko.SFTPHandle):
    def stat(self) -> paramiko.SFTPAttributes:
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))


class DeviceSFTP(paramiko.SFTPServerInterface):
    """The SFTP view of one device's harddisk: for one authenticated user, read-only."""

    def __init__(self, server: Any, device: Device, username: str) -> None:
        super().__init__(server)
        self.device = device
        self.username = username
        # How many handles the session holds open (set by _SFTPServer, which keeps the tables).
        self.open_handles: Callable[[], int] = lambda: 0

    def _check_handles(self, path: str) -> None:
        if self.open_handles() >= MAX_SFTP_HANDLES:
            raise TransferRefused(f"{path}: too many open files (at most {MAX_SFTP_HANDLES} per session)",
                                  SFTP_FAILURE)

    def _refused(self, operation: str, path: str, error: TransferRefused) -> int:
        log.info("%s: sftp %s %r by %s refused: %s", self.device.name, operation, path, self.username, error.message)
        return error.sftp_code

    def _existing(self, path: str, command: str = READ_COMMAND) -> Path:
        authorize(self.device, self.username, command)
        target = resolve(self.device, path)
        if not target.exists():
            raise TransferRefused(f"{path}: no such file or directory", SFTP_NO_SUCH_FILE)
        return target

    def canonicalize(self, path: str) -> str:
        return canonical(path)

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        try:
            target = self._existing(path)
        except TransferRefused as error:
            return self._refused("stat", path, error)
        attributes = paramiko.SFTPAttributes.from_stat(target.stat())
        attributes.filename = target.name
        return attributes

    lstat = stat  # links are resolved (and confined) before any use

    def list_folder(self, path: str) -> list[paramiko.SFTPAttributes] | int:
        try:  # paramiko asks for the listing only to open a folder handle (opendir)
            self._check_handles(path)
            folder = self._existing(path, LIST_COMMAND)
            if not folder.is_dir():
                raise TransferRefused(f"{path}: not a directory", SFTP_NO_SUCH_FILE)
        except TransferRefused as error:
            return self._refused("list", path, error)
        root = self.device.folder / "harddisk"
        entries = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):  # `| file`'s temporary files; `dir` hides them too
                continue
            try:
                target = resolve(self.device, entry.relative_to(root.resolve()).as_posix())
                attributes = paramiko.SFTPAttributes.from_stat(target.stat())
            except (TransferRefused, OSError):  # a link that leaves harddisk: is not listed
                continue
            attributes.filename = entry.name
            entries.append(attributes)
        return entries

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> paramiko.SFTPHandle | int:
        try:
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC):
                raise TransferRefused(f"{path}: {READ_ONLY}")
            self._check_handles(path)
            target = self._existing(path)
            if not target.is_file():
                raise TransferRefused(f"{path}: not a regular file")
        except TransferRefused as error:
            return self._refused("open", path, error)
        handle = _ReadHandle(flags)
        handle.filename = str(target)
        handle.readfile = target.open("rb")
        return handle

    def _write(self, operation: str, path: str) -> int:
        return self._refused(operation, path, TransferRefused(f"{path}: {READ_ONLY}"))

    def remove(self, path: str) -> int:
        return self._write("remove", path)

    def rename(self, oldpath: str, newpath: str) -> int:
        return self._write("rename", oldpath)

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        return self._write("rename", oldpath)

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        return self._write("mkdir", path)

    def rmdir(self, path: str) -> int:
        return self._write("rmdir", path)

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        return self._write("chattr", path)

    def symlink(self, target_path: str, path: str) -> int:
        return self._write("symlink", path)


class _SFTPServer(paramiko.SFTPServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server.open_handles = lambda: len(self.file_table) + len(self.folder_table)

    def finish_subsystem(self) -> None:
        # OpenSSH's clients wait for the exit status before the close (paramiko closes first).
        try:
            self.sock.send_exit_status(0)
        except (OSError, EOFError):
            pass
        super().finish_subsystem()


def serve_sftp(channel: paramiko.Channel, server: paramiko.ServerInterface, device: Device, username: str,
               idle_timeout: float | None) -> None:
    """Run the `sftp` subsystem on `channel` in this thread until the client closes it (or is
    idle longer than `idle_timeout`, the line's exec-timeout)."""
    channel.settimeout(idle_timeout)
    handler = _SFTPServer(channel, SFTP_SUBSYSTEM, server, DeviceSFTP, device, username)
    handler.run()  # the thread's body, run here: this connection's thread serves its channels


# -- SCP (the legacy protocol: `scp -O`) -------------------------------------------------------


def is_scp(command: str) -> bool:
    """An scp server command (`scp -f ...` / `scp -t ...`), as OpenSSH's scp sends it; the CLI's
    own `scp <from> <to>` never starts with an option."""
    words = command.split()
    return len(words) >= 2 and words[0] == "scp" and words[1].startswith("-")


class _ScpAborted(Exception):
    """The client sent a fatal error or went away."""


def _ack(channel: paramiko.Channel) -> None:
    code = channel.recv(1)
    if code == b"\x00":
        return
    if not code:
        raise _ScpAborted("client closed the channel")
    message = b""
    while not message.endswith(b"\n"):
        more = channel.recv(1)
        if not more:
            break
        message += more
    if code == b"\x01":  # a warning: the client carries on
        log.debug("scp client warning: %r", message)
        return
    raise _ScpAborted(message.decode("utf-8", errors="replace").strip())


def run_scp(channel: paramiko.Channel, device: Device, username: str, command: str) -> int:
    """Serve one `scp -f` (send files) on `channel`; `scp -t` (receive) is refused. Returns
    the exit status (0: every file sent)."""
    try:
        argv = shlex.split(command)
    except ValueError as error:
        channel.sendall(f"\x02scp: {error}\n".encode())
        return 1
    options: set[str] = set()
    paths: list[str] = []
    for index, word in enumerate(argv[1:], start=1):
        if word == "--":
            paths += argv[index + 1 :]
            break
        if word.startswith("-") and not paths:
            options |= set(word[1:])
        else:
            paths.append(word)
    if "t" in options:
        log.info("%s: scp upload by %s refused (read-only)", device.name, username)
        channel.sendall(f"\x02scp: {READ_ONLY}\n".encode())
        return 1
    if "f" not in options or not paths:
        channel.sendall(b"\x02scp: expected scp -f <file>...\n")
        return 1
    channel.settimeout(SCP_ACK_TIMEOUT_S)
    failed = False
    try:
        _ack(channel)  # the receiving side speaks first
        for path in paths:
            try:
                _send_path(channel, device, username, path, keep_times="p" in options, recursive="r" in options)
            except TransferRefused as error:
                log.info("%s: scp of %r by %s refused: %s", device.name, path, username, error.message)
                channel.sendall(f"\x01scp: {error.message}\n".encode())
                failed = True
    except (_ScpAborted, socket.timeout, OSError, EOFError) as error:
        log.debug("%s: scp ended early: %s", device.name, error)
        return 1
    except Exception as error:  # noqa: BLE001 - RecursionError and the like: an scp error, never a crash
        log.exception("%s: scp by %s failed", device.name, username)
        try:
            channel.sendall(f"\x02scp: internal error: {type(error).__name__}\n".encode())
        except (OSError, EOFError):
            pass
        return 1
    return 1 if failed else 0


def _send_path(channel: paramiko.Channel, device: Device, username: str, path: str, *, keep_times: bool,
               recursive: bool) -> None:
    authorize(device, username, READ_COMMAND)
    target = resolve(device, path)
    if not target.exists():
        raise TransferRefused(f"{path}: No such file or directory")
    if target.is_dir() and recursive:
        authorize(device, username, LIST_COMMAND)
        _send_folder(channel, device, target, path, keep_times=keep_times, visited=set())
    elif target.is_file():
        _send_file(channel, target, path, keep_times=keep_times)
    else:
        raise TransferRefused(f"{path}: not a regular file")


def _send_folder(channel: paramiko.Channel, device: Device, folder: Path, path: str, *, keep_times: bool,
                 visited: set[Path]) -> None:
    """`scp -r`: the folder as D ... E records around its entries (links leaving harddisk:
    skipped, and so are folders already sent: a link back up, `a/loop -> ..`, is not a loop)."""
    root = (device.folder / "harddisk").resolve()
    visited.add(folder)
    _send_times(channel, folder.stat(), keep_times)
    channel.sendall(f"D0755 0 {folder.name}\n".encode())
    _ack(channel)
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):  # `| file`'s temporary files; `dir` hides them too
            continue
        entry_path = f"{path.rstrip('/')}/{entry.name}"
        try:
            target = resolve(device, entry.relative_to(root).as_posix())
        except TransferRefused as error:
            channel.sendall(f"\x01scp: {entry_path}: {error.message}\n".encode())
            continue
        if target.is_dir():
            if target in visited:
                channel.sendall(f"\x01scp: {entry_path}: skipped, a link to a folder already copied\n".encode())
                continue
            _send_folder(channel, device, target, entry_path, keep_times=keep_times, visited=visited)
        elif target.is_file():
            _send_file(channel, target, entry_path, keep_times=keep_times)
    channel.sendall(b"E\n")
    _ack(channel)


def _send_times(channel: paramiko.Channel, status: os.stat_result, keep_times: bool) -> None:
    if keep_times:  # `scp -p`
        channel.sendall(f"T{int(status.st_mtime)} 0 {int(status.st_atime)} 0\n".encode())
        _ack(channel)


def _send_file(channel: paramiko.Channel, target: Path, path: str, *, keep_times: bool) -> None:
    try:
        source = target.open("rb")
    except OSError as error:
        raise TransferRefused(f"{path}: {error.strerror or error}") from None
    with source:
        status = os.fstat(source.fileno())
        _send_times(channel, status, keep_times)
        channel.sendall(f"C{status.st_mode & 0o777:04o} {status.st_size} {target.name}\n".encode())
        _ack(channel)
        remaining = status.st_size  # what the header announced, even if the file grows meanwhile
        while remaining > 0:
            data = source.read(min(SCP_CHUNK_BYTES, remaining))
            if not data:  # shrunk after the header: the client is owed the announced size
                channel.sendall(b"\x02scp: file shrank while being sent\n")
                raise _ScpAborted(f"{path} shrank while being sent")
            channel.sendall(data)
            remaining -= len(data)
    channel.sendall(b"\x00")
    _ack(channel)
