"""PKI certificate expiry alerts: the seed's schedule, syslog to `logging` hosts, SNMP traps.

The seed ("Expiry Notification for PKI Certificate"): a certificate nearing its end date is
announced 60 days before, then every week, then every day in the last week, as a syslog message
(`%SECURITY-CEPKI-1-CERT_EXPIRING_ALERT`, warning mode while more than a week is left) and, with
`snmp-server traps pki`, as an SNMP trap. Not for SUDI, trust pool, clone, CA-only or usage-key
certificates. Everything runs on the device clock: a check happens when the clock is advanced
(`Device.advance_clock`) and on the fleet's one `AlertScheduler` tick.

Choices where the seed is silent, each made once here:

- Syslog goes out as IOS XR sends it by default (the BSD layout, `logging format bsd`):
  ``<PRI>SEQ: HOST RP/0/RP0/CPU0:Mon dd hh:mm:ss.mmm UTC: cepki[PID]: %SECURITY-... : text``,
  one UDP datagram per message, facility local7. The host name is always there (as with
  `logging hostnameprefix`): every emulated device sends from the same loopback address.
  `logging format rfc5424` switches to RFC 5424 (``<PRI>1 TIMESTAMP HOST cepki PID - - MSG``).
- Warning-mode messages are `%SECURITY-CEPKI-4-CERT_EXPIRING_WARNING : Certificate expiring
  WITHIN <N> DAYS.`; the seed shows only the alert-mode (last week) message.
- The trap is CISCO-PKI-MIB's `ciscoPkiCertExpiryAlert` (1.3.6.1.4.1.9.9.854.1.2), SNMPv2c,
  its six objects indexed by `certChainLabel` = ``<trustpoint>/<ID|CA>``.
- A clock jump past several due points sends one alert (the latest), not a burst.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

from cryptography import x509

from .pki.screens import format_dn, format_serial

__all__ = [
    "ALERT_DAYS",
    "EXCLUSIONS",
    "AlertError",
    "AlertScheduler",
    "Candidate",
    "ExpiryAlerts",
    "address_store",
    "check_address",
    "exclusion",
    "latest_due_point",
]

log = logging.getLogger(__name__)

DAY = 86400.0
# Seed: first notice 60 days before the end, then weekly until a week before, then daily.
FIRST_ALERT_DAYS = 60
LAST_WEEK_DAYS = 7
ALERT_DAYS: tuple[int, ...] = tuple(range(FIRST_ALERT_DAYS, LAST_WEEK_DAYS, -7)) + tuple(range(LAST_WEEK_DAYS, 0, -1))

# Why a certificate gets no alert (the seed's "Restrictions for PKI Credentials Expiry Alerts").
EXCLUSIONS: dict[str, str] = {
    "sudi": "a Secure Unique Device Identifier (SUDI) certificate",
    "trustpool": "a trust pool certificate (the pool has its own expiry alerts)",
    "clone": "a trustpoint clone",
    "ca-only": "a CA certificate with no router certificate in its trustpoint",
    "usage-keys": "a certificate of usage keys",
}

SEVERITY_ALERT = 1
SEVERITY_WARNING = 4
FACILITY_LOCAL7 = 23
SYSLOG_PORT = 514
SNMP_TRAP_PORT = 162
PROCESS = "cepki"
PROCESS_ID = 312  # an emulated process ID: fixed, so messages compare across runs
NODE = "RP/0/RP0/CPU0"
# `logging buffered <bytes>`: IOS XR's range; the default is its 2 MiB buffer.
DEFAULT_BUFFER_BYTES = 2_097_152
# The fleet tick: certificates are checked at most once a minute of real time; the check of an
# idle device is one comparison, so 1,000 devices cost nothing between due points.
TICK_SECONDS = 60.0
# How long a tick waits for a busy device's lock before leaving that device for the next tick.
LOCK_WAIT_SECONDS = 1.0

# CISCO-PKI-MIB (ciscoMgmt 854): the expiry notification and the certChainEntry columns it carries.
SYS_UPTIME_OID = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SNMP_TRAP_OID_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
CISCO_PKI_CERT_EXPIRY_ALERT = (1, 3, 6, 1, 4, 1, 9, 9, 854, 1, 2)
CERT_CHAIN_ENTRY = (1, 3, 6, 1, 4, 1, 9, 9, 854, 2, 2, 1, 1)
CERT_COLUMNS = {  # column numbers in certChainEntry, in the notification's OBJECTS order
    "certSerialNum": 2,
    "certSubName": 9,
    "certIssuerName": 3,
    "certType": 6,
    "certTpLabel": 8,
    "certRemainingLife": 7,
}


class AlertError(Exception):
    """A logging or SNMP setting the emulator cannot use; `message` is the text to print."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_address(text: str) -> str:
    """An IPv4 or IPv6 address for `logging` / `snmp-server host`; names are refused (the
    emulator resolves no names, so it never sends anywhere it was not told literally)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise AlertError(f"% Invalid host address {text!r}: expected an IPv4 or IPv6 address") from None


def address_store(arg: str) -> Callable[[str, dict[str, Any]], str]:
    """A configuration row's `store`: check the row's address argument, keep the line."""

    def store(line: str, args: dict[str, Any]) -> str:
        check_address(args[arg])
        return line

    return store


@dataclass(frozen=True)
class Candidate:
    """A certificate the expiry timer looks at, with what decides whether it is excluded."""

    trustpoint: str
    cert_type: str  # "ID" (router certificate) or "CA", as the seed's message and the MIB say
    certificate: x509.Certificate
    source: str = "trustpoint"  # "trustpoint", "sudi" or "trustpool"
    has_router_certificate: bool = True
    usage_keys: bool = False
    clone: bool = False  # no command makes a trustpoint clone in the emulator yet

    @property
    def key(self) -> str:
        return f"{self.trustpoint}/{self.cert_type}/{self.certificate.serial_number:x}"


def exclusion(candidate: Candidate) -> str | None:
    """The EXCLUSIONS id that keeps `candidate` silent, or None when it is alerted on."""
    if candidate.source == "sudi":
        return "sudi"
    if candidate.source == "trustpool":
        return "trustpool"
    if candidate.clone:
        return "clone"
    if candidate.cert_type == "CA" and not candidate.has_router_certificate:
        return "ca-only"
    if candidate.usage_keys:
        return "usage-keys"
    return None


def latest_due_point(remaining_seconds: float) -> int | None:
    """The smallest ALERT_DAYS entry already reached (days left), or None (not yet, or expired)."""
    if remaining_seconds <= 0:
        return None
    reached = [days for days in ALERT_DAYS if remaining_seconds <= days * DAY]
    return min(reached) if reached else None


def next_due_remaining(remaining_seconds: float) -> float | None:
    """Seconds before the end at which the next due point falls (None: no more points)."""
    ahead = [days * DAY for days in ALERT_DAYS if days * DAY < remaining_seconds]
    return max(ahead) if ahead else None


def format_time_left(seconds: float) -> str:
    """`1 days, 23 hours, 59 minutes, 41 seconds`, the seed's layout."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days} days, {hours} hours, {minutes} minutes, {secs} seconds"


