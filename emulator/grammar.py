"""A small command grammar: IOS XR commands are rows of patterns, not `if` chains.

A pattern is a string of tokens separated by spaces:

- ``show`` — a keyword; the user may type any prefix that is unambiguous among the rows;
- ``{kind:rsa|dsa|ecdsa}`` — one keyword out of several, captured as ``kind``;
  ``{items:a|b|c}+`` — one or more of them, captured as a list;
- ``<label>`` — any one word, captured as ``label``; ``<days:1-18250>`` — an integer in range;
  ``<dn...>`` — the rest of the line, captured as one string (original spacing kept);
- ``[ ... ]`` — an optional group (may nest).

`match_line` returns the best row or a `GrammarError` that knows where IOS XR puts its caret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

__all__ = [
    "Arg",
    "Choice",
    "GrammarError",
    "Keyword",
    "Match",
    "Opt",
    "Row",
    "Word",
    "compile_pattern",
    "match_line",
    "tokenize",
]


@dataclass(frozen=True)
class Word:
    """One word of input and where it starts in the line (for the caret)."""

    text: str
    start: int


class GrammarError(Exception):
    """Input that matches no row. `kind` is 'invalid', 'incomplete' or 'ambiguous'."""

    def __init__(self, kind: str, position: int, line: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.position = position  # column of the offending word in `line`
        self.line = line

    def render(self, prompt_width: int | None) -> str:
        """The IOS XR error text. With `prompt_width` the line is already on screen after a
        prompt (interactive); without it, the command is echoed so the caret has a line to sit
        under (exec channel)."""
        if self.kind == "incomplete":
            return "% Incomplete command.\n"
        if self.kind == "ambiguous":
            return f'% Ambiguous command:  "{self.line.strip()}"\n'
        if prompt_width is None:
            return f"{self.line}\n{' ' * self.position}^\n% Invalid input detected at '^' marker.\n"
        return f"{' ' * (prompt_width + self.position)}^\n% Invalid input detected at '^' marker.\n"


_QUOTED_OR_WORD = re.compile(r"""'([^']*)'|"([^"]*)"|(\S+)""")


def tokenize(line: str) -> list[Word]:
    """Split on white space; a '...' or "..." token keeps its spaces (quotes dropped)."""
    words = []
    for m in _QUOTED_OR_WORD.finditer(line):
        text = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(3)
        words.append(Word(text, m.start()))
    return words


# --- pattern tokens -------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyword:
    word: str


@dataclass(frozen=True)
class Choice:
    name: str
    options: tuple[str, ...]
    repeat: bool = False


@dataclass(frozen=True)
class Arg:
    name: str
    low: int | None = None
    high: int | None = None
    rest: bool = False


@dataclass(frozen=True)
class Opt:
    items: tuple[Any, ...]


_PATTERN_TOKEN = re.compile(r"\[|\]|\{(\w+):([^}]+)\}(\+?)|<(\w+)(?::(\d+)-(\d+))?(\.\.\.)?>|[^\s\[\]]+")


def compile_pattern(pattern: str) -> tuple[Any, ...]:
    """Turn a pattern string into a tuple of tokens (see the module docstring)."""
    stack: list[list[Any]] = [[]]
    for m in _PATTERN_TOKEN.finditer(pattern):
        text = m.group(0)
        if text == "[":
            stack.append([])
        elif text == "]":
            items = stack.pop()
            stack[-1].append(Opt(tuple(items)))
        elif m.group(1):
            stack[-1].append(Choice(m.group(1), tuple(m.group(2).split("|")), bool(m.group(3))))
        elif m.group(4):
            low = int(m.group(5)) if m.group(5) else None
            high = int(m.group(6)) if m.group(6) else None
            stack[-1].append(Arg(m.group(4), low, high, bool(m.group(7))))
        else:
            stack[-1].append(Keyword(text))
    if len(stack) != 1:
        raise ValueError(f"unbalanced [ ] in pattern {pattern!r}")
    return tuple(stack[0])


