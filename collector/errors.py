"""The collector's one exception root and the failures a caller can act on.

Every message says what was expected, what was found and what to do next. `transient` tells
the retry loop whether trying again can help (refused, reset, timed out, rate-limited) or not
(authentication, host key, configuration).
"""

from __future__ import annotations

import enum

__all__ = [
    "Reason",
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


class Reason(enum.StrEnum):
    """Every reason a device's outcome can give (summaries, `--json`, metrics, syslog), spelled
    once. A stable API, as finding ids are: add reasons, never rename one. An untrusted output's
    reason is the verifier's first finding id instead (verifier/findings.py)."""

    COLLECTOR_ERROR = "collector.error"
    INVENTORY_INVALID = "inventory.invalid"
    SSH_CONNECT_FAILED = "ssh.connect_failed"
    SSH_CONNECTION_LOST = "ssh.connection_lost"
    SSH_RATE_LIMITED = "ssh.rate_limited"
    SSH_TIMEOUT = "ssh.timeout"
    SSH_AUTH_FAILED = "ssh.auth_failed"
    SSH_HOST_KEY = "ssh.host_key"
    DEVICE_COMMAND_ERROR = "device.command_error"
    DEVICE_NOT_AUTHORIZED = "device.not_authorized"
    DEVICE_OUTPUT_TOO_LARGE = "device.output_too_large"
    STORE_ERROR = "store.error"
    STORE_DISK_FULL = "store.disk_full"
    RUN_LOCKED = "run.locked"
    RUN_STOPPED = "run.stopped"
    RUN_DEADLINE = "run.deadline"
    ENROLL_FAILED = "enroll.failed"
    INSIGHTS_ERROR = "insights.error"
    INSIGHTS_POLICY_INVALID = "insights.policy_invalid"
    #: Verification was turned off (--no-verify): never trusted.
    VERIFY_SKIPPED = "verify.skipped"
    #: The verifier refused to judge (no anchors, an unreadable signer, a verifier bug).
    VERIFY_ERROR = "verify.error"
    #: Not trusted, and the verifier named no error finding (defence in depth).
    VERIFY_UNTRUSTED = "verify.untrusted"
    #: The webhook configuration (collector/webhooks.py) is missing a part or unsafe.
    WEBHOOKS_INVALID = "webhooks.config_invalid"


class CollectorError(Exception):
    """Root of every error the collector raises on purpose."""

    #: Whether retrying the same operation later can succeed.
    transient: bool = False
    #: Stable short code used in summaries, metrics and syslog.
    reason: str = Reason.COLLECTOR_ERROR


class InventoryError(CollectorError):
    """The inventory file is missing, malformed or inconsistent (names file, line and field)."""

    reason = Reason.INVENTORY_INVALID


class ConnectError(CollectorError):
    """TCP or SSH transport could not be set up (refused, reset, unreachable, protocol)."""

    transient = True
    reason = Reason.SSH_CONNECT_FAILED


class ConnectionLostError(ConnectError):
    """The connection was cut after the command started: mid-output, or before its exit status."""

    reason = Reason.SSH_CONNECTION_LOST


class RateLimitedError(ConnectError):
    """The device refused the SSH session, as `ssh server rate-limit` does."""

    reason = Reason.SSH_RATE_LIMITED


class DeadlineError(CollectorError):
    """A connect, authentication, command or whole-device deadline passed."""

    transient = True
    reason = Reason.SSH_TIMEOUT


class AuthError(CollectorError):
    """The device rejected the credentials; retrying would only lock the account."""

    reason = Reason.SSH_AUTH_FAILED


class HostKeyError(CollectorError):
    """The device's SSH host key is unknown or differs from the pinned one."""

    reason = Reason.SSH_HOST_KEY


class CommandError(CollectorError):
    """The device answered the command with an error (`% ...`) or in a form we cannot use."""

    reason = Reason.DEVICE_COMMAND_ERROR


class OutputTooLargeError(CommandError):
    """The device printed more than the collector is willing to hold."""

    reason = Reason.DEVICE_OUTPUT_TOO_LARGE


class StoreError(CollectorError):
    """The envelope store cannot be written or read as expected."""

    reason = Reason.STORE_ERROR


class DiskFullError(StoreError):
    """The file system holding the store has no room left (ENOSPC, a quota, SQLITE_FULL): what
    was stored before is intact; freeing space is the fix, not repairing anything."""

    reason = Reason.STORE_DISK_FULL


class LockError(CollectorError):
    """Another collection run holds the store's run lock."""

    reason = Reason.RUN_LOCKED


class EnrollError(CollectorError):
    """Enrollment could not obtain, confirm or store a device's root certificate."""

    reason = Reason.ENROLL_FAILED
