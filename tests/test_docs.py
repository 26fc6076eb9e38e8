"""The README stays a short user guide, and the links between the docs resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: The README is the user's first page: what it is, the two commands, a day with devices, exit
#: codes and links. Anything longer belongs in docs/ (per topic) or docs/design/ (reasons).
MAX_README_BYTES = 16_000
#: The README's two commands, verbatim: .ci/run runs the second, users type the first.
README_COMMANDS = (
    "python3 -m pip install -e . && dossier demo",
    "python3 -m pip install -q -e '.[test]' && python3 -m pytest -q -n 2",
)

# [text](target) outside code; targets with a scheme (https:, mailto:) are not ours to check.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _links(path: Path) -> list[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return [target for target in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_anchor(heading) for heading in _HEADING.findall(text)}


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size < MAX_README_BYTES, (
        f"README.md is {size} bytes, expected under {MAX_README_BYTES}: move reference material to "
        "docs/<topic>.md, reasons to docs/design/, figures to BENCHMARKS.md, history to CHANGELOG.md")


def test_readme_keeps_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    for command in README_COMMANDS:
        assert command in text, f"README.md: expected the command {command!r} verbatim, not found"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert README_COMMANDS[1] in ci, ".ci/run must run exactly the README's test command"


def test_readme_links_to_every_user_doc() -> None:
    linked = {target.split("#")[0] for target in _links(README)}
    user_docs = {f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")}
    missing = sorted(user_docs - linked)
    assert not missing, f"README.md: expected a link to each of docs/*.md, missing {missing}"


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(path: Path) -> None:
    broken = []
    for target in _links(path):
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved}")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{fragment} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"
