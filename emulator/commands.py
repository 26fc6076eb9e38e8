"""The IOS XR command set of the emulator: tables of rows, each a pattern and a handler.

Adding a command is adding a row (and, if it does something new, a handler). Three kinds of
table: EXEC_ROWS (the `#` prompt), CONFIG_ROWS per configuration mode (lines stored in the
configuration tree; see `emulator.config`), and PIPE_ROWS (`| utility sign ...`, `| file ...`).
The handlers of the `crypto ...` commands and certificate shows are in `emulator.crypto_commands`.
Row `meta` keys:

- ``tasks``: IOS XR task IDs the user needs, as (operation, task) pairs;
- ``stamp``: print the timestamp line first (every show and crypto command does, as the seed
  shows; `terminal`, `configure` and `exit` do not);
- config rows: ``key`` (what the line replaces: a number of leading words, a literal, or
  ``"line"`` for the whole line) and ``mode`` (the submode it enters).
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from . import alerts
from . import dossier as dossier_mod
from . import facts as facts_mod
from . import iosxe, showtext, signing
from .cli_state import cli_state
from .config import ConfigNode, render_running_config, running_config_sections
from .config_session import DEFAULT_TRIAL_SECONDS, ConfigEdit, ConfigSession, LockedError, expire_trial
from .crypto_commands import (
    h_attest_certificate,
    h_ca_authenticate,
    h_ca_enroll,
    h_ca_import,
    h_clear_certificates,
    h_crypto_key_generate,
    h_crypto_key_import,
    h_crypto_key_zeroize,
    h_show_certificates,
    h_show_mypubkey,
)
from .device import Device, DeviceError, hash_secret
from .faults import Fault
from .grammar import GrammarError, Match, Row, completions, match_line
from .nonce import NonceError
from .pipes import (
    CommandError,
    pipe_begin,
    pipe_count,
    pipe_exclude,
    pipe_file,
    pipe_include,
    pipe_sign,
    split_pipes,
)
from .pki import PkiError
from .terminal import SessionClosed, Terminal
from .trustpool_commands import h_show_trustpool, h_trustpool_import

__all__ = ["CONFIG_ROWS", "EXEC_ROWS", "MODE_PROMPTS", "PERSONALITIES", "PIPE_ROWS", "Personality", "Session",
           "XE_EXEC_ROWS", "XE_PIPE_ROWS"]

log = logging.getLogger(__name__)

NOT_AUTHORIZED = "% This command is not authorized\n"
NODE_PREFIX = "RP/0/RP0/CPU0"
# Lines per page on a terminal until `terminal length` says otherwise (IOS XR's default).
DEFAULT_TERMINAL_LENGTH = 24
NO_SUCH_ITEM = "% No such configuration item(s)\n"

MODE_PROMPTS = {
    "exec": "",
    "config": "(config)",
    "trustp": "(config-trustp)",
    "trustpool": "(config-trustpool)",
    "fsinv": "(config-filesystem-inventory)",
    "tg": "(config-tg)",
    "ug": "(config-ug)",
    "un": "(config-un)",
    "line": "(config-line)",
    "ncy": "(config-ncy-agent)",
}

DOSSIER_ITEMS = "packages|reboot-history|rollback-history|system-integrity-snapshot|system-inventory|filesystem-inventory"
# Task IDs per dossier item, from the seed's task group for dossier collection.
DOSSIER_ITEM_TASKS = {
    "packages": ("read", "pkg-mgmt"),
    "reboot-history": ("read", "sysmgr"),
    "rollback-history": ("read", "config-services"),
    "system-integrity-snapshot": ("read", "system"),
    "system-inventory": ("read", "system"),
    "filesystem-inventory": ("read", "basic-services"),
}


@dataclass
class Mode:
    name: str
    key: str | None  # the config tree key of the submode's line (None for exec and config)


class Session:
    """One SSH channel's conversation with the device: modes, candidate configuration, output."""

    def __init__(self, device: Device, username: str, term: Terminal) -> None:
        self.device = device
        self.username = username
        self.term = term
        self.modes: list[Mode] = [Mode("exec", None)]
        self.config: ConfigSession | None = None
        self.length = DEFAULT_TERMINAL_LENGTH
        self.width = 80
        self.timestamps = True  # `terminal exec prompt no-timestamp` turns the line off
        self.closed = False
        self.personality = PERSONALITIES[device.platform]
        self.cli = cli_state(device)
        self.line = self.cli.open_line(username, _peer_host(term), pty=term.interactive)
        # An exec channel's session ends when the server drops it; a shell's in session_loop.
        weakref.finalize(self, self.cli.close_line, self.line.session_id)
        self._command = ""  # the command being run (for a caret under a handler's complaint)

    @property
    def candidate(self) -> ConfigNode | None:
        """This session's candidate configuration (None outside configuration mode)."""
        return self.config.candidate if self.config is not None else None

    # -- prompts and modes -----------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.modes[-1].name

    def prompt(self) -> str:
        return f"{self.personality.prompt_prefix}{self.device.hostname}{MODE_PROMPTS[self.mode]}#"

    def config_path(self) -> list[str]:
        return [m.key for m in self.modes[2:] if m.key is not None]

    def config_node(self) -> ConfigNode:
        assert self.candidate is not None
        return self.candidate.walk_path(self.config_path())

    def uncommitted(self) -> bool:
        return self.config is not None and self.config.uncommitted()

    def help(self, text: str) -> list[str]:
        """`?` help for a partly typed line in the current mode."""
        if "|" in text:
            return completions(text.rsplit("|", 1)[1].lstrip(), self.personality.pipe_rows)
        if self.mode == "exec":
            rows = self.personality.exec_rows
        else:
            rows = [row for _, mode_rows in self._config_rows_stack() for row in mode_rows]
        return completions(text, rows)

    # -- the one entry point ---------------------------------------------------------------
    def execute(self, line: str) -> None:
        """Run one typed line: the command, its pipes, authorization, and the output."""
        if line in ("\x03",):
            return
        if line == "\x1a":  # Ctrl-Z: end
            if self.mode != "exec":
                self._end()
            return
        self.line.last_input = time.monotonic()
        expire_trial(self.device)
        if not line.strip() or line.lstrip().startswith("!"):
            return
        command, pipes = split_pipes(line)
        self._command = command
        first = line.split()[0].lower()
        if len(first) >= 3 and "describe".startswith(first):
            command, pipes = line.strip(), []  # `describe` explains the whole line, pipes included
        try:
            if self.mode == "exec":
                self._execute_exec(line, command, pipes)
            else:
                self._execute_config(line, command, pipes)
        except GrammarError as error:
            self.term.write(error.render(len(self.prompt()) if self.term.interactive else None))
        except (CommandError, DeviceError, PkiError, signing.SignError, facts_mod.ContentError,
                iosxe.XeError, NonceError, alerts.AlertError, LockedError) as error:
            message = getattr(error, "message", str(error))
            self.term.write(message if message.endswith("\n") else message + "\n")
        except SessionClosed:
            raise
        except Exception as error:  # noqa: BLE001 - a handler bug must not drop the session
            # Logged with its traceback for the emulator's developers; the user sees what a
            # router prints for an internal failure, and the session (and fleet) carry on.
            log.exception("%s: command %r failed", self.device.name, line)
            self.term.write(f"% Internal error: {type(error).__name__}: {error}\n")

    def _authorize(self, tasks: list[tuple[str, str]]) -> None:
        if self.device.authorize(self.username, tasks):
            raise CommandError(NOT_AUTHORIZED)

    def _execute_exec(self, line: str, command: str, pipes: list[str]) -> None:
        match = match_line(command, self.personality.exec_rows)
        pipe_matches = [match_line(p, self.personality.pipe_rows) for p in pipes]
        tasks = list(match.row.meta.get("tasks", []))
        if match.row.meta.get("dossier"):
            tasks += [DOSSIER_ITEM_TASKS[i] for i in match.args.get("items", [])]
        for pipe in pipe_matches:
            tasks += pipe.row.meta.get("tasks", [])
        self._authorize(tasks)
        stamped = self._stamp(match.row.meta.get("stamp", True))
        output = match.row.handler(self, match) or ""  # type: ignore[misc]
        for pipe in pipe_matches:
            output = pipe.row.handler(self, pipe, output)  # type: ignore[misc]
        self._emit(output, dossier=bool(match.row.meta.get("dossier")), shown=stamped)

    def _stamp(self, wanted: bool) -> int:
        """Print the timestamp line when the command has one and the session wants it; the
        number of lines printed (the pager counts them)."""
        if not (wanted and self.timestamps):
            return 0
        self.term.write(self.device.timestamp_text(self.device.clock.now()) + "\n")
        return 1

    def _emit(self, output: str, *, dossier: bool = False, shown: int = 0) -> None:
        faults = self.device.faults
        if dossier and Fault.NOT_JSON in faults:
            # A device that breaks off mid-answer: what arrives is not a JSON document.
            output = output[: max(1, len(output) // 2)] + "\n% Error: dossier collection aborted\n"
        self.term.page(output, self.length, shown=shown)

    def _execute_config(self, line: str, command: str, pipes: list[str]) -> None:
        first_error: GrammarError | None = None
        for depth, rows in self._config_rows_stack():
            try:
                match = match_line(command, rows)
            except GrammarError as error:
                first_error = first_error or error  # the innermost mode's complaint is the one shown
                continue
            # A parent mode's command leaves the submodes (as IOS XR does).
            del self.modes[depth + 1 :]
            if match.row.handler is not None:
                stamped = self._stamp(bool(match.row.meta.get("stamp")))
                output = match.row.handler(self, match) or ""
                for pipe in pipes:
                    pm = match_line(pipe, PIPE_ROWS)
                    output = pm.row.handler(self, pm, output)  # type: ignore[misc]
                self._emit(output, shown=stamped)
            else:
                self._apply_config_row(match)
            return
        assert first_error is not None
        raise first_error

    def _config_rows_stack(self) -> list[tuple[int, list[Row]]]:
        """The rows to try, innermost mode first, then each parent mode up to `config`."""
        stack = []
        for depth in range(len(self.modes) - 1, 0, -1):
            name = self.modes[depth].name
            stack.append((depth, CONFIG_ROWS.get(name, []) + NO_ROWS.get(name, []) + CONFIG_COMMON_ROWS))
        return stack

    def _apply_config_row(self, match: Match) -> None:
        assert self.config is not None
        meta = match.row.meta
        path = tuple(self.config_path())
        parts = match.parts
        if meta.get("no"):
            parts = parts[1:]
            self.config.edit(ConfigEdit(path, config_key(meta["key"], parts), None))
            return
        canonical = " ".join(parts)
        canonical = meta.get("store", lambda c, a: c)(canonical, match.args)
        key = config_key(meta["key"], parts)
        submode = meta.get("mode")
        child = self.config.edit(ConfigEdit(path, key, canonical, submode is not None))
        if submode is not None and child is not None:
            self.modes.append(Mode(submode, child.key))

    # -- configuration session -------------------------------------------------------------
    def enter_config(self, *, exclusive: bool = False) -> None:
        """Start a configuration session; LockedError while another session holds the lock."""
        self.config = ConfigSession(self.device, self.username, self.line, exclusive=exclusive)
        self.modes = [Mode("exec", None), Mode("config", None)]

    def commit(self, label: str | None = None, comment: str | None = None, *,
               trial_seconds: int | None = None) -> str:
        assert self.config is not None
        return self.config.commit(label=label, comment=comment, trial_seconds=trial_seconds)

    def leave_config(self) -> None:
        if self.config is not None:
            self.config.leave()
        self.config = None
        self.modes = [Mode("exec", None)]

    def close(self) -> None:
        """The session is over: its line and any lock it held are released."""
        self.leave_config()
        self.cli.close_line(self.line.session_id)

    def _end(self) -> str:
        if self.uncommitted():
            answer = self.term.ask("Uncommitted changes found, commit them? [yes]: ", default="yes").lower()
            if answer in ("yes", "y"):
                output = self.commit()
                self.term.write(output)
            elif answer in ("cancel", "c"):
                return ""
            elif answer not in ("no", "n"):
                return "% Please answer 'yes', 'no' or 'cancel'.\n"
        self.leave_config()
        return ""


# --- pipes ----------------------------------------------------------------------------------


def h_terminal_length(s: Session, m: Match) -> str:
    s.length = m.args["n"]
    return ""


def h_terminal_width(s: Session, m: Match) -> str:
    s.width = m.args["n"]
    return ""


def h_configure(s: Session, m: Match) -> str:
    s.enter_config(exclusive=m.args.get("how") == "exclusive")
    return ""


def h_terminal_timestamp(s: Session, m: Match) -> str:
    s.timestamps = m.args["what"] == "timestamp"
    return ""


def h_show_users(s: Session, m: Match) -> str:
    return showtext.show_users(s.cli.lines(), current=s.line.session_id, now=time.monotonic())


def h_show_ssh(s: Session, m: Match) -> str:
    return showtext.show_ssh(s.cli.lines())


def h_exit(s: Session, m: Match) -> str:
    s.closed = True
    return ""


def h_show_clock(s: Session, m: Match) -> str:
    now = s.device.clock.now()
    return now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d} UTC " + now.strftime("%a %b %d %Y") + "\n"


def _facts_text(render: Callable[[Any], str]) -> Callable[[Session, Match], str]:
    def handler(s: Session, m: Match) -> str:
        return render(s.device.facts)

    return handler


def h_show_reboot_history(s: Session, m: Match) -> str:
    return showtext.show_reboot_history(s.device.facts, m.args.get("node"))


def h_show_running(s: Session, m: Match) -> str:
    tree = s.device.running
    section = m.args.get("section")
    if section:
        known = running_config_sections(row.pattern for row in CONFIG_ROWS["config"])
        if section.split()[0] not in known:
            # IOS XR knows its sections: a word that names none is invalid input, caret under it.
            raise GrammarError("invalid", len(s._command.rstrip()) - len(section), s._command)
    text = render_running_config(tree, version=s.device.facts.xr_version, last_change=s.device.last_change,
                                 section=section)
    return text or NO_SUCH_ITEM


def h_show_configuration(s: Session, m: Match) -> str:
    """Uncommitted changes in this configuration session."""
    if s.config is None:
        return ""
    target = s.config.target()
    running = set(_flatten(s.device.running))
    added = [line for line in _flatten(target) if line not in running]
    removed = [f"no {line.strip()}" for line in _flatten(s.device.running) if line not in set(_flatten(target))]
    body = added + removed
    return "Building configuration...\n" + "".join(f"{line}\n" for line in body) + "end\n"


def _flatten(node: ConfigNode, depth: int = 0) -> list[str]:
    out = []
    for child in node.children:
        out.append(" " * depth + child.line)
        out.extend(_flatten(child, depth + 1))
    return out


def h_dossier(s: Session, m: Match) -> str:
    device = s.device
    nonce_text = m.args.get("nonce")  # build_dossier checks it
    fs_options = dossier_mod.parse_fs_options(m.args["fsopts"]) if "fsopts" in m.args else None
    items = m.args.get("items", [])
    failing: dict[str, str] = {}
    if Fault.ITEMS_FAILING in device.faults:
        params = device.faults.params(Fault.ITEMS_FAILING)
        result = str(params.get("result", "Failed: timeout collecting data"))
        failing = {item: result for item in params.get("items", items[:1] or ["packages"])}
    with device.lock:
        now = device.clock.timestamp()
        inventories = device.fsinv if "filesystem-inventory" in items else None
        for inventory in (inventories or {}).values():
            inventory.advance_to(now)
        text = dossier_mod.build_dossier(
            device.facts, inventories, items, nonce_text=nonce_text, fs_options=fs_options, now=now,
            failing_items=failing,
        )
        if inventories is not None:
            device.save()
    return text


def h_dir(s: Session, m: Match) -> str:
    root = s.device.folder / "harddisk"
    root.mkdir(exist_ok=True)
    lines = ["", "Directory of harddisk:", ""]
    for index, path in enumerate(sorted(p for p in root.iterdir() if not p.name.startswith("."))):
        stat = path.stat()
        when = time.strftime("%b %d %H:%M", time.gmtime(stat.st_mtime))
        kind = "drwxr-xr-x" if path.is_dir() else "-rw-r--r--"
        lines.append(f"{stat.st_ino % 10**8:>10} {kind}. 1 {stat.st_size:>10} {when} {path.name}")
    lines += ["", "3962216 kbytes total (3777340 kbytes free)", ""]
    return "\n".join(lines)


def h_more(s: Session, m: Match) -> str:
    path = s.device.harddisk_path(m.args["path"])
    if not path.is_file():
        raise CommandError(f"% No such file or directory: {m.args['path']}")
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError as exc:
        raise CommandError(f"% Cannot read {m.args['path']}: {exc.strerror or exc}") from None
    return text if text.endswith("\n") else text + "\n"


def h_reload(s: Session, m: Match) -> str:
    answer = s.term.ask("Proceed with reload? [confirm]", default="y").lower()
    if answer not in ("y", "yes", ""):
        return ""
    with s.device.lock:
        facts_mod.record_reboot(
            s.device.facts, cause_code="0x00000000", reason="User initiated reload (cli)", now=s.device.clock.timestamp()
        )
        s.device.save()
    s.closed = True
    return "\nReloading the router...\n"


def h_describe(s: Session, m: Match) -> str:
    command, pipes = split_pipes(m.args["command"])
    match = match_line(command, EXEC_ROWS)
    tasks = list(match.row.meta.get("tasks", []))
    if match.row.meta.get("dossier"):
        tasks += [DOSSIER_ITEM_TASKS[i] for i in match.args.get("items", [])]
    for pipe in pipes:
        tasks += match_line(pipe, PIPE_ROWS).row.meta.get("tasks", [])
    lines = ["", "User needs ALL of the following taskids:", ""]
    for op, task in dict.fromkeys(tasks):
        lines.append(f"        {task} ({op.upper()})")
    return "\n".join(lines) + "\n\n"


def h_do(s: Session, m: Match) -> str:
    saved = s.modes
    s.modes = [Mode("exec", None)]
    try:
        s.execute(m.args["command"])
    finally:
        s.modes = saved
    return ""


# --- config handlers (commands that do more than store a line) ------------------------------


def h_commit(s: Session, m: Match) -> str:
    return s.commit(m.args.get("label"), m.args.get("comment"))


def h_commit_confirmed(s: Session, m: Match) -> str:
    if "minutes" in m.args:
        seconds = m.args["minutes"] * 60
    else:
        seconds = m.args.get("seconds", DEFAULT_TRIAL_SECONDS)
    return s.commit(m.args.get("label"), trial_seconds=seconds)


def h_end(s: Session, m: Match) -> str:
    return s._end()


def h_exit_mode(s: Session, m: Match) -> str:
    if len(s.modes) > 2:
        s.modes.pop()
        return ""
    return s._end()


def h_abort(s: Session, m: Match) -> str:
    s.leave_config()
    return ""


def store_secret(canonical: str, args: dict[str, Any]) -> str:
    """`secret 0 pw` / `password pw` -> `secret 10 <scrypt>`: no clear text in the configuration."""
    if args.get("enc") in ("5", "8", "9", "10"):
        return f"secret {args['enc']} {args['pw']}"
    return f"secret 10 {hash_secret(args['pw'])}"


# --- tables ---------------------------------------------------------------------------------

READ = "read"
EXECUTE = "execute"


def _exec(pattern: str, handler: Callable[..., Any], *tasks: tuple[str, str], **meta: Any) -> Row:
    return Row(pattern, handler, {"tasks": list(tasks), **meta})


EXEC_ROWS: list[Row] = [
    _exec("terminal length <n:0-512>", h_terminal_length, stamp=False),
    _exec("terminal width <n:0-512>", h_terminal_width, stamp=False),
    _exec("terminal exec prompt {what:no-timestamp|timestamp}", h_terminal_timestamp, stamp=False),
    _exec("configure [{how:terminal|exclusive}]", h_configure, ("write", "config-services"), stamp=False),
    _exec("exit", h_exit, stamp=False),
    _exec("quit", h_exit, stamp=False),
    _exec("logout", h_exit, stamp=False),
    _exec("describe <command...>", h_describe),
    _exec("show clock", h_show_clock),
    _exec("show users", h_show_users),
    _exec("show ssh", h_show_ssh, (READ, "crypto")),
    _exec("show version", lambda s, m: showtext.show_version(s.device.facts, now=s.device.clock.timestamp()),
          (READ, "basic-services")),
    _exec("show platform", _facts_text(showtext.show_platform), (READ, "system")),
    _exec("show inventory", _facts_text(showtext.show_inventory), (READ, "system")),
    _exec("show install active [summary]", _facts_text(showtext.show_install_active), (READ, "pkg-mgmt")),
    _exec("show reboot history [location <node>]", h_show_reboot_history, (READ, "sysmgr")),
    _exec("show configuration commit list", _facts_text(showtext.show_configuration_commit_list), (READ, "config-services")),
    _exec("show running-config [<section...>]", h_show_running, (READ, "config-services")),
    _exec("show logging", lambda s, m: s.device.alerts.show_logging(), (READ, "logging")),
    _exec("show crypto key mypubkey {kind:rsa|dsa|ecdsa}", h_show_mypubkey, (READ, "crypto")),
    _exec("show crypto ca certificates [<tp>] [{detail:detail}]", h_show_certificates, (READ, "crypto")),
    _exec("show crypto ca trustpool [{policy:policy}]", h_show_trustpool, (READ, "crypto")),
    _exec(
        f"show platform security integrity dossier [include {{items:{DOSSIER_ITEMS}}}+] "
        "[filesystem-inventory-options <fsopts>] [nonce <nonce>]",
        h_dossier, (READ, "system"), dossier=True,
    ),
    _exec("show platform security attest certificate <cert> location <where> nonce <nonce> json",
          h_attest_certificate, (READ, "crypto")),
    _exec("crypto key generate {kind:rsa|dsa|ecdsa} [{usage:general-keys|usage-keys}] [<label>]", h_crypto_key_generate, (EXECUTE, "crypto")),
    _exec("crypto key generate {kind:rsa|dsa} usage keys [<label>]", h_crypto_key_generate, (EXECUTE, "crypto"), usage=True),
    _exec("crypto key generate {kind:ecdsa} {curve:nistp256|nistp384|nistp521} [<label>]", h_crypto_key_generate, (EXECUTE, "crypto")),
    _exec("crypto key zeroize {kind:rsa|dsa|ecdsa} [<label>]", h_crypto_key_zeroize, (EXECUTE, "crypto")),
    _exec("crypto key import authentication rsa [{usage:general-keys|usage-keys}] [<label>]", h_crypto_key_import, (EXECUTE, "crypto")),
    _exec("crypto ca authenticate <tp>", h_ca_authenticate, (EXECUTE, "crypto")),
    _exec("crypto ca enroll <tp>", h_ca_enroll, (EXECUTE, "crypto")),
    _exec("crypto ca import <tp> certificate", h_ca_import, (EXECUTE, "crypto")),
    _exec("crypto ca trustpool import url <url>", h_trustpool_import, (EXECUTE, "crypto")),
    _exec("clear crypto ca certificates <tp>", h_clear_certificates, (EXECUTE, "crypto")),
    _exec("dir [<path>]", h_dir, (READ, "basic-services")),
    _exec("more <path>", h_more, (READ, "basic-services")),
    _exec("reload [location all]", h_reload, (EXECUTE, "root-lr")),
]

PIPE_ROWS: list[Row] = [
    Row("utility sign nonce <nonce> [{include:include-certificate}]", pipe_sign, {"tasks": [(EXECUTE, "crypto")]}),
    Row("utility sign {include:include-certificate} nonce <nonce>", pipe_sign, {"tasks": [(EXECUTE, "crypto")]}),
    Row("file <path>", pipe_file, {"tasks": [(EXECUTE, "basic-services")]}),
    Row("include <regex...>", pipe_include),
    Row("exclude <regex...>", pipe_exclude),
    Row("begin <regex...>", pipe_begin),
    Row("count [<regex...>]", pipe_count),
]


# IOS XE: the integrity and SUDI commands (emulator.iosxe) plus the session basics; no
# `utility sign` or `| file` pipe (XE signs inside its own commands).
XE_EXEC_ROWS: list[Row] = [
    _exec("terminal length <n:0-512>", h_terminal_length, stamp=False),
    _exec("terminal width <n:0-512>", h_terminal_width, stamp=False),
    _exec("configure [{how:terminal}]", h_configure, stamp=False),
    _exec("exit", h_exit, stamp=False),
    _exec("quit", h_exit, stamp=False),
    _exec("logout", h_exit, stamp=False),
    *iosxe.XE_SHOW_ROWS,
]
XE_PIPE_ROWS: list[Row] = [row for row in PIPE_ROWS if row.handler in (pipe_include, pipe_exclude, pipe_begin, pipe_count)]


@dataclass(frozen=True)
class Personality:
    """What makes a device IOS XR or IOS XE to a client: its commands and its prompt."""

    exec_rows: list[Row]
    pipe_rows: list[Row]
    prompt_prefix: str  # before the hostname: `RP/0/RP0/CPU0:` on XR, nothing on XE (`Router#`)


PERSONALITIES: dict[str, Personality] = {
    "iosxr": Personality(EXEC_ROWS, PIPE_ROWS, f"{NODE_PREFIX}:"),
    "iosxe": Personality(XE_EXEC_ROWS, XE_PIPE_ROWS, ""),
}


def _cfg(pattern: str, key: int | str, mode: str | None = None, **meta: Any) -> Row:
    return Row(pattern, None, {"key": key, "mode": mode, **meta})


KEY_USAGES = "digitalsignature|nonrepudiation|keyencipherment|dataencipherment|keyagreement|keycertsign|crlsign|encipheronly|decipheronly"

CONFIG_ROWS: dict[str, list[Row]] = {
    "config": [
        _cfg("hostname <name>", 1),
        _cfg("domain name <name>", 2),
        _cfg("crypto ca trustpoint <name>", "line", "trustp"),
        _cfg("crypto ca trustpool policy", "line", "trustpool"),
        _cfg("filesystem-inventory", "line", "fsinv"),
        _cfg("taskgroup <name>", "line", "tg"),
        _cfg("usergroup <name>", "line", "ug"),
        _cfg("username <name>", "line", "un"),
        _cfg("line default", "line", "line"),
        _cfg("netconf-yang agent", "line", "ncy"),
        _cfg("ssh server rate-limit <n:1-600>", 3),
        _cfg("ssh server v2", "line"),
        _cfg("ssh server vrf <vrf>", "line"),
        _cfg("ssh server netconf vrf <vrf>", "line"),
        _cfg("ssh timeout <n:5-120>", 2),
        _cfg("snmp-server traps pki", "line"),
        _cfg("snmp-server host <addr> traps version 2c <community> [udp-port <port:1-65535>]", 3,
             store=alerts.address_store("addr")),
        _cfg("logging <host> [vrf <vrf>] [port <port:1-65535>]", 2,
             store=alerts.address_store("host")),
        _cfg("logging buffered <bytes:307200-125000000>", 2),
        _cfg("logging format {fmt:bsd|rfc5424}", 2),
    ],
    "trustp": [
        _cfg("keypair {kind:rsa|dsa|ecdsa} <label>", 1),
        _cfg("ca-keypair {kind:rsa|dsa|ecdsa} <label>", 1),
        _cfg("subject-name ca-certificate <dn...>", 2),
        _cfg("subject-name <dn...>", 1),
        _cfg("enrollment url <url>", "enrollment-method"),
        _cfg("enrollment terminal", "enrollment-method"),
        _cfg("enrollment retry period <n:1-60>", 3),
        _cfg("enrollment retry count <n:1-100>", 3),
        _cfg(f"key-usage certificate {{ku:{KEY_USAGES}}}+", 2),
        _cfg(f"key-usage ca-certificate {{ku:{KEY_USAGES}}}+", 2),
        _cfg("lifetime certificate <days:1-18250>", 2),
        _cfg("lifetime ca-certificate <days:1-18250>", 2),
        _cfg("message-digest {md:md5|sha1|sha256|sha384|sha512}", 1),
        _cfg("rsakeypair <label>", 1),
        _cfg("query url <url>", 2),
        _cfg("vrf <vrf>", 1),
        _cfg("crl optional", "line"),
        _cfg("description <text...>", 1),
    ],
    "trustpool": [
        _cfg("cabundle url <url>", 2),
        _cfg("crl optional", "line"),
        _cfg("description <text...>", 1),
    ],
    "fsinv": [_cfg("snapshot-interval <n:1-96>", 1)],
    "tg": [
        _cfg("task {op:read|write|execute|debug} <task>", "line"),
        _cfg("inherit taskgroup <name>", "line"),
        _cfg("description <text...>", 1),
    ],
    "ug": [
        _cfg("taskgroup <name>", "line"),
        _cfg("inherit usergroup <name>", "line"),
        _cfg("description <text...>", 1),
    ],
    "un": [
        _cfg("group <name>", "line"),
        _cfg("secret [{enc:0|5|8|9|10}] <pw>", "secret", store=store_secret),
        _cfg("password [{enc:0|7}] <pw>", "secret", store=store_secret),
    ],
    "line": [
        _cfg("exec-timeout <m:0-35791> [<s:0-2147483>]", 1),
        _cfg("session-timeout <m:0-35791>", 1),
    ],
    "ncy": [_cfg("ssh", "line")],
}


def config_key(spec: int | str, parts: list[str]) -> str:
    if spec == "line":
        return " ".join(parts)
    if isinstance(spec, int):
        return " ".join(parts[:spec])
    return spec


def _no_rows(rows: list[Row]) -> list[Row]:
    """`no <command>` for each config row: the key part alone, or the whole command."""
    out = []
    for row in rows:
        spec = row.meta["key"]
        words = row.pattern.split()
        if isinstance(spec, int):
            out.append(Row("no " + " ".join(words[:spec]) + " [<ignored...>]", None, {"key": spec, "no": True}))
        else:
            out.append(Row("no " + row.pattern, None, {"key": spec, "no": True}))
    return out


NO_ROWS: dict[str, list[Row]] = {mode: _no_rows(rows) for mode, rows in CONFIG_ROWS.items()}

CONFIG_COMMON_ROWS: list[Row] = [
    Row("commit [label <label>] [comment <comment...>]", h_commit),
    Row("commit [label <label>] confirmed [<seconds:30-65535>]", h_commit_confirmed),
    Row("commit [label <label>] confirmed minutes <minutes:1-65535>", h_commit_confirmed),
    Row("end", h_end),
    Row("exit", h_exit_mode),
    Row("abort", h_abort),
    Row("show running-config [<section...>]", h_show_running, {"stamp": True}),
    Row("show configuration", h_show_configuration, {"stamp": True}),
    Row("do <command...>", h_do),
]


def session_loop(session: Session) -> None:
    """Prompt, read a line, execute; until `exit` or the client goes away."""
    term = session.term
    try:
        while not session.closed:
            term.write(session.prompt())
            try:
                line = term.read_line(prompt=session.prompt())
            except SessionClosed:
                break
            session.execute(line)
    finally:
        session.close()


def _peer_host(term: Terminal) -> str:
    """The client's address, as `show users` and `show ssh` print it ('' when unknown)."""
    channel = getattr(term, "channel", None)
    transport = channel.get_transport() if channel is not None else None
    try:
        peer = transport.getpeername() if transport is not None else None
    except OSError:
        return ""
    return str(peer[0]) if peer else ""
