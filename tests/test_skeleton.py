"""The project's shape: one `dossier` command, schemas that load, packages that stay apart."""

from __future__ import annotations

import ast
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

import schemas
from dossier_cli.main import cli

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_subcommands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Exit codes" in result.output


@pytest.mark.parametrize("name", schemas.names())
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(schemas.load(name))


def _imported_top_packages(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("verifier", {"collector", "emulator", "dossier_cli"}),
        ("emulator", {"collector", "verifier", "dossier_cli"}),
        ("collector", {"emulator", "dossier_cli"}),
    ],
)
def test_package_dependencies_go_one_way(package: str, forbidden: set[str]) -> None:
    assert not (_imported_top_packages(package) & forbidden)
