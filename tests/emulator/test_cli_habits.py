"""The CLI habits operators' scripts rely on, driven by the clients those scripts use: paging
(OpenSSH in a PTY, netmiko), timestamps, `show clock`, `commit confirmed` (netmiko), `configure
exclusive` and per-session candidates (two sessions), running-config layout, pipes, sessions."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from emu_ssh import Shell, generate_client_key, private_key_text, run, strip_timestamp
from emulator.fleet import Fleet

PAGE_LINES = 60
MORE = " --More-- "


@pytest.fixture()
def xr(tmp_path: Path) -> Iterator[Any]:
    """One unprovisioned device with a 60-line file on its harddisk (a long output to page)."""
    with Fleet(state_dir=tmp_path / "state", devices=1, files=20) as fleet:
        device = fleet.devices[0]
        pages = device.device.harddisk_path("pages.txt")
        pages.parent.mkdir(parents=True, exist_ok=True)
        pages.write_text("".join(f"line {n:02d}\n" for n in range(1, PAGE_LINES + 1)))
        yield device


def _known_hosts(device: Any, folder: Path) -> Path:
    path = folder / "known_hosts"
    path.write_text(device.host_key_line + "\n")
    return path


# --- paging -----------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")
def test_openssh_pty_pages_at_24_lines_space_return_and_q(xr, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    key, public_line = generate_client_key()
    key_file = tmp_path / "id_rsa"
    key_file.write_text(private_key_text(key))
    key_file.chmod(0o600)
    xr.device.add_authorized_key(xr.username, public_line.split()[1])
    child = pexpect.spawn(
        "ssh", ["-tt", "-F", "/dev/null", "-p", str(xr.port), "-i", str(key_file), "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={_known_hosts(xr, tmp_path)}", "-o", "StrictHostKeyChecking=yes",
                "-o", "IdentitiesOnly=yes", f"{xr.username}@{xr.host}"],
        encoding="utf-8", timeout=20, dimensions=(24, 80))
    try:
        prompt = re.escape(f"RP/0/RP0/CPU0:{xr.name}#")
        child.expect(prompt)
        child.sendline("more harddisk:pages.txt")
        child.expect(re.escape(MORE))
        first = child.before.replace("\r\n", "\n")
        # The timestamp line and 22 lines of the file fill 23 rows; ` --More-- ` is the 24th.
        assert "line 22\n" in first and "line 23" not in first
        child.send(" ")  # a page more: 23 lines
        child.expect(re.escape(MORE))
        second = child.before
        assert second.startswith("\b" * len(MORE) + " " * len(MORE) + "\b" * len(MORE))  # the prompt erased
        assert "line 23" in second and "line 45" in second and "line 46" not in second
        child.send("\r")  # a line more
        child.expect(re.escape(MORE))
        assert "line 46" in child.before and "line 47" not in child.before
        child.send("q")  # the rest is dropped, the prompt comes back
        child.expect(prompt)
        assert "line 47" not in child.before
        child.sendline("terminal length 0")
        child.expect(prompt)
        child.sendline("more harddisk:pages.txt")
        child.expect(prompt)
        assert MORE not in child.before and f"line {PAGE_LINES}" in child.before
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_exec_channel_is_not_paged(xr) -> None:
    output = run(xr, "more harddisk:pages.txt")
    assert MORE not in output and strip_timestamp(output).count("\n") == PAGE_LINES


def test_paramiko_shell_pages_at_terminal_length(xr) -> None:
    with Shell(xr, paging=True) as shell:
        shell.cmd("terminal length 10")
        text = shell.cmd("more harddisk:pages.txt", expect=re.escape(MORE))
        assert "line 08" in text and "line 09" not in text  # timestamp + 8 lines, then the prompt
        shell.send("q")
        shell.read_until(r"#$")


def _netmiko(device: Any, folder: Path, device_type: str = "cisco_xr") -> Any:
    netmiko = pytest.importorskip("netmiko")
    return netmiko.ConnectHandler(
        device_type=device_type, host=device.host, port=device.port, username=device.username,
        password=device.password, ssh_strict=True, system_host_keys=False, alt_host_keys=True,
        alt_key_file=str(_known_hosts(device, folder)), use_keys=False, allow_agent=False,
        fast_cli=False, conn_timeout=20,
    )


def test_netmiko_send_command_sets_terminal_length_0_and_gets_everything(xr, tmp_path: Path) -> None:
    with _netmiko(xr, tmp_path) as connection:
        output = connection.send_command("more harddisk:pages.txt")
    assert MORE not in output and f"line {PAGE_LINES}" in output


def test_script_that_forgets_terminal_length_0_sees_more(xr, tmp_path: Path) -> None:
    """A generic screen-scraper that never sends `terminal length 0` stops at ` --More-- `,
    as it would on a real router (where waiting for the prompt hangs)."""
    with _netmiko(xr, tmp_path, "generic") as connection:
        output = connection.send_command_timing("more harddisk:pages.txt", last_read=0.5, read_timeout=10)
        # netmiko strips the ` --More-- ` text itself; what is left stops after a page, no prompt.
        assert output.rstrip().endswith("line 22"), output[-200:]
        connection.write_channel(" ")
        rest = connection.read_until_pattern(pattern=r"line 45")
        assert "line 23" in rest and "line 46" not in rest
        connection.write_channel("q")
        connection.read_until_pattern(pattern=r"#")


# --- timestamps and the clock ---------------------------------------------------------------


def test_no_timestamp_drops_the_line_and_show_clock_reads_the_device_clock(xr) -> None:
    xr.device.advance_clock(86_400 * 400)  # a device clock well away from the host's
    with Shell(xr) as shell:
        stamped = shell.cmd("show clock").split("\n")
        shell.cmd("terminal exec prompt no-timestamp")
        plain = shell.cmd("show clock").split("\n")
    assert re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d\.\d{3} UTC", stamped[1])
    clock = plain[1]
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} UTC \w{3} \w{3} \d\d \d{4}", clock), clock
    assert clock.endswith(xr.device.clock.now().strftime("%Y"))
    assert plain[2].startswith("RP/0/RP0/CPU0:")  # nothing between the clock and the prompt


# --- commit confirmed (netmiko) --------------------------------------------------------------


def _running(device: Any, section: str) -> str:
    return strip_timestamp(run(device, f"show running-config {section}"))


def test_netmiko_commit_confirmed_rolls_back_unless_confirmed(xr, tmp_path: Path) -> None:
    with _netmiko(xr, tmp_path) as connection:
        connection.send_config_set(["snmp-server traps pki"])
        connection.commit(confirm=True, confirm_delay=30)
        assert "snmp-server traps pki" in _running(xr, "snmp-server")
        xr.device.advance_clock(31)  # not confirmed within 30 s of device time: rolled back
        assert _running(xr, "snmp-server") == "% No such configuration item(s)\n"
        assert "Rollback" in strip_timestamp(run(xr, "show configuration commit list"))

        connection.send_config_set(["ssh server rate-limit 600"])
        connection.commit(confirm=True, confirm_delay=30)
        connection.commit()  # confirms the trial
        xr.device.advance_clock(60)
        assert "ssh server rate-limit 600" in _running(xr, "ssh")
        connection.exit_config_mode()


def test_commit_confirmed_minutes_rolls_back_in_real_time(xr) -> None:
    """The rollback needs no command to trigger it: a timer runs for the trial's length."""
    xr.device.clock.rate = 600.0  # a minute of device time in 0.1 s
    with Shell(xr) as shell:
        shell.cmd("configure")
        shell.cmd("hostname trial")
        assert shell.cmd("commit confirmed minutes 1").rstrip().endswith("RP/0/RP0/CPU0:trial(config)#")
    deadline = time.monotonic() + 5
    while xr.device.hostname != xr.name and time.monotonic() < deadline:
        time.sleep(0.05)
    assert xr.device.hostname == xr.name


