"""One CLI session's configuration session: its own candidate, the exclusive lock, commits.

A session's candidate is the running configuration it started from plus the edits typed in it.
At commit the *edits* are applied to the running configuration as it is then, so a commit made
meanwhile by another session is neither undone nor shown as this session's change.
`commit confirmed` starts a trial: unless a `commit` confirms it before the deadline (on the
device clock, which tests move), the configuration goes back to what it was before the trial.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import facts as facts_mod
from .cli_state import CliState, LineInfo, TrialCommit, cli_state
from .config import ConfigNode

__all__ = ["ConfigEdit", "ConfigSession", "LockedError", "expire_trial", "locked_message"]

log = logging.getLogger(__name__)

# `commit confirmed` without a time: the trial lasts this long, as on IOS XR.
DEFAULT_TRIAL_SECONDS = 600
# The configuration session ids IOS XR shows (`show configuration sessions`) start here.
CONFIG_SESSION_BASE = 0x00001000
# What IOS XR's configuration manager says when the exclusive lock is held by another session.
LOCKED_CONDITION = "'CFGMGR' detected the 'warning' condition 'The configuration is currently locked by another user'"


class LockedError(Exception):
    """The configuration is locked by another session's `configure exclusive`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ConfigEdit:
    """One configuration line typed in a session: set (`line`) or removed (`line` None)."""

    path: tuple[str, ...]  # keys of the submodes it was typed in
    key: str
    line: str | None
    submode: bool = False

    def apply(self, root: ConfigNode) -> None:
        try:
            node = root.walk_path(list(self.path))
        except KeyError:
            return  # its submode is gone (removed later in the same session): nothing to change
        if self.line is None:
            node.remove(self.key)
        else:
            node.set(self.line, self.key, submode=self.submode)


def locked_message(holder: LineInfo, what: str) -> str:
    """The session table and the refusal IOS XR prints while `holder` has the lock."""
    started = datetime.fromtimestamp(time.time() - (time.monotonic() - holder.started), tz=timezone.utc)
    return (
        "Current Configuration Session  Line       User     Date                     Lock\n"
        f"{holder.config_id:<31}{holder.line:<11}{holder.username:<9}{started:%a %b %d %H:%M:%S %Y} *\n"
        f"% Failed to {what}: {LOCKED_CONDITION}\n"
    )


class ConfigSession:
    """The configuration state of one CLI session between `configure` and `end`."""

    def __init__(self, device: Any, username: str, line: LineInfo, *, exclusive: bool) -> None:
        self.device = device
        self.username = username
        self.line = line
        self.cli: CliState = cli_state(device)
        holder = self.cli.locked_against(line.session_id)
        if holder is not None:
            raise LockedError(locked_message(holder, "lock configuration" if exclusive else "enter configuration mode"))
        if exclusive and not self.cli.take_lock(line.session_id):
            holder = self.cli.locked_against(line.session_id)
            raise LockedError(locked_message(holder, "lock configuration") if holder else "% Failed to lock configuration\n")
        self.exclusive = exclusive
        line.config_id = f"{CONFIG_SESSION_BASE:08x}-{line.session_id:08x}"
        self.edits: list[ConfigEdit] = []
        self.candidate = device.running.clone()

    def edit(self, edit: ConfigEdit) -> ConfigNode | None:
        """Record `edit` and apply it to the candidate; the node set (None for a removal)."""
        self.edits.append(edit)
        edit.apply(self.candidate)
        if edit.line is None:
            return None
        return self.candidate.walk_path([*edit.path, edit.key])

    def target(self) -> ConfigNode:
        """What the running configuration would be if this session committed now."""
        tree = self.device.running.clone()
        for edit in self.edits:
            edit.apply(tree)
        return tree

    def uncommitted(self) -> bool:
        return bool(self.edits) and self.target().to_dict() != self.device.running.to_dict()

    def commit(self, *, label: str | None, comment: str | None, trial_seconds: int | None) -> str:
        """Commit this session's edits (a trial when `trial_seconds`); '' or IOS XR's message."""
        device, cli = self.device, self.cli
        expire_trial(device)
        holder = cli.locked_against(self.line.session_id)
        if holder is not None:
            return locked_message(holder, "commit")
        with device.lock:
            if trial_seconds is not None and cli.trial is not None:
                return "% A trial commit (commit confirmed) is pending: confirm it with 'commit' first\n"
            confirmed = cli.end_trial() if trial_seconds is None else None
            target = self.target()
            if target.to_dict() == device.running.to_dict():
                self._restart()
                return "" if confirmed is not None else "% No configuration changes to commit.\n"
            previous = device.running
            _install(device, target, user=self.username, client="CLI", line=self.line,
                     label=label or "", comment=comment or "")
            self._restart()
            if trial_seconds is not None:
                deadline = device.clock.timestamp() + trial_seconds
                trial = TrialCommit(previous, deadline, self.username)
                cli.start_trial(trial, trial_seconds / device.clock.rate, lambda: expire_trial(device, force=trial))
        return ""

    def _restart(self) -> None:
        self.edits = []
        self.candidate = self.device.running.clone()

    def leave(self) -> None:
        self.cli.release_lock(self.line.session_id)
        self.line.config_id = ""


def _install(device: Any, tree: ConfigNode, *, user: str, client: str, line: LineInfo | None,
             label: str = "", comment: str = "") -> None:
    """Make `tree` the running configuration and record the commit (device lock held)."""
    device.running = tree
    now = device.clock.timestamp()
    device.last_change = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(now)) + f" by {user}"
    where = f"{line.line}:node0_RP0_CPU0" if line is not None else "vty0:node0_RP0_CPU0"
    facts_mod.record_commit(device.facts, user=user, client=client, line=where, label=label, comment=comment, now=now)
    device.on_commit()
    device.save()


def expire_trial(device: Any, *, force: TrialCommit | None = None) -> None:
    """Roll back a trial commit whose deadline has passed on the device clock.

    `force` is the trial a timer was started for: it rolls back when still pending, whatever
    the device clock says (the timer ran for the trial's length in real time)."""
    cli = cli_state(device)
    trial = cli.trial
    if trial is None or (trial is not force and device.clock.timestamp() < trial.deadline):
        return
    with device.lock:
        if cli.trial is not trial:
            return  # confirmed or rolled back meanwhile
        cli.end_trial()
        _install(device, trial.previous, user=trial.username, client="Rollback", line=None,
                 comment="commit confirmed: not confirmed in time, rolled back")
        log.info("%s: trial commit by %s rolled back", device.name, trial.username)
