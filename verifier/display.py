"""Text from devices, stores and files made inert before a terminal shows it.

A certificate subject, a device name, a file path or an error message that quotes any of them
is data: its control characters must not move the cursor, clear lines or end a line (a crafted
issuer once printed fake fingerprint lines and hid the real ones), and Rich must not read its
brackets as markup (`[bold red]` restyled the table, `[/]` crashed it). The verifier is the lowest
layer every CLI imports, so this is the one place that does it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["cell", "inert"]

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
