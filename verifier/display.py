"""Text from devices, stores and files made inert before a terminal shows it.

A certificate subject, a device name, a file path or an error message that quotes any of them
is data: its control characters must not move the cursor, clear lines or end a line (a crafted
issuer once printed fake fingerprint lines and hid the real ones), and Rich must not read its
brackets as markup (`[bold red]` restyled the table, `[/]` crashed it). The verifier is the lowest
layer every CLI imports, so this is the one place that does it.

Human tables (`print_table`) are a Rich table on a terminal and one record per line elsewhere:
a table wrapped at 80 columns into a CI log or a cron mail splits finding ids and fingerprints
across lines (`signature.invali` / `d`), and `grep` then misses them. Off a terminal each row is
one line of `column=value` fields (a value with a space, `=` or a quote is quoted as a shell
reads it), so every id stays whole and a line names its device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = ["cell", "inert", "inert_lines", "print_table", "record_line"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def inert(value: object) -> str:
    """`str(value)` with each non-printable character shown as its escape, on one line.

    Non-printable is Python's `str.isprintable`: controls (ESC, BEL, newline, DEL, C1), format
    characters (bidi overrides, zero widths), line and paragraph separators, spaces other than
    ' ', unassigned and private code points. ESC becomes the four characters `\\x1b`, a newline
    `\\n`. Backslashes are left alone (paths and RFC 4514 names use them); what an escape hides
    is only ever shown, never acted on.
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def inert_lines(value: object, indent: str = "  ") -> str:
    """A multi-line message (an inventory's list of mistakes) made inert line by line, each line
    after the first indented: it reads as one message, and no line of it can pass for another
    message (an `error:` line) whatever a line holds."""
    return ("\n" + indent).join(inert(line) for line in str(value).split("\n"))


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def cell(value: object, style: str = "") -> Text:
    """A Rich table cell (or title) showing `value` literally: inert, and never read as markup."""
    from rich.text import Text  # here: `inert` alone (a verdict as JSON) does not need Rich

    return Text("" if value is None else inert(value), style=style)


def record_line(fields: Sequence[tuple[str, Text | str]]) -> str:
    """`name=value name2="two words"`; empty values are left out."""
    from rich.text import Text

    parts = []
    for name, value in fields:
        text = value.plain if isinstance(value, Text) else inert(value)
        if not text:
            continue
        parts.append(f"{name.replace(' ', '_')}={_quoted(text)}")
    return " ".join(parts)


def _quoted(text: str) -> str:
    """As a shell would read it: bare when plain, else in double quotes, or single quotes when it
    holds a double quote and no single one (JSON stays legible). Backslashes stay as `inert`
    wrote them (`\\x1b`)."""
    if not any(ch in text for ch in " ='\""):
        return text
    if '"' in text and "'" not in text:
        return f"'{text}'"
    return '"' + text.replace('"', '\\"') + '"'


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Text | str]],
                details: Sequence[Sequence[str]] | None = None, console: Console | None = None,
                no_wrap: Sequence[str] = ()) -> None:
    """Print `rows` under `columns` (see the module docstring); `details[i]`: lines shown under
    row i (e.g. each finding's message with --verbose), indented on a terminal, one line each
    elsewhere; `no_wrap`: columns a terminal table never folds (a device name split over two
    lines reads as two devices). Values are shown inert (the caller's `cell`s, or plain strings
    made into cells here)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    if not console.is_terminal:
        if title:
            click.echo(f"# {inert(title)}")
        for index, row in enumerate(rows):
            click.echo(record_line(list(zip(columns, row, strict=True))))
            for line in details[index] if details else ():
                click.echo(f"  {inert(line)}")
        return
    grid = Table(title=cell(title) if title else None)
    for column in columns:
        grid.add_column(column, overflow="fold", no_wrap=column in no_wrap)
    for row in rows:
        grid.add_row(*(value if isinstance(value, Text) else cell(value) for value in row))
    console.print(grid)
    if details and any(details):
        for row, lines in zip(rows, details, strict=True):
            name = row[0].plain if isinstance(row[0], Text) else row[0]
            for line in lines:
                console.print(cell(f"{name}: {line}"), soft_wrap=True)
