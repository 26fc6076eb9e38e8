"""Start-up: `dossier` imports a subcommand's module only when that subcommand runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from click.utils import make_default_short_help
from cryptography.hazmat.primitives.serialization import Encoding

from dossier_cli.main import SUBCOMMANDS, cli, load_subcommand
from vbuilder import NOW, Device

ROOT = Path(__file__).resolve().parent.parent

# Runs the command in a fresh interpreter, then prints the top-level packages it imported.
_PROBE = """
import json, sys
from dossier_cli.main import cli
try:
    cli(sys.argv[1:], prog_name="dossier")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"exit": code, "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""

#: Heavy packages a command that does not use them must not import.
_HEAVY = {"paramiko", "emulator", "collector", "rich", "jsonschema"}


def _imported(*args: str) -> tuple[int, set[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=60, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["exit"], set(report["modules"])


@pytest.mark.parametrize("args", [["--help"], ["verify", "--help"], ["trust", "--help"]])
def test_help_imports_no_collector_emulator_paramiko_or_rich(args: list[str]) -> None:
    code, modules = _imported(*args)
    assert code == 0
    assert not modules & _HEAVY, f"dossier {' '.join(args)} imported {sorted(modules & _HEAVY)}"


def test_verify_json_imports_only_the_verifier(tmp_path: Path) -> None:
    device = Device("rsa2048", "rsa2048")
    envelope = tmp_path / "envelope.json"
    envelope.write_bytes(device.envelope())
    root = tmp_path / "root.pem"
    root.write_bytes(device.root.public_bytes(Encoding.PEM))
    code, modules = _imported("verify", "--json", "--root", str(root), "--nonce", device.nonce.hex(),
                              "--at", NOW.isoformat(), str(envelope))
    assert code == 0  # trusted: the run really verified
    assert not modules & _HEAVY, f"dossier verify --json imported {sorted(modules & _HEAVY)}"


def test_help_lists_every_subcommand_with_its_own_short_help() -> None:
    result = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in SUBCOMMANDS:
        assert f"  {name} " in result.output


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_lazy_table_matches_the_command(name: str) -> None:
    """The short help kept in the table is the command's own (first sentence of its help)."""
    command = load_subcommand(name)
    assert command.name == name
    assert make_default_short_help(SUBCOMMANDS[name][1], 1000) == command.get_short_help_str(1000)


def test_lazy_table_holds_every_registered_command() -> None:
    """Each package's `register()` names its subcommands; the lazy table must list each of them
    (a command added to a package but not to the table would be missing from `dossier`)."""
    from collector import cli as collector_cli
    from dossier_cli import demo, ear
    from emulator import cli as emulator_cli
    from verifier import cli as verifier_cli

    registered = click.Group()
    for module in (collector_cli, demo, ear, emulator_cli, verifier_cli):
        module.register(registered)
    assert set(registered.commands) == set(SUBCOMMANDS)
    for name, command in registered.commands.items():
        assert load_subcommand(name) is command