# --- configure exclusive, per-session candidates (scrapli) ---------------------------------


def _scrapli(device: Any, folder: Path) -> Any:
    scrapli = pytest.importorskip("scrapli")
    return scrapli.Cli(
        definition_file_or_name="cisco_iosxr", host=device.host, port=device.port,
        auth_options=scrapli.AuthOptions(username=device.username, password=device.password),
        transport_options=scrapli.TransportBinOptions(known_hosts_path=str(_known_hosts(device, folder)),
                                                      enable_strict_key=True),
    )


def test_configure_exclusive_locks_out_other_sessions(xr, tmp_path: Path) -> None:
    with _scrapli(xr, tmp_path) as owner, Shell(xr) as other:
        other.cmd("configure")
        other.cmd("domain name other.example")
        owner.enter_mode(requested_mode="configuration_exclusive")
        refused = Shell(xr)
        try:
            text = refused.cmd("configure")
            assert "The configuration is currently locked by another user" in text
            assert refused.cmd("").rstrip().endswith(f"RP/0/RP0/CPU0:{xr.name}#")  # still in exec mode
        finally:
            refused.close()
        assert "locked by another user" in other.cmd("commit")  # already in config: commit refused
        result = owner.send_inputs(["hostname locked", "commit"], requested_mode="configuration_exclusive")
        assert not result.failed, result.result
        owner.enter_mode(requested_mode="privileged_exec")  # `end`: the lock is released
        assert other.cmd("commit").rstrip().endswith("RP/0/RP0/CPU0:locked(config)#")
    assert "domain name other.example" in _running(xr, "domain")


