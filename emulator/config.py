"""The device configuration as IOS XR keeps it: a tree of lines, committed or candidate.

Every configuration command is stored as its canonical line under the mode it was typed in.
A line's *key* (its first words, given by the command table) decides what it replaces:
``hostname b`` replaces ``hostname a``; ``task read system`` (keyed on the whole line) adds.
Semantics (the hostname, a trustpoint's settings, a user's groups) are read off the tree after
a commit, so the tree is the one source of truth and `show running-config` prints it directly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

__all__ = ["SECTION_ORDER", "ConfigNode", "render_running_config", "running_config_sections"]


@dataclass
class ConfigNode:
    """A configuration line and, for a submode (`crypto ca trustpoint X`), its children."""

    line: str = ""
    key: str = ""
    children: list["ConfigNode"] = field(default_factory=list)
    submode: bool = False

    def find(self, key: str) -> "ConfigNode | None":
        for child in self.children:
            if child.key == key:
                return child
        return None

    def set(self, line: str, key: str, *, submode: bool = False) -> "ConfigNode":
        """Add `line`, replacing the child with the same key; a submode keeps its children."""
        existing = self.find(key)
        if existing is not None:
            if existing.submode and submode and existing.line == line:
                return existing
            existing.line, existing.submode = line, submode
            if not submode:
                existing.children = []
            return existing
        node = ConfigNode(line, key, [], submode)
        self.children.append(node)
        return node

    def remove(self, key: str) -> bool:
        before = len(self.children)
        self.children = [c for c in self.children if c.key != key and not c.key.startswith(key + " ")]
        return len(self.children) != before

    def walk_path(self, path: list[str]) -> "ConfigNode":
        node = self
        for key in path:
            found = node.find(key)
            if found is None:
                raise KeyError(key)
            node = found
        return node

    def value(self, key: str, default: str | None = None) -> str | None:
        """The words after `key` in the child keyed `key` (``hostname r1`` -> ``r1``)."""
        child = self.find(key)
        if child is None:
            return default
        return child.line[len(key) :].strip()

    def lines(self, prefix: str) -> Iterator["ConfigNode"]:
        for child in self.children:
            if child.line == prefix or child.line.startswith(prefix + " "):
                yield child

    def clone(self) -> "ConfigNode":
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "key": self.key,
            "submode": self.submode,
            "children": [c.to_dict() for c in self.children],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConfigNode":
        return cls(
            data["line"], data["key"], [cls.from_dict(c) for c in data.get("children", [])], data.get("submode", False)
        )

    def render(self, depth: int = 0) -> list[str]:
        """The lines as IOS XR prints them: one space of indent per submode; at the top level a
        submode's block is closed by `!`, and opened by one unless a `!` is already there."""
        out: list[str] = []
        for child in self.children:
            if depth == 0 and child.submode and out and out[-1] != "!":
                out.append("!")
            out.append(" " * depth + child.line)
            if child.submode:
                out.extend(child.render(depth + 1))
                if depth == 0:
                    out.append("!")
        return out


# The order of top-level sections in `show running-config`. The seed's running-configuration
# examples print `ssh server ...` before `line default`, and `netconf-yang agent` before `domain
# name`; where the seed is silent the order is IOS XR's (users and AAA first). A section's lines
# keep the order they were configured in; sections not listed follow, in that order too.
SECTION_ORDER = (
    "hostname",
    "taskgroup",
    "usergroup",
    "username",
    "crypto ca trustpool",
    "crypto ca trustpoint",
    "filesystem-inventory",
    "logging",
    "snmp-server",
    "ssh",
    "line",
    "netconf-yang",
    "domain",
)


def _section_rank(line: str) -> int:
    for rank, prefix in enumerate(SECTION_ORDER):
        if line == prefix or line.startswith(prefix + " "):
            return rank
    return len(SECTION_ORDER)


def running_config_sections(patterns: Iterable[str]) -> set[str]:
    """The words `show running-config <section>` accepts: each configuration command's first."""
    return {pattern.split()[0] for pattern in patterns if pattern.split()}


def render_running_config(root: ConfigNode, *, version: str, last_change: str, section: str | None) -> str:
    """`show running-config [section]` text ('' when the section has nothing configured)."""
    ordered = ConfigNode(children=sorted(root.children, key=lambda child: _section_rank(child.line)))
    if section:
        wanted = section.split()
        selected = ConfigNode(children=[c for c in ordered.children if c.line.split()[: len(wanted)] == wanted])
        body = selected.render()
        return "\n".join(body) + "\n" if body else ""
    header = [
        "Building configuration...",
        f"!! IOS XR Configuration {version}",
        f"!! Last configuration change at {last_change}",
        "!",
    ]
    body = ordered.render()
    return "\n".join(header + body + ["end"]) + "\n"
