"""Human tables of the collector's commands: a Rich table on a terminal, one record per line
elsewhere.

A table wrapped at 80 columns into a CI log or a cron mail splits finding ids and fingerprints
across lines (`signature.invali` / `d`), and `grep` then misses them. Off a terminal each row
is one line of `column=value` fields (a value with a space, `=` or `"` is double-quoted), so every
id stays whole and a line names its device.
"""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from verifier.display import cell, inert

__all__ = ["print_table", "record_line"]


def record_line(fields: Sequence[tuple[str, Text | str]]) -> str:
    """`name=value name2="two words"`; empty values are left out."""
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


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Text | str]],
                details: Sequence[Sequence[str]] | None = None, console: Console | None = None) -> None:
    """Print `rows` under `columns`; `details[i]`: lines shown under row i (e.g. each finding's
    message with --verbose), indented on a terminal, one line each elsewhere. Values are shown
    inert (the caller's `cell`s, or plain strings made into cells here)."""
    console = console or Console()
    if not console.is_terminal:
        click.echo(f"# {inert(title)}")
        for index, row in enumerate(rows):
            click.echo(record_line(list(zip(columns, row, strict=True))))
            for line in details[index] if details else ():
                click.echo(f"  {inert(line)}")
        return
    grid = Table(title=cell(title))
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(value if isinstance(value, Text) else cell(value) for value in row))
    console.print(grid)
    if details and any(details):
        for row, lines in zip(rows, details, strict=True):
            name = row[0].plain if isinstance(row[0], Text) else row[0]
            for line in lines:
                console.print(cell(f"{name}: {line}"), soft_wrap=True)