@dataclass(frozen=True)
class Alert:
    """One notification: what the syslog message and the trap both say."""

    candidate: Candidate
    days_point: int
    remaining_seconds: float
    when: datetime

    @property
    def severity(self) -> int:
        return SEVERITY_ALERT if self.days_point <= LAST_WEEK_DAYS else SEVERITY_WARNING

    def message(self) -> str:
        cert = self.candidate.certificate
        if self.severity == SEVERITY_ALERT:
            head = "%SECURITY-CEPKI-1-CERT_EXPIRING_ALERT : Certificate expiring WITHIN A WEEK."
        else:
            head = (f"%SECURITY-CEPKI-4-CERT_EXPIRING_WARNING : Certificate expiring WITHIN "
                    f"{self.days_point} DAYS.")
        return (f"{head} Trustpoint Name= {self.candidate.trustpoint}, Certificate Type= {self.candidate.cert_type}, "
                f"Serial Number= {format_serial(cert.serial_number)}, Issuer Name= {format_dn(cert.issuer)}, "
                f"Subject name= {format_dn(cert.subject)}, Time Left= {format_time_left(self.remaining_seconds)}")


def _bsd_time(when: datetime) -> str:
    """`Jul  7 20:16:14.834 UTC`: the day space-padded, as IOS XR's syslog lines have it."""
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S}.{when.microsecond // 1000:03d} UTC"


def syslog_datagram(alert: Alert, *, hostname: str, sequence: int, rfc5424: bool) -> bytes:
    """The UDP payload for a `logging` host (see the module docstring for the layouts)."""
    pri = FACILITY_LOCAL7 * 8 + alert.severity
    if rfc5424:
        stamp = alert.when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{alert.when.microsecond // 1000:03d}Z"
        return f"<{pri}>1 {stamp} {hostname} {PROCESS} {PROCESS_ID} - - {alert.message()}".encode()
    return f"<{pri}>{sequence}: {hostname} {NODE}:{_bsd_time(alert.when)}: {PROCESS}[{PROCESS_ID}]: {alert.message()}".encode()


def trap_datagram(alert: Alert, *, community: str, uptime_centiseconds: int) -> bytes:
    """An SNMPv2c Trap-PDU carrying ciscoPkiCertExpiryAlert, built and BER-encoded by pysnmp."""
    try:
        from pyasn1.codec.ber import encoder
        from pysnmp.proto import api
    except ImportError as error:  # a broken install: say what is missing, not a bare traceback
        raise AlertError(f"% SNMP traps need the pysnmp package (pip install pysnmp): {error}") from None
    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    cert = alert.candidate.certificate
    label = f"{alert.candidate.trustpoint}/{alert.candidate.cert_type}".encode()
    index = (len(label), *label)
    values = {
        "certSerialNum": format_serial(cert.serial_number),
        "certSubName": format_dn(cert.subject),
        "certIssuerName": format_dn(cert.issuer),
        "certType": alert.candidate.cert_type,
        "certTpLabel": alert.candidate.trustpoint,
        "certRemainingLife": str(int(alert.remaining_seconds)),
    }
    varbinds = [
        (v2c.ObjectIdentifier(SYS_UPTIME_OID), v2c.TimeTicks(uptime_centiseconds % 2**32)),
        (v2c.ObjectIdentifier(SNMP_TRAP_OID_OID), v2c.ObjectIdentifier(CISCO_PKI_CERT_EXPIRY_ALERT)),
    ] + [
        (v2c.ObjectIdentifier(CERT_CHAIN_ENTRY + (column,) + index), v2c.OctetString(values[name]))
        for name, column in CERT_COLUMNS.items()
    ]
    pdu = v2c.SNMPv2TrapPDU()
    v2c.apiTrapPDU.set_defaults(pdu)
    v2c.apiTrapPDU.set_varbinds(pdu, varbinds)
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, community)
    v2c.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


def _send_udp(payload: bytes, address: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.sendto(payload, (address, port))


def trustpool_certificates(device: Any) -> list[x509.Certificate]:
    """The trust pool's certificates (the built-in bundle and what was downloaded), each a
    candidate the `trustpool` exclusion keeps silent. Read as `show crypto ca trustpool` shows
    them, without the automatic update (no download from a timer). The trust pool is the IOS XR
    personality's: an IOS XE device has none here."""
    if device.platform == "iosxe":
        return []
    from .pki.trustpool import active_entries, load_downloaded
    from .trustpool_commands import built_in_bundle

    return [entry.certificate
            for entry in active_entries(built_in_bundle(device), load_downloaded(device.folder / "trustpool"))]


class ExpiryAlerts:
    """One device's expiry timer: schedule state, the local log buffer, and the senders.

    `device` is an `emulator.device.Device` (not imported: the device imports this module)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.buffer: deque[str] = deque()
        self._buffer_bytes = 0
        self.logged = 0
        self.dropped = 0
        self.sent_to: dict[tuple[str, int], int] = {}
        self._next_due: float | None = None  # device-clock time of the next due point
        self._known = False  # False: certificates changed, so _next_due must be worked out again

    # -- what to look at ---------------------------------------------------------------------
    def candidates(self) -> list[Candidate]:
        """Every certificate on the device, excluded ones included (tests check why they are)."""
        device = self.device
        found: list[Candidate] = []
        for name in device.trustpoint_names_with_certs():
            ca_cert, router_cert = device.certificates(name)
            usage_keys = self._usage_keys(name)
            if router_cert is not None:
                found.append(Candidate(name, "ID", router_cert, usage_keys=usage_keys))
            if ca_cert is not None:
                found.append(Candidate(name, "CA", ca_cert, has_router_certificate=router_cert is not None,
                                       usage_keys=usage_keys))
        if device.platform == "iosxe":
            found.append(Candidate("SUDI", "ID", device.xe_identity().certificate, source="sudi"))
        found += [Candidate("trustpool", "CA", cert, source="trustpool") for cert in trustpool_certificates(device)]
        return found

    def _usage_keys(self, trustpoint: str) -> bool:
        node = self.device.running.find(f"crypto ca trustpoint {trustpoint}")
        value = node.value("keypair") if node is not None else None
        if not value:
            return False
        kind, label = value.split(None, 1)
        keypair = self.device.keys.get((kind, label))
        return keypair is not None and keypair.usage == "usage"

    # -- the timer ---------------------------------------------------------------------------
    def invalidate(self) -> None:
        """Certificates or the configuration changed: work the next due point out again."""
        self._known = False

    def due(self) -> bool:
        """Cheap: is a check worth doing now (the scheduler asks every device each tick)?"""
        if not self._known:
            return True
        return self._next_due is not None and self.device.clock.timestamp() >= self._next_due

    def check(self, *, lock_timeout: float | None = None) -> list[Alert] | None:
        """Send what is due at the device's current time; return the alerts sent.

        With `lock_timeout`, wait at most that long for the device's lock and return None (the
        check skipped, to be tried on a later tick) when the device stays busy."""
        device = self.device
        if not device.lock.acquire(timeout=-1 if lock_timeout is None else lock_timeout):
            return None
        try:
            return self._check_locked()
        finally:
            device.lock.release()

    def _check_locked(self) -> list[Alert]:
        device = self.device
        now = device.clock.now()
        sent_points: dict[str, int] = device.info.setdefault("pki_expiry_alerts", {})
        alerts: list[Alert] = []
        next_due: float | None = None
        current = self.candidates()
        for stale in set(sent_points) - {c.key for c in current}:
            del sent_points[stale]  # a certificate replaced or cleared: forget its alerts
        for candidate in current:
            if exclusion(candidate) is not None:
                continue
            end = candidate.certificate.not_valid_after_utc
            remaining = (end - now).total_seconds()
            point = latest_due_point(remaining)
            if point is not None and sent_points.get(candidate.key, FIRST_ALERT_DAYS + 1) > point:
                sent_points[candidate.key] = point
                alerts.append(Alert(candidate, point, remaining, now))
            upcoming = next_due_remaining(remaining)
            if upcoming is not None:
                at = end.timestamp() - upcoming
                next_due = at if next_due is None else min(next_due, at)
        self._next_due, self._known = next_due, True
        for alert in alerts:
            self._deliver(alert)
        return alerts

    # -- delivery ----------------------------------------------------------------------------
    def _deliver(self, alert: Alert) -> None:
        device = self.device
        self.logged += 1
        self._append(f"{NODE}:{_bsd_time(alert.when)}: {PROCESS}[{PROCESS_ID}]: {alert.message()}")
        rfc5424 = device.running.value("logging format") == "rfc5424"
        for address, port in self.syslog_hosts():
            payload = syslog_datagram(alert, hostname=device.hostname, sequence=self.logged, rfc5424=rfc5424)
            self._send(payload, address, port)
        if device.running.find("snmp-server traps pki") is not None:
            uptime = int((device.clock.timestamp() - float(device.info.get("created", 0.0))) * 100)
            for address, port, community in self.trap_hosts():
                self._send(trap_datagram(alert, community=community, uptime_centiseconds=uptime), address, port)

    def _send(self, payload: bytes, address: str, port: int) -> None:
        try:
            _send_udp(payload, address, port)
        except OSError as error:
            # UDP has no delivery promise; a host the device cannot reach loses the message,
            # as on a router, and the drop is counted in `show logging`.
            self.dropped += 1
            log.warning("%s: alert to %s:%d not sent: %s", self.device.name, address, port, error)
            return
        self.sent_to[(address, port)] = self.sent_to.get((address, port), 0) + 1

    def _append(self, line: str) -> None:
        limit = self.buffer_bytes()
        self.buffer.append(line)
        self._buffer_bytes += len(line) + 1
        while self._buffer_bytes > limit and self.buffer:
            self._buffer_bytes -= len(self.buffer.popleft()) + 1

    # -- configuration -----------------------------------------------------------------------
    def buffer_bytes(self) -> int:
        value = self.device.running.value("logging buffered")
        return int(value) if value else DEFAULT_BUFFER_BYTES

    def syslog_hosts(self) -> list[tuple[str, int]]:
        """(address, port) of each `logging <address> [vrf <vrf>] [port <port>]` line."""
        hosts = []
        for node in self.device.running.lines("logging"):
            words = node.line.split()
            if len(words) < 2 or words[1] in ("buffered", "format"):
                continue
            port = int(words[words.index("port") + 1]) if "port" in words else SYSLOG_PORT
            hosts.append((words[1], port))
        return hosts

    def trap_hosts(self) -> list[tuple[str, int, str]]:
        """(address, port, community) of each `snmp-server host <a> traps version 2c <c> [udp-port <p>]`."""
        hosts = []
        for node in self.device.running.lines("snmp-server host"):
            words = node.line.split()
            port = int(words[words.index("udp-port") + 1]) if "udp-port" in words else SNMP_TRAP_PORT
            hosts.append((words[2], port, words[6]))
        return hosts

    def show_logging(self) -> str:
        """`show logging`: the header IOS XR prints, then the local buffer, oldest first."""
        count = self.logged
        lines = [
            f"Syslog logging: enabled ({self.dropped} messages dropped, 0 flushes, 0 overruns)",
            "    Console logging: Disabled",
            "    Monitor logging: level debugging, 0 messages logged",
            f"    Trap logging: level informational, {count} messages logged",
        ]
        for address, port in self.syslog_hosts():
            sent = self.sent_to.get((address, port), 0)
            lines.append(f"    Logging to {address} vrf default port {port}, {sent} message lines logged")
        lines += [
            f"    Buffer logging: level debugging, {count} messages logged",
            "",
            f"Log Buffer ({self.buffer_bytes()} bytes):",
            "",
        ]
        return "\n".join(lines + list(self.buffer)) + "\n"


class AlertScheduler:
    """One thread for a whole fleet: each tick, check the devices whose next due point passed."""

    def __init__(self, timers: Callable[[], Iterable[ExpiryAlerts]], *, interval: float = TICK_SECONDS) -> None:
        self._timers = timers
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pki-expiry-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def tick(self) -> int:
        """Check every device that is due; return how many alerts went out.

        A device whose lock stays busy for LOCK_WAIT_SECONDS (a command holding it) is skipped
        this tick and checked on a later one: one device can never stop the fleet's alerts."""
        sent = 0
        for timer in self._timers():
            try:
                if timer.due():
                    alerts = timer.check(lock_timeout=LOCK_WAIT_SECONDS)
                    if alerts is None:
                        log.debug("%s: busy; PKI expiry alert check left for the next tick", timer.device.name)
                        continue
                    sent += len(alerts)
            except Exception:  # noqa: BLE001 - one device's damaged state must not stop the others' timers
                log.exception("%s: PKI expiry alert check failed", timer.device.name)
        return sent

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.tick()
