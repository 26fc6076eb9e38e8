"""What the CLI sessions of one device share: their vty lines, the exclusive configuration lock,
and a trial commit (`commit confirmed`) waiting for its confirmation.

Kept beside the `Device` (one `CliState` per device object) rather than in it: this is the state
of the command line, not of the router's identity, keys or files.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["CliState", "LineInfo", "TrialCommit", "cli_state"]

# One exec or shell SSH channel at a time takes the lowest free vty number, as on the router.
FIRST_VTY = 0


@dataclass
class LineInfo:
    """One SSH session as `show users` and `show ssh` list it."""

    session_id: int
    vty: int
    username: str
    host: str
    pty: bool
    started: float  # time.monotonic() when it opened
    last_input: float  # time.monotonic() of the last command typed
    config_id: str = ""  # `00001000-000000NN` while in a configuration session

    @property
    def line(self) -> str:
        return f"vty{self.vty}"


@dataclass
class TrialCommit:
    """`commit confirmed`: the configuration to go back to unless confirmed by `deadline`."""

    previous: Any  # the ConfigNode running before the trial
    deadline: float  # device clock (seconds since the epoch)
    username: str
    timer: threading.Timer | None = field(default=None, repr=False)


class CliState:
    """The device-wide CLI bookkeeping; every method is safe to call from any session thread."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        # Sessions closed but not yet taken off (`close_line` takes no lock: it runs from a
        # garbage collector finalizer, which can fire in any thread while that thread holds
        # `_guard`, inside an allocation; a lock taken there would deadlock).
        self._closing: collections.deque[int] = collections.deque()
        self._ids = itertools.count(1)
        self._lines: dict[int, LineInfo] = {}
        self.lock_holder: int | None = None  # session id holding `configure exclusive`
        self.trial: TrialCommit | None = None

    # -- lines -----------------------------------------------------------------------------
    def open_line(self, username: str, host: str, *, pty: bool) -> LineInfo:
        with self._guard:
            self._take_off_closed()
            used = {info.vty for info in self._lines.values()}
            vty = next(n for n in itertools.count(FIRST_VTY) if n not in used)
            now = time.monotonic()
            info = LineInfo(next(self._ids), vty, username, host, pty, now, now)
            self._lines[info.session_id] = info
            return info

    def close_line(self, session_id: int) -> None:
        """Take the session's line off (at the next look at the lines); safe from a finalizer."""
        self._closing.append(session_id)

    def _take_off_closed(self) -> None:
        """Under `_guard`: the lines of sessions closed since, and their lock, let go."""
        while self._closing:
            session_id = self._closing.popleft()
            self._lines.pop(session_id, None)
            if self.lock_holder == session_id:
                self.lock_holder = None

    def lines(self) -> list[LineInfo]:
        with self._guard:
            self._take_off_closed()
            return sorted(self._lines.values(), key=lambda info: info.vty)

    def line(self, session_id: int) -> LineInfo | None:
        with self._guard:
            self._take_off_closed()
            return self._lines.get(session_id)

    # -- the exclusive lock ----------------------------------------------------------------
    def take_lock(self, session_id: int) -> bool:
        """True when this session now holds the lock (or already did)."""
        with self._guard:
            self._take_off_closed()
            if self.lock_holder not in (None, session_id) and self.lock_holder in self._lines:
                return False
            self.lock_holder = session_id
            return True

    def release_lock(self, session_id: int) -> None:
        with self._guard:
            self._take_off_closed()
            if self.lock_holder == session_id:
                self.lock_holder = None

    def locked_against(self, session_id: int) -> LineInfo | None:
        """The session holding the lock when it is not `session_id`."""
        with self._guard:
            self._take_off_closed()
            if self.lock_holder is None or self.lock_holder == session_id:
                return None
            return self._lines.get(self.lock_holder)

    # -- commit confirmed ------------------------------------------------------------------
    def start_trial(self, trial: TrialCommit, real_seconds: float, expire: Callable[[], None]) -> None:
        """Remember `trial`; `expire` runs after `real_seconds` unless the trial ends first."""
        timer = threading.Timer(max(0.0, real_seconds), expire)
        timer.daemon = True
        trial.timer = timer
        with self._guard:
            self._take_off_closed()
            self.trial = trial
        timer.start()

    def end_trial(self) -> TrialCommit | None:
        """Take the pending trial (to confirm or roll back); None when there is none."""
        with self._guard:
            self._take_off_closed()
            trial, self.trial = self.trial, None
        if trial is not None and trial.timer is not None:
            trial.timer.cancel()
        return trial


_STATES: "weakref.WeakKeyDictionary[Any, CliState]" = weakref.WeakKeyDictionary()
_STATES_GUARD = threading.Lock()


def cli_state(device: Any) -> CliState:
    """The `CliState` of `device` (made on first use, gone with the device)."""
    with _STATES_GUARD:
        state = _STATES.get(device)
        if state is None:
            state = _STATES[device] = CliState()
        return state
