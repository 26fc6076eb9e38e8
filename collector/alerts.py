"""Syslog alerts (untrusted envelope, failing device, certificate expiry) and Prometheus metrics.

Each alert is also a webhook event when the sink has a `WebhookSender` (collector/webhooks.py):
one place decides what is alerted, syslog and webhooks both carry it.

The expiry schedule follows the seed's PKI alert notification: first at 60 days, then weekly
while more than a week is left (warning), then daily in the last week (alert, modelled on
`%SECURITY-CEPKI-1-CERT_EXPIRING_ALERT`). Each slot of that schedule is sent once per
certificate, however often the device is polled; the last slot sent lives in the device state.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import math
import os
import socket
import stat
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from verifier.chain import format_name

from .store import write_file_atomically

if TYPE_CHECKING:
    from .webhooks import WebhookSender

__all__ = [
    "FIRST_EXPIRY_NOTICE_DAYS",
    "LAST_WEEK_DAYS",
    "AlertSink",
    "expiry_slot",
    "render_metrics",
    "write_metrics",
]

#: Seed: "The notification is sent 60 days before the expiry of the certificate."
FIRST_EXPIRY_NOTICE_DAYS = 60
#: Seed: weekly "until a week before the expiry", then "every day until the certificate expiry".
LAST_WEEK_DAYS = 7
#: The highest TCP/UDP port number.
MAX_PORT = 65535
#: Alerts kept in `AlertSink.sent`: `dossier serve` shares one sink across every run of its
#: collector loop, so the list must not grow for as long as the service runs.
MAX_KEPT_ALERTS = 10_000


def expiry_slot(days_left: int) -> str | None:
    """Which notification of the schedule `days_left` falls in (None: nothing due yet)."""
    if days_left > FIRST_EXPIRY_NOTICE_DAYS:
        return None
    if days_left > LAST_WEEK_DAYS:
        return f"weekly-{(FIRST_EXPIRY_NOTICE_DAYS - days_left) // 7}"
    if days_left < 0:
        return f"expired-{-days_left}"
    return f"daily-{days_left}"


def _serial(cert: x509.Certificate) -> str:
    text = f"{cert.serial_number:X}"
    text = ("0" + text) if len(text) % 2 else text
    return ":".join(text[i:i + 2] for i in range(0, len(text), 2))


def _time_left(cert: x509.Certificate, now: datetime) -> str:
    left = max(0, int((cert.not_valid_after_utc - now).total_seconds()))
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{days} days, {hours} hours, {minutes} minutes, {seconds} seconds"


@dataclass
class SentAlert:
    severity: int  # syslog severity: 1 alert, 3 error, 4 warning
    message: str


class _SysLogHandler(logging.handlers.SysLogHandler):
    """SysLogHandler that remembers a failed send (so the caller knows the alert did not go out)
    and says so in one line on stderr per outage, not a traceback per alert."""

    failed = False
    _warned = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.failed = True
        if not self._warned:
            self._warned = True
            error = sys.exc_info()[1]
            sys.stderr.write(f"warning: syslog send failed ({error}); alerts are not delivered until "
                             "it is back (certificate-expiry notices are sent at a later poll)\n")

    def sent_ok(self) -> None:
        self._warned = False  # the next outage is reported again


def _check_listening(path: str) -> None:
    """Connect to the socket as SysLogHandler will (datagram, else stream). A socket this user
    may not write to is a configuration error (ValueError); one nobody listens on (the daemon
    restarting, a container's leftover /dev/log) only a warning: collecting is the main job, and
    expiry notices are sent once the daemon is back."""
    problems: list[OSError] = []
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(path)
                return
            except OSError as exc:
                problems.append(exc)
    if any(exc.errno in (errno.EACCES, errno.EPERM) for exc in problems):
        raise ValueError(f"expected a syslog socket this user may write to at {path}, found it "
                         "refused (permission denied)")
    reasons = "; ".join(exc.strerror or str(exc) for exc in problems)
    sys.stderr.write(f"warning: no syslog daemon listens at {path} ({reasons}); collecting anyway, "
                     "alerts are not delivered until it is back\n")


def _syslog_host_port(address: str) -> tuple[str, int]:
    """HOST:PORT (`[v6]:PORT` too) checked now: a port out of range or a host that does not
    resolve would otherwise be accepted and fail at the first alert, which is then lost."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"expected a syslog address HOST:PORT (UDP) or an absolute socket path, found {address!r}")
    if not 1 <= int(port) <= MAX_PORT:
        raise ValueError(f"expected a syslog UDP port from 1 to {MAX_PORT}, found {port} in {address!r}")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ValueError(f"expected a syslog host name or address that resolves, found {host!r} ({reason})") from exc
    return host, int(port)


class AlertSink:
    """Sends alerts to syslog (when configured) and keeps them in `sent` for summaries and tests."""

    def __init__(self, address: str | None = None, *, facility: int = logging.handlers.SysLogHandler.LOG_LOCAL0,
                 webhooks: WebhookSender | None = None) -> None:
        self.sent: list[SentAlert] = []
        self.webhooks = webhooks
        self._logger: logging.Logger | None = None
        self._sending = threading.Lock()
        if address:
            handler = self._handler(address, facility)
            handler.setFormatter(logging.Formatter("dossier-collect: %(message)s"))
            logger = logging.getLogger(f"collector.alerts.{id(self)}")
            logger.propagate = False
            logger.setLevel(logging.DEBUG)
            logger.addHandler(handler)
            self._logger = logger

    @staticmethod
    def _handler(address: str, facility: int) -> logging.Handler:
        if address.startswith("/"):
            # SysLogHandler accepts any path and then prints a traceback at every alert (each one
            # lost): refuse a path that is no socket now; warn if nobody listens (_check_listening).
            try:
                is_socket = stat.S_ISSOCK(os.stat(address).st_mode)
            except OSError as exc:
                raise ValueError(f"expected a syslog socket at {address}, found none ({exc.strerror})") from exc
            if not is_socket:
                raise ValueError(f"expected a syslog socket at {address}, found a file that is not a socket")
            _check_listening(address)
            return _SysLogHandler(address=address, facility=facility)
        host, port = _syslog_host_port(address)
        return _SysLogHandler(address=(host, port), facility=facility, socktype=socket.SOCK_DGRAM)

    def close(self) -> None:
        if self.webhooks is not None:
            self.webhooks.close()
        if self._logger is not None:
            for handler in list(self._logger.handlers):
                handler.close()
                self._logger.removeHandler(handler)

    def send(self, severity: int, message: str) -> bool:
        """Send one alert; False if syslog is configured and refused it (it is not in `sent`)."""
        if self._logger is not None:
            # Map syslog severities onto logging levels the SysLogHandler maps back.
            level = {1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR,
                     4: logging.WARNING}.get(severity, logging.INFO)
            handlers = [h for h in self._logger.handlers if isinstance(h, _SysLogHandler)]
            with self._sending:  # one alert at a time: each sees its own failure flag
                for handler in handlers:
                    handler.failed = False
                self._logger.log(level, message)
                if any(handler.failed for handler in handlers):
                    return False
                for handler in handlers:
                    handler.sent_ok()
        self.sent.append(SentAlert(severity, message))
        if len(self.sent) > MAX_KEPT_ALERTS:
            del self.sent[: len(self.sent) - MAX_KEPT_ALERTS]
        return True

    def _hook(self, kind: str, device: str, message: str, details: dict[str, Any], path: str | None = None) -> None:
        if self.webhooks is not None:
            from .webhooks import EventType

            self.webhooks.emit(EventType(kind), device, message, details, path=path)

    def untrusted(self, device: str, reasons: Iterable[str], path: str | None) -> None:
        reasons = list(reasons)
        message = (f"%DOSSIER-3-ENVELOPE_UNTRUSTED : Device= {device}, Reasons= "
                   f"{', '.join(reasons) or 'unknown'}, File= {path}")
        self.send(3, message)
        self._hook("envelope.untrusted", device, message, {"reasons": reasons, "path": path}, path)

    def failed(self, device: str, reason: str, message: str) -> None:
        text = f"%DOSSIER-3-COLLECT_FAILED : Device= {device}, Reason= {reason}, Detail= {message}"
        self.send(3, text)
        self._hook("poll.failed", device, text, {"reason": str(reason), "detail": message})

    def degraded(self, device: str, before: str, after: str, categories: Iterable[str],
                 finding_ids: Iterable[str], path: str | None) -> None:
        """A device's appraisal went from affirming to something worse (collector.insights)."""
        severity = 3 if after == "contraindicated" else 4
        categories, finding_ids = list(categories), sorted(set(finding_ids))
        message = (f"%DOSSIER-{severity}-TRUST_DEGRADED : Device= {device}, Status= {before} -> "
                   f"{after}, Categories= {', '.join(categories) or 'none'}, Findings= "
                   f"{', '.join(finding_ids) or 'none'}, File= {path}")
        self.send(severity, message)
        self._hook("appraisal.degraded", device, message, {"before": before, "after": after, "categories": categories,
                                                           "findings": finding_ids, "path": path}, path)

    def not_attempted(self, device: str, last_attempt: datetime | None, intervals: float) -> None:
        """A device no collector attempted for more than `intervals` intervals (distributed
        collection: a worker or a queue went quiet)."""
        since = last_attempt.isoformat(timespec="seconds") if last_attempt is not None else "never"
        self.send(3, f"%DOSSIER-3-NOT_ATTEMPTED : Device= {device}, Last Attempt= {since}, "
                     f"Expected= at least every {intervals:g} intervals")

    def worker_silent(self, worker: str, last_beat: datetime) -> None:
        """A collector worker stopped heartbeating."""
        self.send(3, f"%DOSSIER-3-WORKER_SILENT : Worker= {worker}, Last Heartbeat= "
                     f"{last_beat.isoformat(timespec='seconds')}")

    def expiry(self, device: str, kind: str, cert: x509.Certificate, state: dict[str, Any],
               now: datetime | None = None) -> bool:
        """Send the schedule's notice for `cert` if one is due and not yet sent; True if sent."""
        now = now or datetime.now(UTC)
        days_left = math.floor((cert.not_valid_after_utc - now).total_seconds() / 86400)
        slot = expiry_slot(days_left)
        if slot is None:
            return False
        key = f"{kind}:{cert.serial_number:x}:{int(cert.not_valid_after_utc.timestamp())}"
        sent_slots: dict[str, str] = state.setdefault("expiry_alerts", {})
        if sent_slots.get(key) == slot:
            return False
        details = (f"Device= {device}, Trustpoint Name= system-trustpoint, Certificate Type= "
                   f"{'CA' if kind == 'root' else 'ID'}, Serial Number= {_serial(cert)}, Issuer Name= "
                   f"{format_name(cert.issuer)}, Subject name= {format_name(cert.subject)}, "
                   f"Time Left= {_time_left(cert, now)}")
        if days_left <= LAST_WEEK_DAYS:
            message = f"%SECURITY-CEPKI-1-CERT_EXPIRING_ALERT : Certificate expiring WITHIN A WEEK. {details}"
            sent = self.send(1, message)
        else:
            message = f"%SECURITY-CEPKI-4-CERT_EXPIRING_WARNING : Certificate expiring in {days_left} days. {details}"
            sent = self.send(4, message)
        if sent:  # not sent (syslog refused it): due again at the next poll
            sent_slots[key] = slot
            # Only once the slot is recorded: a notice syslog refused is sent again, and the
            # webhook with it, so a receiver sees each notice once.
            self._hook("certificate.expiring", device, message, {
                "certificate": kind, "serial": _serial(cert), "days_left": days_left,
                "not_after": cert.not_valid_after_utc.isoformat(), "notice": slot})
        return sent


# --- Prometheus textfile ----------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_METRICS = (
    ("dossier_last_success_timestamp_seconds", "gauge",
     "Unix time of the newest trusted envelope collected from the device."),
    ("dossier_last_poll_timestamp_seconds", "gauge", "Unix time of the last poll, successful or not."),
    ("dossier_last_verdict_trusted", "gauge",
     "1 if the last poll produced a trusted envelope, 0 if untrusted or failed."),
    ("dossier_last_poll_failed", "gauge", "1 if the last poll could not collect an envelope."),
    ("dossier_collection_duration_seconds", "gauge", "Duration of the last poll."),
    ("dossier_envelope_bytes", "gauge", "Size of the last envelope collected."),
    ("dossier_certificate_expiry_days", "gauge", "Days until the device's certificate expires."),
    ("dossier_appraisal_status", "gauge",
     "Last appraisal: 0 affirming, 1 warning, 2 contraindicated (absent when not appraised)."),
    ("dossier_appraisal_degradations_total", "counter",
     "Times the device's appraisal went from affirming to warning or contraindicated."),
)
_APPRAISAL_LEVEL = {"affirming": 0, "warning": 1, "contraindicated": 2}