def test_another_sessions_commit_is_not_this_sessions_change(xr, tmp_path: Path) -> None:
    with _scrapli(xr, tmp_path) as first, Shell(xr) as second:
        first.enter_mode(requested_mode="configuration")
        second.cmd("configure")
        second.cmd("domain name second.example")
        second.cmd("commit")
        changes = first.send_input("show configuration", requested_mode="configuration").result
        assert "domain name" not in changes
        assert not first.send_inputs(["hostname first", "commit"], requested_mode="configuration").failed
        first.enter_mode(requested_mode="privileged_exec")
        assert "Uncommitted" not in second.cmd("end")
    # The first session's commit applied its own edit only: the second's domain is kept.
    assert _running(xr, "domain") == "domain name second.example\n"
    assert _running(xr, "hostname") == "hostname first\n"


# --- show running-config, pipes, sessions ---------------------------------------------------


def test_running_config_has_separators_seed_order_and_errors(xr) -> None:
    with Shell(xr) as shell:
        shell.cmd("configure")
        for line in ("line default", "exec-timeout 0 0", "exit", "ssh server rate-limit 600", "netconf-yang agent",
                     "ssh", "exit", "ssh server v2", "commit", "end"):
            shell.cmd(line)
        invalid = shell.cmd("show running-config nonsense")
    body = strip_timestamp(run(xr, "show running-config"))
    lines = body.splitlines()
    assert lines[:4] == ["Building configuration...", lines[1], lines[2], "!"] and lines[-1] == "end"
    # The seed's layouts: `ssh server ...` before `! line default`, `netconf-yang agent` before
    # `domain name`, every submode block between `!` lines.
    assert "ssh server rate-limit 600\nssh server v2\n!\nline default\n exec-timeout 0 0\n!\n" in body
    assert "!\nnetconf-yang agent\n ssh\n!\ndomain name" in body
    assert body.index(f"hostname {xr.name}") < body.index("username ")
    assert "% Invalid input detected at '^' marker." in invalid
    caret = next(line for line in invalid.split("\n") if line.strip() == "^")
    assert caret.index("^") == len(f"RP/0/RP0/CPU0:{xr.name}#show running-config ")
    assert _running(xr, "snmp-server") == "% No such configuration item(s)\n"


def test_count_and_quoted_alternation_in_include(xr) -> None:
    assert strip_timestamp(run(xr, "more harddisk:pages.txt | count")) == f"Number of lines which match regexp = {PAGE_LINES}\n"
    assert strip_timestamp(run(xr, "more harddisk:pages.txt | count 5$")) == "Number of lines which match regexp = 6\n"
    assert strip_timestamp(run(xr, 'more harddisk:pages.txt | include "line 07|line 42"')) == "line 07\nline 42\n"


def test_show_users_and_show_ssh_list_the_sessions(xr) -> None:
    with Shell(xr) as first, Shell(xr) as second:
        users = second.cmd("show users")
        ssh = first.cmd("show ssh")
    rows = [line for line in users.split("\n") if re.match(r"[* ]\s+vty\d", line)]
    assert len(rows) == 2 and sum(row.startswith("*") for row in rows) == 1
    assert all(xr.username in row and "127.0.0.1" in row for row in rows)
    assert "Line            User" in users
    assert "SSH version : Cisco-2.0" in ssh and "Incoming sessions" in ssh
    assert ssh.count("SESSION_OPEN") >= 2


def test_a_session_closed_from_a_finalizer_while_the_lines_are_being_read_does_not_deadlock() -> None:
    """A Session's line is let go by a garbage-collector finalizer, which can run in a thread
    that is inside `CliState` holding its lock (an allocation there triggers the collection):
    `close_line` must never wait for that lock. Found as a rare hang of a new shell in CI."""
    import threading

    from emulator.cli_state import CliState

    state = CliState()
    first = state.open_line("admin", "127.0.0.1", pty=True)
    done = threading.Event()

    def finalizer_inside_the_lock() -> None:
        with state._guard:  # what the collector's thread holds when the finalizer fires
            state.close_line(first.session_id)
        done.set()

    worker = threading.Thread(target=finalizer_inside_the_lock, daemon=True)
    worker.start()
    assert done.wait(5), "close_line waited for the lock its own thread holds"
    assert state.lines() == []  # taken off at the next look
