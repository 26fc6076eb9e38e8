"""What a command handler talks to: an exec channel (no PTY) or an interactive terminal.

Handlers write text and sometimes ask a question (`How many bits in the modulus [2048]:`).
On an exec channel a question reads a line from the channel's stdin and takes the default at
end of input, so `ssh host 'crypto key generate rsa k'` works unattended. On a terminal the
line editor echoes what the user types (screen-scraping clients wait for that echo), and long
output stops at the terminal length with ` --More-- ` (space: a page, return: a line, q: quit).
"""

from __future__ import annotations

import codecs
import socket
import time
from typing import Callable, Protocol

import paramiko

__all__ = ["ChannelTerminal", "LineEditor", "SessionClosed", "Terminal"]

# How long a question on an exec channel waits for a line of stdin before taking its default.
# A collector that sends no stdin must not hang on an unexpected question.
EXEC_ANSWER_TIMEOUT_S = 10.0
# Bound on one typed line: a terminal is not a file transfer.
MAX_LINE_CHARS = 64 * 1024
# What IOS XR prints when a page is full, and erases (backspace, blank, backspace) after a key.
MORE_PROMPT = " --More-- "
MORE_ERASE = "\b" * len(MORE_PROMPT) + " " * len(MORE_PROMPT) + "\b" * len(MORE_PROMPT)


class SessionClosed(Exception):
    """The client went away, or the session timed out."""


class Terminal(Protocol):
    interactive: bool

    def write(self, text: str) -> None: ...

    def ask(self, prompt: str, *, default: str = "", secret: bool = False) -> str: ...

    def read_block(self, prompt: str) -> str: ...

    def read_line(self, *, secret: bool = False, prompt: str = "") -> str: ...

    def page(self, text: str, length: int, *, shown: int = 0) -> None: ...


class ChannelTerminal:
    """A paramiko channel seen as a terminal. `pty` decides echo and CR-LF line ends."""

    def __init__(self, channel: paramiko.Channel, *, pty: bool, idle_timeout: Callable[[], float | None]) -> None:
        self.channel = channel
        self.interactive = pty
        self.width = 80
        self._idle_timeout = idle_timeout
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._eof = False
        self.history: list[str] = []
        self.write_hook: Callable[[bytes], None] | None = None
        # `?` help and Tab completion: given the line so far, what may come next.
        self.help_hook: Callable[[str], list[str]] | None = None

    # -- output ----------------------------------------------------------------------------
    def write(self, text: str) -> None:
        if not text:
            return
        if self.interactive:
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        data = text.encode("utf-8")
        try:
            if self.write_hook is not None:
                self.write_hook(data)
            else:
                self.channel.sendall(data)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SessionClosed(str(exc)) from exc

    def page(self, text: str, length: int, *, shown: int = 0) -> None:
        """Write command output, stopping every `length` - 1 lines at ` --More-- ` on a
        terminal (`shown`: lines of this output already on screen, the timestamp line).
        Exec channels and `terminal length 0` get the text in one piece."""
        lines = text.splitlines(keepends=True)
        if not self.interactive or length <= 0 or len(lines) + shown < length:
            self.write(text)
            return
        room = max(1, length - 1 - shown)
        index = 0
        while index < len(lines):
            self.write("".join(lines[index : index + room]))
            index += room
            if index >= len(lines):
                return
            self.write(MORE_PROMPT)
            key = self._more_key()
            self.write(MORE_ERASE)
            if key == " ":
                room = max(1, length - 1)
            elif key in "\r\n":
                room = 1
            else:  # q, Ctrl-C, anything else: the rest of the output is dropped
                return

    def _more_key(self) -> str:
        """One key typed at ` --More-- ` (the rest of a chunk is kept for the line editor)."""
        chunk = self._typed_chars()
        if chunk == "":
            raise SessionClosed("end of input")
        key, rest = chunk[0], chunk[1:]
        if key == "\r" and rest[:1] in ("\n", "\x00"):
            rest = rest[1:]  # CR LF / CR NUL is one Return
        self._pending = rest + self._pending
        return key

    def _typed_chars(self) -> str:
        """What the user typed next ('' at end of input); the idle timeout ends the session."""
        try:
            return self._read_chars(self._idle_timeout())
        except socket.timeout:
            raise SessionClosed("idle timeout") from None

    # -- input -----------------------------------------------------------------------------
    def _read_chars(self, timeout: float | None) -> str:
        """Next decoded chunk from the client, '' at end of input."""
        if self._pending:
            chunk, self._pending = self._pending, ""
            return chunk
        if self._eof:
            return ""
        self.channel.settimeout(timeout)
        try:
            data = self.channel.recv(4096)
        except socket.timeout:
            raise
        except (OSError, EOFError) as exc:
            raise SessionClosed(str(exc)) from exc
        if not data:
            self._eof = True
            return ""
        return self._decoder.decode(data)

    def _read_plain_line(self, timeout: float) -> str | None:
        """A line from exec stdin (no echo); None at end of input or time-out."""
        buffered = ""
        deadline = time.monotonic() + timeout
        while True:
            if "\n" in buffered:
                line, rest = buffered.split("\n", 1)
                self._pending = rest + self._pending
                return line.rstrip("\r")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._pending = buffered + self._pending
                return None
            try:
                chunk = self._read_chars(remaining)
            except socket.timeout:
                self._pending = buffered + self._pending
                return None
            if chunk == "":
                return buffered.rstrip("\r") if buffered else None
            buffered += chunk

    def ask(self, prompt: str, *, default: str = "", secret: bool = False) -> str:
        self.write(prompt)
        if self.interactive:
            answer = self.read_line(secret=secret)
            return answer.strip() or default
        answer = self._read_plain_line(EXEC_ANSWER_TIMEOUT_S)
        self.write("\n")
        return default if answer is None or not answer.strip() else answer.strip()

    def read_block(self, prompt: str) -> str:
        """Pasted text (a PEM certificate), ended by an empty line or `quit`."""
        self.write(prompt)
        lines: list[str] = []
        while True:
            if self.interactive:
                line = self.read_line()
            else:
                got = self._read_plain_line(EXEC_ANSWER_TIMEOUT_S)
                if got is None:
                    break
                line = got
            if not line.strip() or line.strip() == "quit":
                if lines:
                    break
                continue
            lines.append(line.strip())
        return "\n".join(lines)

    def read_line(self, *, secret: bool = False, prompt: str = "") -> str:
        """One line typed at the terminal, with echo and editing."""
        editor = LineEditor(self, history=[] if secret else self.history, secret=secret, prompt=prompt)
        while True:
            chunk = self._typed_chars()
            if chunk == "":
                if editor.buffer:
                    return "".join(editor.buffer)
                raise SessionClosed("end of input")
            done = editor.feed(chunk)
            if done is not None:
                return done