def render_metrics(states: Mapping[str, Mapping[str, Any]], *, now: datetime | None = None,
                   attempts: Mapping[str, datetime | None] | None = None,
                   not_attempted: Iterable[str] = (), silent_workers: Mapping[str, datetime] | None = None) -> str:
    """node_exporter textfile text from each device's stored state; with distributed collection
    also each device's last attempt, the devices not attempted for too long and the workers
    that stopped heartbeating."""
    now = now or datetime.now(UTC)
    lines: list[str] = []
    if attempts is not None:
        late = set(not_attempted)
        lines += ["# HELP dossier_last_attempt_timestamp_seconds Unix time a collector last began polling the "
                  "device (any outcome).", "# TYPE dossier_last_attempt_timestamp_seconds gauge"]
        lines += [f'dossier_last_attempt_timestamp_seconds{{device="{_escape(device)}"}} {moment.timestamp():.3f}'
                  for device, moment in sorted(attempts.items()) if moment is not None]
        lines += ["# HELP dossier_device_not_attempted 1 if no collector attempted the device for more than two "
                  "intervals.", "# TYPE dossier_device_not_attempted gauge"]
        lines += [f'dossier_device_not_attempted{{device="{_escape(device)}"}} {int(device in late)}'
                  for device in sorted(set(attempts) | late)]
    if silent_workers is not None:
        lines += ["# HELP dossier_worker_silent_since_timestamp_seconds Unix time of the last heartbeat of a "
                  "worker that stopped heartbeating.", "# TYPE dossier_worker_silent_since_timestamp_seconds gauge"]
        lines += [f'dossier_worker_silent_since_timestamp_seconds{{worker="{_escape(worker)}"}} '
                  f'{beat.timestamp():.3f}' for worker, beat in sorted(silent_workers.items())]
    for name, kind, help_text in _METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for device, state in sorted(states.items()):
            label = f'device="{_escape(device)}"'
            if name == "dossier_certificate_expiry_days":
                for cert, days in sorted((state.get("days_to_expiry") or {}).items()):
                    if days is not None:
                        lines.append(f'{name}{{{label},certificate="{_escape(cert)}"}} {days}')
                continue
            value = {
                "dossier_last_success_timestamp_seconds": state.get("last_success_ts"),
                "dossier_last_poll_timestamp_seconds": state.get("last_poll_ts"),
                "dossier_last_verdict_trusted": (None if "last_status" not in state
                                                 else int(state["last_status"] == "trusted")),
                "dossier_last_poll_failed": (None if "last_status" not in state
                                             else int(state["last_status"] == "failed")),
                "dossier_collection_duration_seconds": state.get("last_duration_s"),
                "dossier_envelope_bytes": state.get("last_bytes"),
                "dossier_appraisal_status": _APPRAISAL_LEVEL.get(state.get("appraisal_status")),
                "dossier_appraisal_degradations_total": (state.get("appraisal_degradations", 0)
                                                         if "appraisal_status" in state else None),
            }[name]
            if value is not None:
                lines.append(f"{name}{{{label}}} {value}")
    lines.append(f"# generated {now.isoformat(timespec='seconds')}")
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, states: Mapping[str, Mapping[str, Any]], **distributed: Any) -> None:
    """Write the textfile atomically (node_exporter must never read half a file);
    `distributed`: `render_metrics`'s attempts, not_attempted, silent_workers."""
    path = Path(path)
    write_file_atomically(path, render_metrics(states, **distributed).encode(), replace=True)
