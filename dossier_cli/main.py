"""Entry point for the `dossier` command."""

from __future__ import annotations

import logging

import click

from collector import cli as collector_cli
from emulator import cli as emulator_cli
from verifier import cli as verifier_cli

from . import demo

__all__ = ["cli", "main"]

EXIT_CODES_HELP = """\b
Exit codes:
  0  success (for verify/collect: every envelope collected and trusted)
  1  at least one envelope or device failed or is not trusted
  2  usage, configuration or input error
"""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(package_name="trust-dossier")
def cli() -> None:
    """Collect, verify and emulate signed IOS XR data dossiers.

    Routers running IOS XR print a data dossier (packages, reboot and rollback history,
    inventory, file-system inventory, integrity measurements) and sign it, bound to a nonce,
    with a key that chains to a root made on the router. This tool collects those envelopes
    over SSH, proves them, and emulates a fleet of such routers for testing.
    """


for module in (emulator_cli, verifier_cli, collector_cli, demo):
    module.register(cli)


def main() -> None:
    # Warnings (trust on first use, insecure switches) reach stderr as one plain line each;
    # paramiko's own thread logs connection resets that the commands already report.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    cli(prog_name="dossier")


if __name__ == "__main__":  # pragma: no cover
    main()
