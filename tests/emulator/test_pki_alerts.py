"""PKI certificate expiry alerts (issue 19 item 3): syslog and SNMP traps on the device clock.

Received by independent receivers: a plain UDP socket for syslog and Debian's `snmptrapd` for
traps. The devices are configured over SSH as an operator would; the device clock is moved with
`Device.advance_clock`, which sends what falls due before it returns.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import paramiko
import pytest

from emu_ssh import connect, run, strip_timestamp
from emulator import alerts as alerts_mod
from emulator.alerts import (
    ALERT_DAYS,
    EXCLUSIONS,
    AlertScheduler,
    Candidate,
    exclusion,
    latest_due_point,
)
from emulator.device import SYSTEM_TRUSTPOINT
from emulator.fleet import Fleet
from emulator.pki.screens import format_serial

DAY = 86400.0
TRAP_OID = ".1.3.6.1.4.1.9.9.854.1.2"  # CISCO-PKI-MIB ciscoPkiCertExpiryAlert
COMMUNITY = "dossier-alerts"
RECEIVE_TIMEOUT = 10.0


# --- receivers ----------------------------------------------------------------------------------


class SyslogReceiver:
    """A UDP socket on loopback: everything the devices send to `logging 127.0.0.1 port N`."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def drain(self) -> list[str]:
        """Datagrams already delivered (loopback delivery is done when `sendto` returns)."""
        self.sock.setblocking(False)
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536).decode("utf-8"))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


