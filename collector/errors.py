"""The collector's one exception root and the failures a caller can act on.

Every message says what was expected, what was found and what to do next. `transient` tells
the retry loop whether trying again can help (refused, reset, timed out, rate-limited) or not
(authentication, host key, configuration).
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CollectorError",
    "CommandError",
    "ConnectError",
    "DeadlineError",
    "DiskFullError",
    "EnrollError",
    "HostKeyError",
    "InventoryError",
    "LockError",
    "OutputTooLargeError",
    "RateLimitedError",
    "StoreError",
]


class CollectorError(Exception):
    """Root of every error the collector raises on purpose."""

    #: Whether retrying the same operation later can succeed.
    transient: bool = False
    #: Stable short code used in summaries, metrics and syslog.
    reason: str = "collector.error"


class InventoryError(CollectorError):
    """The inventory file is missing, malformed or inconsistent (names file, line and field)."""

    reason = "inventory.invalid"


class ConnectError(CollectorError):
    """TCP or SSH transport could not be set up (refused, reset, unreachable, protocol)."""

    transient = True
    reason = "ssh.connect_failed"


class ConnectionLostError(ConnectError):
    """The connection was cut after the command started: mid-output, or before its exit status."""

    reason = "ssh.connection_lost"


class RateLimitedError(ConnectError):
    """The device refused the SSH session, as `ssh server rate-limit` does."""

    reason = "ssh.rate_limited"


class DeadlineError(CollectorError):
    """A connect, authentication, command or whole-device deadline passed."""

    transient = True
    reason = "ssh.timeout"


class AuthError(CollectorError):
    """The device rejected the credentials; retrying would only lock the account."""

    reason = "ssh.auth_failed"


class HostKeyError(CollectorError):
    """The device's SSH host key is unknown or differs from the pinned one."""

    reason = "ssh.host_key"


class CommandError(CollectorError):
    """The device answered the command with an error (`% ...`) or in a form we cannot use."""

    reason = "device.command_error"


class OutputTooLargeError(CommandError):
    """The device printed more than the collector is willing to hold."""

    reason = "device.output_too_large"


class StoreError(CollectorError):
    """The envelope store cannot be written or read as expected."""

    reason = "store.error"


class DiskFullError(StoreError):
    """The file system holding the store has no room left (ENOSPC, a quota, SQLITE_FULL): what
    was stored before is intact; freeing space is the fix, not repairing anything."""

    reason = "store.disk_full"


class LockError(CollectorError):
    """Another collection run holds the store's run lock."""

    reason = "run.locked"


class EnrollError(CollectorError):
    """Enrollment could not obtain, confirm or store a device's root certificate."""

    reason = "enroll.failed"
