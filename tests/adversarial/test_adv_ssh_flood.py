"""A device that floods its SSH output (stderr, or both streams, past the SSH window) cannot
exhaust the collector's memory: the two streams are counted together as they arrive, the poll
fails with "output exceeded N bytes", and the fleet's other devices are collected as usual."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Iterator

import paramiko
import pytest
from click.testing import CliRunner

from collector.errors import OutputTooLargeError
from collector.inventory import Device, load_inventory
from collector.ssh import MAX_OUTPUT_BYTES, run_command
from collector_fakes import FakeDevice, FakeFleet
from dossier_cli.main import cli
from emulator.faults import Fault
from emulator.fleet import Fleet
from verifier.policy import MAX_ENVELOPE_BYTES
from verifier.profiles._common import MAX_OUTPUT_BYTES as MAX_PROFILE_OUTPUT_BYTES

MiB = 1024 * 1024
#: Before the fix a stderr flood grew the process by ~180 MB/s until the command deadline.
#: After it a session holds at most the cap (stdout kept, stderr counted and dropped) plus
#: what is in flight: allow 64 MiB over the cap for the interpreter, emulator and SSH buffers.
RSS_SLACK_BYTES = 64 * MiB

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="peak RSS is read from /proc/self/status (Linux)")


def _reset_peak_rss() -> int:
    """Start a new peak-RSS window (clear_refs 5 resets VmHWM); returns the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def _peak_rss() -> int:
    return _status_kib("VmHWM") * 1024


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match, f"no {field} in /proc/self/status"
    return int(match.group(1))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(state_dir=tmp_path_factory.mktemp("flood"), devices=2, provisioned=True,
               key_type="ecdsa-p256", files=20, seed=31) as running:
        yield running


def _device(fleet: Fleet, tmp_path: Path, index: int = 0) -> Device:
    inventory = tmp_path / "inventory.yaml"
    fleet.write_inventory(inventory)
    return load_inventory(inventory).devices[index]


def test_the_cap_is_what_the_verifier_accepts() -> None:
    # The XR envelope bound; IOS XE outputs have a smaller one, so the larger serves both.
    assert MAX_OUTPUT_BYTES == MAX_ENVELOPE_BYTES
    assert MAX_OUTPUT_BYTES >= MAX_PROFILE_OUTPUT_BYTES


@pytest.mark.parametrize("stdout", [False, True], ids=["stderr", "stderr-and-stdout"])
def test_flood_fails_the_poll_and_memory_stays_bounded(fleet: Fleet, tmp_path: Path, stdout: bool) -> None:
    target = fleet.devices[0]
    fleet.set_fault(target.name, Fault.FLOOD_STDERR, stdout=1 if stdout else 0, seconds=20)
    try:
        device = _device(fleet, tmp_path)
        before = _reset_peak_rss()
        with pytest.raises(OutputTooLargeError, match=f"output exceeded {MAX_OUTPUT_BYTES} bytes") as caught:
            run_command(device, "show version")
        growth = _peak_rss() - before
    finally:
        fleet.clear_faults(target.name)
    assert "stdout and stderr together" in str(caught.value)
    assert growth < MAX_OUTPUT_BYTES + RSS_SLACK_BYTES, f"RSS grew {growth / MiB:.0f} MiB"


def test_stderr_flood_with_a_small_cap_keeps_nothing_past_it(fleet: Fleet, tmp_path: Path) -> None:
    target = fleet.devices[0]
    fleet.set_fault(target.name, Fault.FLOOD_STDERR, seconds=20)
    try:
        before = _reset_peak_rss()
        with pytest.raises(OutputTooLargeError, match=f"output exceeded {4 * MiB} bytes"):
            run_command(_device(fleet, tmp_path), "show version", max_output_bytes=4 * MiB)
        growth = _peak_rss() - before
    finally:
        fleet.clear_faults(target.name)
    assert growth < 4 * MiB + RSS_SLACK_BYTES, f"RSS grew {growth / MiB:.0f} MiB"


def test_flooding_device_fails_and_the_others_are_collected(fleet: Fleet, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    fleet.write_inventory(inventory)
    trust = tmp_path / "trust"
    enrolled = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(trust),
                                        "--trust-on-first-use", "--json"])
    assert enrolled.exit_code == 0, enrolled.output
    flooding, fine = fleet.devices
    fleet.set_fault(flooding.name, Fault.FLOOD_STDERR, stdout=1, seconds=20)
    try:
        result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "s"),
                                          "--trust-store", str(trust), "--json"])
    finally:
        fleet.clear_faults(flooding.name)
    outcomes = {o["device"]: o for o in json.loads(result.stdout)["devices"]}
    assert outcomes[fine.name]["status"] == "trusted", outcomes[fine.name]
    assert outcomes[flooding.name]["status"] == "failed"
    assert outcomes[flooding.name]["reason"] == "device.output_too_large"
    assert f"output exceeded {MAX_OUTPUT_BYTES} bytes" in outcomes[flooding.name]["message"]


def _stderr_then_stdout(stderr_bytes: int, output: bytes):
    """A fair device (it waits for window space) that warns at length on stderr, then answers."""

    def handle(command: str, channel: paramiko.Channel) -> None:
        chunk = b"w" * 32_000
        for _ in range(stderr_bytes // len(chunk)):
            channel.sendall_stderr(chunk)
        channel.sendall(output)
        channel.send_exit_status(0)
        channel.shutdown_write()
        channel.close()

    return handle


def test_stderr_beyond_the_ssh_window_is_read_not_left_to_stall(tmp_path: Path) -> None:
    # paramiko's window is 2 MiB: unread stderr used to stop a fair device before its answer.
    fake = FakeDevice("xr-0001", _stderr_then_stdout(6 * MiB, b"the answer\n"))
    with FakeFleet([fake]) as fakes:
        path = fakes.write_inventory(tmp_path / "inv.yaml", password_dir=tmp_path / "pw",
                                     extra="defaults:\n  timeouts: {command: 5}\n")
        result = run_command(load_inventory(path).devices[0], "show x")
    assert result.output == b"the answer\n"


def test_stdout_and_stderr_count_together(tmp_path: Path) -> None:
    fake = FakeDevice("xr-0001", _stderr_then_stdout(640_000, b"x" * 400_000))
    with FakeFleet([fake]) as fakes:
        path = fakes.write_inventory(tmp_path / "inv.yaml", password_dir=tmp_path / "pw")
        with pytest.raises(OutputTooLargeError, match="output exceeded 1000000 bytes"):
            run_command(load_inventory(path).devices[0], "show x", max_output_bytes=1_000_000)