@dataclass
class Row:
    """One command: its pattern, the handler, and whatever else its table needs (`meta`)."""

    pattern: str
    handler: Callable[..., Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    tokens: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        self.tokens = compile_pattern(self.pattern)


@dataclass
class Match:
    row: Row
    args: dict[str, Any]
    parts: list[str]  # the line as the canonical, fully spelled command
    exact: int  # keywords typed in full: more is a better match when abbreviations collide

    @property
    def canonical(self) -> str:
        return " ".join(self.parts)


def _keyword_matches(typed: str, keyword: str) -> bool:
    return keyword.lower().startswith(typed.lower()) and len(typed) > 0


def _walk(
    tokens: Sequence[Any], ti: int, words: Sequence[Word], wi: int, line: str, state: dict[str, int]
) -> Iterator[tuple[int, dict[str, Any], list[str], int]]:
    """Yield every way tokens[ti:] can consume words[wi:]: (next word index, args, parts, exact).

    `state["furthest"]` records the furthest word index at which some token failed, and
    `state["needs_more"]` whether some path ran out of words with tokens left (incomplete)."""
    if ti == len(tokens):
        yield wi, {}, [], 0
        return
    token = tokens[ti]
    if isinstance(token, Opt):
        for end, args, parts, exact in _walk(token.items, 0, words, wi, line, state):
            for end2, args2, parts2, exact2 in _walk(tokens, ti + 1, words, end, line, state):
                yield end2, {**args, **args2}, parts + parts2, exact + exact2
        yield from _walk(tokens, ti + 1, words, wi, line, state)
        return
    if wi == len(words):
        state["needs_more"] = max(state.get("needs_more", -1), wi)
        return
    word = words[wi]
    if isinstance(token, Keyword):
        if _keyword_matches(word.text, token.word):
            for end, args, parts, exact in _walk(tokens, ti + 1, words, wi + 1, line, state):
                yield end, args, [token.word] + parts, exact + (word.text.lower() == token.word.lower())
        else:
            state["furthest"] = max(state["furthest"], wi)
        return
    if isinstance(token, Choice):
        chosen = _choose(word.text, token.options)
        if chosen is None:
            state["furthest"] = max(state["furthest"], wi)
            return
        values = [chosen]
        next_wi = wi + 1
        if token.repeat:
            while next_wi < len(words):
                more = _choose(words[next_wi].text, token.options)
                if more is None:
                    break
                values.append(more)
                next_wi += 1
        value: Any = values if token.repeat else chosen
        for end, args, parts, exact in _walk(tokens, ti + 1, words, next_wi, line, state):
            yield end, {token.name: value, **args}, values + parts, exact + len(values)
        return
    if isinstance(token, Arg):
        if token.rest:
            text = line[word.start :].rstrip()
            yield len(words), {token.name: text}, [text], 0
            return
        value = word.text
        if token.low is not None:
            if not re.fullmatch(r"\d+", word.text) or not (token.low <= int(word.text) <= (token.high or 0)):
                state["furthest"] = max(state["furthest"], wi)
                return
            value = int(word.text)
        for end, args, parts, exact in _walk(tokens, ti + 1, words, wi + 1, line, state):
            yield end, {token.name: value, **args}, [word.text] + parts, exact
        return
    raise TypeError(f"unknown pattern token {token!r}")


def _choose(typed: str, options: Sequence[str]) -> str | None:
    exact = [o for o in options if o.lower() == typed.lower()]
    if exact:
        return exact[0]
    prefixed = [o for o in options if _keyword_matches(typed, o)]
    return prefixed[0] if len(prefixed) == 1 else None


def match_line(line: str, rows: Sequence[Row]) -> Match:
    """Return the row that matches the whole of `line`, or raise GrammarError."""
    words = tokenize(line)
    if not words:
        raise GrammarError("incomplete", 0, line)
    state = {"furthest": 0}
    best: list[Match] = []
    for row in rows:
        for end, args, parts, exact in _walk(row.tokens, 0, words, 0, line, state):
            if end == len(words):
                candidate = Match(row, args, parts, exact)
                if not best or exact > best[0].exact:
                    best = [candidate]
                elif exact == best[0].exact and all(b.row is not row for b in best):
                    best.append(candidate)
                break
            state["furthest"] = max(state["furthest"], end)
    if len(best) == 1:
        return best[0]
    if len(best) > 1:
        raise GrammarError("ambiguous", 0, line)
    if "needs_more" in state:  # the words are a valid beginning of some command
        raise GrammarError("incomplete", len(line), line)
    furthest = min(state["furthest"], len(words) - 1)
    raise GrammarError("invalid", words[furthest].start, line)


def _firsts(tokens: Sequence[Any], ti: int, out: set[str]) -> None:
    """What may come first in tokens[ti:] ("<cr>" when the command may end here)."""
    while ti < len(tokens):
        token = tokens[ti]
        if isinstance(token, Opt):
            _firsts(token.items, 0, out)
            ti += 1
            continue
        if isinstance(token, Keyword):
            out.add(token.word)
        elif isinstance(token, Choice):
            out.update(token.options)
        elif isinstance(token, Arg):
            out.add(f"<{token.name}>" if token.low is None else f"<{token.low}-{token.high}>")
        return
    out.add("<cr>")


def _expect(tokens: Sequence[Any], ti: int, words: Sequence[Word], wi: int, out: set[str]) -> None:
    if wi == len(words):
        _firsts(tokens, ti, out)
        return
    if ti == len(tokens):
        return
    token = tokens[ti]
    if isinstance(token, Opt):
        _expect(tuple(token.items) + tuple(tokens[ti + 1 :]), 0, words, wi, out)
        _expect(tokens, ti + 1, words, wi, out)
    elif isinstance(token, Keyword):
        if _keyword_matches(words[wi].text, token.word):
            _expect(tokens, ti + 1, words, wi + 1, out)
    elif isinstance(token, Choice):
        if _choose(words[wi].text, token.options) is not None:
            _expect(tokens, ti + 1, words, wi + 1, out)
            if token.repeat:
                _expect(tokens, ti, words, wi + 1, out)
    elif isinstance(token, Arg):
        if token.rest:
            out.add("<cr>")
        else:
            _expect(tokens, ti + 1, words, wi + 1, out)


def completions(line: str, rows: Sequence[Row]) -> list[str]:
    """What may be typed next after `line` (IOS `?` help): keywords, <args>, <cr>.

    A partial last word (no trailing space) is completed: only keywords it begins are listed."""
    words = tokenize(line)
    partial = ""
    if words and not line.endswith((" ", "\t")):
        partial = words[-1].text
        words = words[:-1]
    found: set[str] = set()
    for row in rows:
        _expect(row.tokens, 0, words, 0, found)
    if partial:
        found = {w for w in found if not w.startswith("<") and w.lower().startswith(partial.lower())}
    return sorted(found, key=lambda w: (w == "<cr>", w.startswith("<"), w))
