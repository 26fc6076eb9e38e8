"""The output pipes of the IOS XR personality (`| utility sign`, `| file`, `| include`,
`| exclude`, `| begin`, `| count`) and the error a command is refused with."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from . import signing
from .faults import Fault
from .grammar import Match
from .nonce import parse_hex_nonce

if TYPE_CHECKING:
    from .commands import Session

__all__ = ["CommandError", "pipe_begin", "pipe_count", "pipe_exclude", "pipe_file", "pipe_include", "pipe_sign",
           "split_pipes"]


class CommandError(Exception):
    """A command refused with an IOS XR style message (printed as is)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message if message.endswith("\n") else message + "\n"


def split_pipes(line: str) -> tuple[str, list[str]]:
    """`cmd | utility sign nonce 12 | file x` -> ("cmd", ["utility sign nonce 12", "file x"]).
    A `|` inside quotes (the file-system options JSON) does not split."""
    parts, current, quote = [], [], ""
    for char in line:
        if quote:
            current.append(char)
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts[0].strip(), [p.strip() for p in parts[1:]]


def pipe_sign(session: Session, match: Match, output: str) -> str:
    nonce = parse_hex_nonce(match.args["nonce"])
    key, chain = session.device.signing_credentials()
    faults = session.device.faults
    fault = None
    kwargs: dict[str, Any] = {}
    if Fault.WRONG_NONCE in faults:
        fault = signing.SignFault.WRONG_NONCE
        stale = faults.params(Fault.WRONG_NONCE).get("nonce")
        if stale:
            kwargs["stale_nonce"] = parse_hex_nonce(str(stale))
    elif Fault.DATA_CHANGED in faults:
        fault = signing.SignFault.DATA_CHANGED
    elif Fault.OTHER_KEY in faults:
        fault = signing.SignFault.OTHER_KEY
        kwargs["other_key"] = session.device.other_key()
    certificates = chain if match.args.get("include") else None
    if Fault.TIMESTAMP_IN_DATA in faults:
        output = session.device.timestamp_text(session.device.clock.now()) + "\n" + output
    return signing.sign_output(output, nonce, key, certificates, fault=fault, **kwargs)


def pipe_file(session: Session, match: Match, output: str) -> str:
    path = session.device.harddisk_path(match.args["path"])
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(output, "utf-8")
        tmp.replace(path)
    except OSError as exc:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise CommandError(f"% Cannot write {match.args['path']}: {exc.strerror or exc}") from None
    return ""


def pipe_include(session: Session, match: Match, output: str) -> str:
    pattern = _regex(match.args["regex"])
    return "".join(line for line in output.splitlines(keepends=True) if pattern.search(line))


def pipe_count(session: Session, match: Match, output: str) -> str:
    pattern = _regex(match.args.get("regex", ""))
    count = sum(1 for line in output.splitlines() if pattern.search(line))
    return f"Number of lines which match regexp = {count}\n"


def pipe_exclude(session: Session, match: Match, output: str) -> str:
    pattern = _regex(match.args["regex"])
    return "".join(line for line in output.splitlines(keepends=True) if not pattern.search(line))


def pipe_begin(session: Session, match: Match, output: str) -> str:
    pattern = _regex(match.args["regex"])
    lines = output.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if pattern.search(line):
            return "".join(lines[index:])
    return ""


def _regex(text: str) -> re.Pattern[str]:
    """The pattern of `| include "a|b"` (quotes, which keep a `|` in the pattern, dropped)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    try:
        return re.compile(text)
    except re.error as exc:
        raise CommandError(f"% Invalid regular expression {text!r}: {exc}") from None


# --- exec handlers --------------------------------------------------------------------------