class LineEditor:
    """Enough of an IOS-style line editor for a person typing through `ssh -tt`:
    echo, backspace, Ctrl-A/E/B/F/U/W/K, left/right arrows, history up/down, Ctrl-C, Ctrl-Z."""

    CTRL_C = "\x03"
    CTRL_Z = "\x1a"

    def __init__(self, term: ChannelTerminal, *, history: list[str], secret: bool, prompt: str) -> None:
        self.term = term
        self.history = history
        self.secret = secret
        self.prompt = prompt
        self.buffer: list[str] = []
        self.cursor = 0
        self.hist_index = len(history)
        self._escape = ""
        self.result: str | None = None

    def _echo(self, text: str) -> None:
        if not self.secret:
            self.term.write(text)

    def _replace_line(self, text: str) -> None:
        old_len = len(self.buffer)
        self._echo("\b" * self.cursor + text + " " * max(0, old_len - len(text)) + "\b" * max(0, old_len - len(text)))
        self.buffer = list(text)
        self.cursor = len(text)

    def _insert(self, char: str) -> None:
        if len(self.buffer) >= MAX_LINE_CHARS:
            return
        tail = "".join(self.buffer[self.cursor :])
        self.buffer.insert(self.cursor, char)
        self.cursor += 1
        self._echo(char + tail + "\b" * len(tail))

    def _delete_before(self, count: int) -> None:
        count = min(count, self.cursor)
        if count == 0:
            return
        tail = "".join(self.buffer[self.cursor :])
        del self.buffer[self.cursor - count : self.cursor]
        self.cursor -= count
        self._echo("\b" * count + tail + " " * count + "\b" * (len(tail) + count))

    def feed(self, chunk: str) -> str | None:
        """Process typed characters; return the line when Enter is pressed."""
        for index, char in enumerate(chunk):
            line = self._feed_char(char)
            if line is not None:
                rest = chunk[index + 1 :]
                if rest.startswith("\n") or rest.startswith("\x00"):
                    rest = rest[1:]
                self.term._pending = rest + self.term._pending
                return line
        return None

    def _feed_char(self, char: str) -> str | None:
        if self._escape:
            self._escape += char
            return self._handle_escape()
        if char == "\x1b":
            self._escape = char
            return None
        if char in "\r\n":
            self.term.write("\n")
            line = "".join(self.buffer)
            if line.strip() and not self.secret and (not self.history or self.history[-1] != line):
                self.history.append(line)
            return line
        if char in ("\x7f", "\x08"):
            self._delete_before(1)
        elif char == "\x01":  # Ctrl-A
            self._echo("\b" * self.cursor)
            self.cursor = 0
        elif char == "\x05":  # Ctrl-E
            self._echo("".join(self.buffer[self.cursor :]))
            self.cursor = len(self.buffer)
        elif char == "\x02":  # Ctrl-B
            self._left()
        elif char == "\x06":  # Ctrl-F
            self._right()
        elif char == "\x15":  # Ctrl-U
            self._replace_line("")
        elif char == "\x0b":  # Ctrl-K
            tail = len(self.buffer) - self.cursor
            self._echo(" " * tail + "\b" * tail)
            del self.buffer[self.cursor :]
        elif char == "\x17":  # Ctrl-W
            text = "".join(self.buffer[: self.cursor])
            stripped = text.rstrip()
            word_start = stripped.rfind(" ") + 1
            self._delete_before(self.cursor - word_start)
        elif char == "\x10":  # Ctrl-P
            self._history(-1)
        elif char == "\x0e":  # Ctrl-N
            self._history(+1)
        elif char == self.CTRL_C:
            self.term.write("\n")
            return "\x03"
        elif char == self.CTRL_Z:
            self.term.write("\n")
            return "\x1a"
        elif char == "?" and self.prompt and self.term.help_hook is not None:
            self._help()
        elif char == "\t" and self.prompt and self.term.help_hook is not None:
            self._complete()
        elif char == "\t" or char == "\x00":
            pass
        elif char >= " ":
            self._insert(char)
        return None

    def _help(self) -> None:
        """IOS `?`: list what may come next, then redraw the prompt and the line."""
        text = "".join(self.buffer)
        options = self.term.help_hook(text) if self.term.help_hook else []
        listing = "".join(f"  {option}\n" for option in options) or "% Unrecognized command\n"
        self.term.write("?\n" + listing + "\n" + self.prompt + text)
        self.cursor = len(self.buffer)

    def _complete(self) -> None:
        """Tab: finish a partly typed keyword when only one keyword fits."""
        text = "".join(self.buffer[: self.cursor])
        if not text or text.endswith(" ") or self.cursor != len(self.buffer):
            return
        options = self.term.help_hook(text) if self.term.help_hook else []
        if len(options) == 1 and not options[0].startswith("<"):
            partial = text.split()[-1]
            for char in options[0][len(partial) :] + " ":
                self._insert(char)

    def _handle_escape(self) -> str | None:
        seq = self._escape
        if seq == "\x1b" or seq in ("\x1b[", "\x1bO") or (seq.startswith("\x1b[") and seq[-1].isdigit()):
            return None  # sequence not complete yet
        self._escape = ""
        final = seq[-1]
        if final == "A":
            self._history(-1)
        elif final == "B":
            self._history(+1)
        elif final == "C":
            self._right()
        elif final == "D":
            self._left()
        elif final == "H":
            self._echo("\b" * self.cursor)
            self.cursor = 0
        elif final == "F":
            self._echo("".join(self.buffer[self.cursor :]))
            self.cursor = len(self.buffer)
        elif seq == "\x1b[3~" and self.cursor < len(self.buffer):
            self._right()
            self._delete_before(1)
        return None

    def _left(self) -> None:
        if self.cursor > 0:
            self.cursor -= 1
            self._echo("\b")

    def _right(self) -> None:
        if self.cursor < len(self.buffer):
            self._echo(self.buffer[self.cursor])
            self.cursor += 1

    def _history(self, step: int) -> None:
        if not self.history:
            return
        index = self.hist_index + step
        if index < 0 or index > len(self.history):
            return
        self.hist_index = index
        self._replace_line(self.history[index] if index < len(self.history) else "")
