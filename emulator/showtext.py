"""Show-command texts of an emulated IOS XR 7.x router, rendered from its `DeviceFacts`.

Each function returns the command's body as IOS XR prints it after the timestamp line (the
shell prints `timestamp_line(now)` first). The dossier's `version` and `platform` members are
exactly `show_version(...)` and `show_platform(...)`, so the two always agree.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from emulator.cli_state import LineInfo
from emulator.facts import XR_RELEASES, DeviceFacts, FactsError, xr_time

__all__ = [
    "license_udi",
    "show_configuration_commit_list",
    "show_install_active",
    "show_inventory",
    "show_platform",
    "show_reboot_history",
    "show_ssh",
    "show_users",
    "show_version",
    "timestamp_line",
]

_WORKSPACE = "/auto/srcarchive17/prod/{version}/{family}/ws"
# `show platform` column widths (Node, Type, State; then Config state)
_PLATFORM_COLUMNS = (18, 26, 18)
# `show configuration commit list` column widths (SNo., Label/ID, User, Line, Client)
_COMMIT_COLUMNS = (5, 22, 10, 20, 12)
# `show reboot history` column widths (No, Time, Cause Code)
_REBOOT_COLUMNS = (7, 30, 12)
_INVENTORY_PID_WIDTH = 18
# `show users` columns (marker, Line, User, Service, Conns, Idle) then Location
_USERS_COLUMNS = (3, 16, 21, 9, 5)
# `show ssh` columns (id, chan, pty, location, state, userid, host, ver, authentication)
_SSH_COLUMNS = (5, 5, 8, 16, 16, 10, 22, 4, 18)
_UPTIME_UNITS = (("year", 365 * 86_400), ("week", 7 * 86_400), ("day", 86_400), ("hour", 3_600), ("minute", 60))

# A release outside the table (after `upgrade_package` of the boot image) still prints a build.
_UNKNOWN_BUILD = ("Mon Jan  1 00:00:00 UTC 2024", "xrbuild", "iox-ucs-001")


def timestamp_line(now: float) -> str:
    """The line every show command prints first: `Sun Oct 20 13:07:24.136 UTC`."""
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    return f"{moment:%a %b %d %H:%M:%S}.{moment.microsecond // 1000:03d} UTC\n"


def license_udi(facts: DeviceFacts) -> str:
    """`UDI: PID:NCS-55A1-24H,SN:FOC2104R15R\\n` (the dossier's license-udi)."""
    return f"UDI: PID:{facts.platform_pid},SN:{facts.chassis_serial}\n"


def _uptime(seconds: float) -> str:
    remaining = max(0, int(seconds))
    parts = []
    for unit, size in _UPTIME_UNITS:
        value, remaining = divmod(remaining, size)
        if value:
            parts.append(f"{value} {unit}{'' if value == 1 else 's'}")
    return " ".join(parts) or "0 minutes"


def show_version(facts: DeviceFacts, *, now: float | None = None) -> str:
    """`show version`; uptime counts from the active RP's last reboot to `now` (default: clock)."""
    version = facts.xr_version
    built_on, built_by, built_host = XR_RELEASES.get(version, _UNKNOWN_BUILD)
    moment = time.time() if now is None else now
    uptime = _uptime(moment - facts.last_boot_time())
    return (
        f"Cisco IOS XR Software, Version {version}\n"
        f"Copyright (c) 2013-{built_on[-4:]} by Cisco Systems, Inc.\n"
        "\n"
        "Build Information:\n"
        f" Built By     : {built_by}\n"
        f" Built On     : {built_on}\n"
        f" Built Host   : {built_host}\n"
        f" Workspace    : {_WORKSPACE.format(version=version, family=facts.family)}\n"
        f" Version      : {version}\n"
        " Location     : /opt/cisco/XR/packages/\n"
        f" Label        : {version}\n"
        "\n"
        f"{facts.profile.processor}\n"
        f"System uptime is {uptime}\n"
        "\n"
    )


def _row(widths: tuple[int, ...], *cells: str) -> str:
    # Every column but the last is padded (and cut, so a long value cannot shift the next one).
    padded = [cell[: width - 1].ljust(width) for cell, width in zip(cells, widths)]
    return ("".join(padded) + cells[-1]).rstrip() + "\n"


def show_platform(facts: DeviceFacts) -> str:
    """`show platform`: every node and module with its type and state."""
    lines = [_row(_PLATFORM_COLUMNS, "Node", "Type", "State", "Config state"), "-" * 80 + "\n"]
    profile = facts.profile
    rp_seen = 0
    for card in profile.cards:
        if card.role == "rp":
            role = "Active" if rp_seen == 0 else "Standby"
            rp_seen += 1
            card_type = profile.pid if profile.fixed else card.pid
            lines.append(_row(_PLATFORM_COLUMNS, card.slot, f"{card_type}({role})", "IOS XR RUN", "NSHUT"))
            rack_slot = card.slot.rsplit("/", 1)[0]
            for npu in range(profile.npus):
                lines.append(_row(_PLATFORM_COLUMNS, f"{rack_slot}/NPU{npu}", "Slice", "UP", ""))
        elif card.role == "lc":
            lines.append(_row(_PLATFORM_COLUMNS, card.slot, card.pid, "IOS XR RUN", "NSHUT"))
        else:
            lines.append(_row(_PLATFORM_COLUMNS, card.slot, card.pid, "OPERATIONAL", "NSHUT"))
    return "".join(lines)


def show_inventory(facts: DeviceFacts) -> str:
    """`show inventory`: NAME/DESCR and PID/VID/SN per entity, blank line between entities."""
    blocks = [
        f'NAME: "{e.name}", DESCR: "{e.descr}"\n'
        f"PID: {e.pid.ljust(_INVENTORY_PID_WIDTH)}, VID: {e.vid}, SN: {e.sn}\n"
        for e in facts.inventory
    ]
    return "\n".join(blocks) + "\n"


def show_install_active(facts: DeviceFacts) -> str:
    """`show install active`: the active packages of every node (eXR layout)."""
    package_lines = []
    for pkg in facts.packages:
        if pkg is facts.boot_package:
            package_lines.append(f"        {pkg.name}-{pkg.version} version={pkg.version} [Boot image]\n")
        else:
            package_lines.append(f"        {pkg.name}-{pkg.version}\n")
    out = []
    for node in facts.nodes:
        kind = "RP" if "/RP" in node else "LC"
        out.append(f"Node {node} [{kind}] [SDR: Owner]\n")
        out.append("    Boot Partition: xr_lv0\n")
        out.append(f"    Active Packages: {len(facts.packages)}\n")
        out.extend(package_lines)
        out.append("\n")
    return "".join(out)


def show_reboot_history(facts: DeviceFacts, node: str | None = None) -> str:
    """`show reboot history [location <node>]`: the node's reboots, oldest first.

    Raises FactsError for a node the device does not have.
    """
    target = node or facts.active_node
    if target not in facts.reboots:
        raise FactsError(f"% Node {target} not found: expected one of {', '.join(facts.nodes)}")
    lines = [_row(_REBOOT_COLUMNS, "No", "Time", "Cause Code", "Reason")]
    for reboot in facts.reboots[target]:
        lines.append(
            _row(_REBOOT_COLUMNS, f"{reboot.no:02d}", xr_time(reboot.time), reboot.cause_code, reboot.reason)
        )
    return "".join(lines)


def show_configuration_commit_list(facts: DeviceFacts) -> str:
    """`show configuration commit list`: rollback points, newest first (SNo. 1 is the newest)."""
    lines = [
        _row(_COMMIT_COLUMNS, "SNo.", "Label/ID", "User", "Line", "Client", "Time Stamp"),
        _row(_COMMIT_COLUMNS, "~~~~", "~~~~~~~~", "~~~~", "~~~~", "~~~~~~", "~~~~~~~~~~"),
    ]
    for sno, commit in enumerate(reversed(facts.commits), start=1):
        lines.append(
            _row(
                _COMMIT_COLUMNS,
                str(sno),
                commit.label or commit.commit_id,
                commit.user_id,
                commit.line,
                commit.client_name,
                xr_time(commit.time),
            )
        )
    return "".join(lines)


def show_users(lines: list[LineInfo], *, current: int, now: float) -> str:
    """`show users`: one row per SSH session, `*` on the one asking."""
    out = ["   Line            User                 Service  Conns   Idle        Location"]
    for info in lines:
        idle = max(0, int(now - info.last_input))
        hours, rest = divmod(idle, 3600)
        marker = "*" if info.session_id == current else ""
        widths = _USERS_COLUMNS
        out.append(f"{marker:<{widths[0]}}{info.line:<{widths[1]}}{info.username:<{widths[2]}}{'ssh':<{widths[3]}}"
                   f"{0:>{widths[4]}}  {hours:02d}:{rest // 60:02d}:{rest % 60:02d}     {info.host}".rstrip())
    return "\n".join(out) + "\n"


def show_ssh(lines: list[LineInfo]) -> str:
    """`show ssh`: the incoming SSH sessions (this emulator makes no outgoing ones)."""
    headings = ("id", "chan", "pty", "location", "state", "userid", "host", "ver", "authentication")
    header = "".join(f"{h:<{w}}" for h, w in zip(headings, _SSH_COLUMNS)) + "connection type"
    rows = []
    for info in lines:
        # The authentication method is not kept per session: shown as '-'.
        values = (info.session_id, 1, info.line, "0/RP0/CPU0", "SESSION_OPEN", info.username, info.host, "v2", "-")
        rows.append("".join(f"{str(v):<{w}}" for v, w in zip(values, _SSH_COLUMNS)) + "Command-Line-Interface")
    return "\n".join(["SSH version : Cisco-2.0", "", header, "-" * len(header), "Incoming sessions", *rows, "",
                      "Outgoing sessions", ""]) + "\n"