class TrapReceiver:
    """Debian's snmptrapd in the foreground on a loopback port, its log read line by line."""

    def __init__(self, workdir: Path, binary: str) -> None:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()  # snmptrapd binds it next; another process taking it in between fails below
        conf = workdir / "snmptrapd.conf"
        conf.write_text(f"authCommunity log {COMMUNITY}\n", "utf-8")
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            [binary, "-f", "-Lo", "-On", "-C", "-c", str(conf), "-m", "", "-M", "/dev/null",
             f"udp:127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_for(lambda text: "NET-SNMP version" in text, what="snmptrapd's start-up line")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def text(self) -> str:
        with self.changed:
            return "".join(self.lines)

    def wait_for(self, predicate: Any, *, what: str) -> str:
        deadline = time.monotonic() + RECEIVE_TIMEOUT
        with self.changed:
            while not predicate("".join(self.lines)):
                if self.process.poll() is not None and not self.reader.is_alive():
                    raise AssertionError(f"snmptrapd exited ({self.process.returncode}) before {what}: "
                                         f"{''.join(self.lines)[-2000:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} from snmptrapd in {RECEIVE_TIMEOUT} s: "
                                         f"{''.join(self.lines)[-2000:]}")
                self.changed.wait(left)
            return "".join(self.lines)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture()
def syslog() -> Iterator[SyslogReceiver]:
    receiver = SyslogReceiver()
    yield receiver
    receiver.close()


@pytest.fixture()
def traps(tmp_path: Path) -> Iterator[TrapReceiver]:
    binary = shutil.which("snmptrapd") or shutil.which("snmptrapd", path="/usr/sbin")
    if binary is None:
        pytest.skip("snmptrapd is not installed (Debian package snmptrapd; .ci/run installs it)")
    receiver = TrapReceiver(tmp_path, binary)
    yield receiver
    receiver.close()


# --- SSH configuration --------------------------------------------------------------------------


def configure(entry: Any, lines: list[str]) -> str:
    """Type `configure`, the lines, `commit` and `end` in an interactive shell (XR or XE)."""
    client = connect(entry)
    try:
        channel = client.invoke_shell(width=200, height=50)
        channel.settimeout(30)
        prompt = re.compile(rf"{re.escape(entry.name)}(\([\w-]+\))?#\s*$")
        buffer = _read_until(channel, prompt, "")
        transcript = []
        for line in ["configure terminal", *lines, "commit", "end"]:
            channel.sendall((line + "\r").encode())
            buffer = _read_until(channel, prompt, "")
            transcript.append(buffer)
        return "".join(transcript)
    finally:
        client.close()


def _read_until(channel: paramiko.Channel, prompt: re.Pattern[str], text: str) -> str:
    deadline = time.monotonic() + 30
    while not prompt.search(text.replace("\r\n", "\n")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no prompt in {text[-500:]!r}")
        text += channel.recv(65536).decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n")


def alert_lines(entry: Any, syslog: SyslogReceiver, traps: TrapReceiver | None = None) -> list[str]:
    lines = [
        f"logging 127.0.0.1 port {syslog.port}",
        "snmp-server traps pki",
    ]
    if traps is not None:
        lines.append(f"snmp-server host 127.0.0.1 traps version 2c {COMMUNITY} udp-port {traps.port}")
    return lines


def move_clock_to(device: Any, moment: float) -> None:
    device.advance_clock(moment - device.clock.timestamp())


# --- the done-when ----------------------------------------------------------------------


def test_leaf_seven_days_from_expiry_alerts_by_syslog_and_trap_sudi_stays_silent(
    tmp_path: Path, syslog: SyslogReceiver, traps: TrapReceiver
) -> None:
    with Fleet(state_dir=tmp_path / "state", devices=2, platform="mixed", provisioned=True,
               files=50, seed=19) as fleet:
        xr, xe = fleet.devices
        for entry in (xr, xe):
            transcript = configure(entry, alert_lines(entry, syslog, traps))
            assert "% Invalid" not in transcript and "% Incomplete" not in transcript, transcript
        running = strip_timestamp(run(xr, "show running-config"))
        assert f"logging 127.0.0.1 port {syslog.port}\n" in running
        assert f"snmp-server host 127.0.0.1 traps version 2c {COMMUNITY} udp-port {traps.port}\n" in running
        assert strip_timestamp(run(xr, "show running-config snmp-server traps")) == "snmp-server traps pki\n"

        # The XE device's SUDI certificate, 7 days from its end: seen by the timer, excluded.
        sudi = xe.device.xe_identity().certificate
        move_clock_to(xe.device, sudi.not_valid_after_utc.timestamp() - 7 * DAY)
        assert [exclusion(c) for c in xe.device.alerts.candidates()] == ["sudi"]
        assert syslog.drain() == []

        # The XR leaf, 7 days from its end: a syslog message and a trap.
        _, leaf = xr.device.certificates(SYSTEM_TRUSTPOINT)
        serial = format_serial(leaf.serial_number)
        move_clock_to(xr.device, leaf.not_valid_after_utc.timestamp() - 7 * DAY)
        received = syslog.drain()
        leaf_messages = [m for m in received if "Certificate Type= ID" in m]
        assert len(leaf_messages) == 1, received
        assert re.fullmatch(
            r"<185>\d+: xr-0001 RP/0/RP0/CPU0:\w{3} [ \d]\d \d\d:\d\d:\d\d\.\d{3} UTC: cepki\[\d+\]: "
            r"%SECURITY-CEPKI-1-CERT_EXPIRING_ALERT : Certificate expiring WITHIN A WEEK\. "
            rf"Trustpoint Name= {SYSTEM_TRUSTPOINT}, Certificate Type= ID, Serial Number= {serial}, "
            r"Issuer Name= .*CN=xr-0001-ca, Subject name= .*CN=xr-0001-leaf, "
            r"Time Left= [67] days, \d+ hours, \d+ minutes, \d+ seconds",
            leaf_messages[0],
        ), leaf_messages[0]
        assert all("xe-0002" not in m for m in received)
        text = traps.wait_for(lambda t: f'"{serial}"' in t, what="trap for the leaf")
        assert TRAP_OID in text
        assert f'"{SYSTEM_TRUSTPOINT}"' in text and '"ID"' in text

        # One more day on the XR device: the daily alert arrives after anything the XE device
        # sent, so a SUDI trap would be in snmptrapd's log by then.
        xr.device.advance_clock(DAY)
        text = traps.wait_for(lambda t: t.count(f'"{serial}"') >= 2, what="second daily trap for the leaf")
        assert '"SUDI"' not in text
        assert all("SUDI" not in m and "xe-0002" not in m for m in syslog.drain())

        shown = strip_timestamp(run(xr, "show logging"))
        assert shown.startswith("Syslog logging: enabled (0 messages dropped, 0 flushes, 0 overruns)\n")
        assert f"    Logging to 127.0.0.1 vrf default port {syslog.port}," in shown
        assert "\nLog Buffer (2097152 bytes):\n\n" in shown
        buffered = [line for line in shown.splitlines() if "CERT_EXPIRING_ALERT" in line and "Type= ID" in line]
        assert len(buffered) == 2 and buffered[0].startswith("RP/0/RP0/CPU0:"), shown


# --- schedule and exclusions --------------------------------------------------------------------


def test_schedule_sixty_days_then_weekly_then_daily(tmp_path: Path, syslog: SyslogReceiver) -> None:
    with Fleet(state_dir=tmp_path / "state", devices=1, provisioned=True, files=50) as fleet:
        entry = fleet.devices[0]
        configure(entry, alert_lines(entry, syslog))
        _, leaf = entry.device.certificates(SYSTEM_TRUSTPOINT)
        end = leaf.not_valid_after_utc.timestamp()
        move_clock_to(entry.device, end - 62 * DAY)
        seen: list[tuple[int, str]] = []
        for days_left in range(61, -2, -1):
            move_clock_to(entry.device, end - days_left * DAY + 60)  # a minute past each day mark
            for message in syslog.drain():
                if "Certificate Type= ID" in message:
                    seen.append((days_left, message))
        assert [days for days, _ in seen] == [60, 53, 46, 39, 32, 25, 18, 11, 7, 6, 5, 4, 3, 2, 1]
        assert all(m.startswith("<188>") and "CERT_EXPIRING_WARNING" in m for _, m in seen[:8])
        assert "Certificate expiring WITHIN 60 DAYS." in seen[0][1]
        assert all(m.startswith("<185>") and "CERT_EXPIRING_ALERT" in m for _, m in seen[8:])


def test_due_points_follow_the_seed() -> None:
    assert ALERT_DAYS == (60, 53, 46, 39, 32, 25, 18, 11, 7, 6, 5, 4, 3, 2, 1)
    cases = {61: None, 60: 60, 59.5: 60, 53: 53, 12: 18, 11: 11, 8: 11, 7: 7, 6.9: 7, 0.5: 1, 0: None, -3: None}
    for days, expected in cases.items():
        assert latest_due_point(days * DAY) == expected, days
    # one second either side of the 60-day mark
    assert latest_due_point(60 * DAY + 1) is None
    assert latest_due_point(60 * DAY - 1) == 60


def test_each_exclusion_has_its_reason(tmp_path: Path) -> None:
    with Fleet(state_dir=tmp_path / "state", devices=1, provisioned=True, files=50) as fleet:
        ca_cert, leaf = fleet.devices[0].device.certificates(SYSTEM_TRUSTPOINT)
    assert ca_cert is not None and leaf is not None
    cases = {
        "sudi": Candidate("SUDI", "ID", leaf, source="sudi"),
        "trustpool": Candidate("trustpool", "CA", ca_cert, source="trustpool"),
        "clone": Candidate("tp-clone", "ID", leaf, clone=True),
        "ca-only": Candidate("tp", "CA", ca_cert, has_router_certificate=False),
        "usage-keys": Candidate("tp", "ID", leaf, usage_keys=True),
    }
    assert set(cases) == set(EXCLUSIONS)
    for reason, candidate in cases.items():
        assert exclusion(candidate) == reason
    assert exclusion(Candidate("tp", "ID", leaf)) is None
    assert exclusion(Candidate("tp", "CA", ca_cert, has_router_certificate=True)) is None


def test_ca_certificate_without_router_certificate_is_silent(tmp_path: Path, syslog: SyslogReceiver) -> None:
    with Fleet(state_dir=tmp_path / "state", devices=1, provisioned=True, files=50) as fleet:
        entry = fleet.devices[0]
        configure(entry, alert_lines(entry, syslog))
        ca_cert, _ = entry.device.certificates(SYSTEM_TRUSTPOINT)
        assert ca_cert is not None
        entry.device.store_certificate(SYSTEM_TRUSTPOINT, "router", None)  # the CA alone is left
        move_clock_to(entry.device, ca_cert.not_valid_after_utc.timestamp() - 7 * DAY)
        assert [exclusion(c) for c in entry.device.alerts.candidates() if c.source != "trustpool"] == ["ca-only"]
        assert syslog.drain() == []


def test_rfc5424_format_and_address_checks(tmp_path: Path, syslog: SyslogReceiver) -> None:
    with Fleet(state_dir=tmp_path / "state", devices=1, provisioned=True, files=50) as fleet:
        entry = fleet.devices[0]
        transcript = configure(entry, ["logging syslog.example.com port 514", *alert_lines(entry, syslog),
                                       "logging format rfc5424"])
        assert "% Invalid host address 'syslog.example.com': expected an IPv4 or IPv6 address" in transcript
        _, leaf = entry.device.certificates(SYSTEM_TRUSTPOINT)
        move_clock_to(entry.device, leaf.not_valid_after_utc.timestamp() - 3 * DAY)
        messages = [m for m in syslog.drain() if "Type= ID" in m]
        assert len(messages) == 1
        assert re.match(r"<185>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z xr-0001 cepki \d+ - - "
                        r"%SECURITY-CEPKI-1-CERT_EXPIRING_ALERT : ", messages[0]), messages[0]


def test_fleet_tick_checks_only_devices_that_are_due(tmp_path: Path, syslog: SyslogReceiver) -> None:
    with Fleet(state_dir=tmp_path / "state", devices=3, provisioned=True, files=50) as fleet:
        first = fleet.devices[0]
        configure(first, alert_lines(first, syslog))
        scheduler = AlertScheduler(lambda: [entry.device.alerts for entry in fleet.devices])
        assert scheduler.tick() == 0  # certificates read once, next due points worked out
        assert not any(entry.device.alerts.due() for entry in fleet.devices)
        _, leaf = first.device.certificates(SYSTEM_TRUSTPOINT)
        # The clock moves without the advance_clock hook (as real time passes): the tick finds it.
        first.device.clock.offset += (leaf.not_valid_after_utc - first.device.clock.now() - timedelta(days=5)).total_seconds()
        assert [entry.device.alerts.due() for entry in fleet.devices] == [True, False, False]
        assert scheduler.tick() == 2  # the leaf and its CA certificate
        assert len([m for m in syslog.drain() if "Type= ID" in m]) == 1
        assert scheduler.tick() == 0


def test_trust_pool_certificates_are_candidates_the_exclusion_keeps_silent(tmp_path: Path,
                                                                          syslog: SyslogReceiver) -> None:
    """The pool (the built-in bundle of emulated vendor CAs) is looked at and never alerted on,
    even at 7 days before one of its certificates expires."""
    with Fleet(state_dir=tmp_path / "state", devices=1, provisioned=True, files=50) as fleet:
        entry = fleet.devices[0]
        configure(entry, alert_lines(entry, syslog))
        pool = [c for c in entry.device.alerts.candidates() if c.source == "trustpool"]
        assert pool and all(exclusion(c) == "trustpool" for c in pool)
        move_clock_to(entry.device, min(c.certificate.not_valid_after_utc for c in pool).timestamp() - 7 * DAY)
        assert not [line for line in syslog.drain() if "trustpool" in line.lower()]


def test_fleet_tick_skips_a_device_whose_lock_is_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device busy past LOCK_WAIT_SECONDS is left for the next tick; the others are checked."""
    monkeypatch.setattr(alerts_mod, "LOCK_WAIT_SECONDS", 0.05)
    with Fleet(state_dir=tmp_path / "state", devices=2, provisioned=True, files=50) as fleet:
        busy, idle = (entry.device for entry in fleet.devices)
        scheduler = AlertScheduler(lambda: [entry.device.alerts for entry in fleet.devices])
        assert scheduler.tick() == 0
        for device in (busy, idle):
            _, leaf = device.certificates(SYSTEM_TRUSTPOINT)
            device.clock.offset += (leaf.not_valid_after_utc - device.clock.now() - timedelta(days=5)).total_seconds()
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with busy.lock:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert held.wait(10)
            assert scheduler.tick() == 2  # the idle device's leaf and CA; the busy one skipped
            assert busy.alerts.due() and not idle.alerts.due()
        finally:
            release.set()
            holder.join()
        assert scheduler.tick() == 2  # the busy device's turn came on the next tick
