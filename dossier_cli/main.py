"""Entry point for the `dossier` command."""

from __future__ import annotations

import importlib
import logging

import click
from click.formatting import HelpFormatter
from click.utils import make_default_short_help

__all__ = ["cli", "main"]

#: Each subcommand -> ("module:attribute" that defines it, the first sentence of its help).
#: A subcommand's module is imported only when that subcommand runs, so `dossier --help` and
#: `dossier verify` do not import paramiko, the emulator, the collector or rich. The help is
#: copied here so that `dossier --help` can list it without importing anything;
#: tests/test_skeleton.py checks it against each command and against each package's
#: `register()`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "appraise": ("collector.insights.cli:appraise_command",
                 "Appraise stored envelopes against a policy and store the results (replacing older ones)."),
    "collect": ("collector.cli:collect_command",
                "Poll devices for fresh signed dossiers, store them byte for byte, and verify each at once."),
    "demo": ("dossier_cli.demo:demo_command",
             "Start an in-process emulator fleet, collect a signed dossier from each device and verify it."),
    "diff": ("collector.insights.cli:diff_command",
             "Show what changed on a device between two dossiers: packages, files, reboots, commits, "
             "hardware, boot measurements, certificates."),
    "ear": ("dossier_cli.ear:ear_group",
            "Signed attestation results (IETF RATS EAR, as a JWT): issue one for a device, check one offline."),
    "emulator": ("emulator.cli:emulator_group",
                 "Emulated IOS XR and IOS XE routers over real SSH (for tests, demos and CI)."),
    "enroll": ("collector.enroll_cli:enroll_command",
               "Fetch each device's root certificate and enroll it in the trust store once confirmed."),
    "hostkeys": ("collector.hostkeys_cli:hostkeys_command",
                 "Pin each device's SSH host key in the inventory (its `host_key:` entry)."),
    "report": ("collector.insights.cli:report_command",
               "The fleet's trust posture: a table of devices (verification state: trusted, untrusted with "
               "the verifier's message, or unreachable since when; last trusted collection; days to "
               "certificate expiry; open findings; the appraisal status when one is stored) and per-device "
               "timelines of status and changes, as of the time it is made."),
    "serve": ("collector.service.cli:serve_group",
              "Serve the fleet's trust posture over HTTP: a JSON API under /api/v1/ (OpenAPI at /openapi.json)."),
    "status": ("collector.cli:status_command",
               "Show the fleet: last collection, verdict and certificate expiry per device."),
    "store": ("collector.cli:store_group", "Maintain the envelope store (index rebuild, pruning)."),
    "schedule": ("collector.distributed.cli:schedule_command",
                 "Start a run every interval: its fleet split into chunks sent to the workers' queues."),
    "trust": ("verifier.cli:trust_group", "Manage the trust store: which root(s) each device is enrolled with."),
    "verify": ("verifier.cli:verify_command",
               "Verify signed dossier envelopes (signature, chain to the enrolled root, nonce, dossier), or "
               "with --profile the signed outputs Cisco devices print (IOS XE SUDI, integrity, system "
               "integrity; KGV files)."),
    "worker": ("collector.distributed.cli:worker_command",
               "Collect chunks of devices sent by `dossier schedule`: poll, store, verify, sign, appraise."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands (`SUBCOMMANDS`) are imported when they are invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in SUBCOMMANDS:
            command = load_subcommand(cmd_name)
            self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: HelpFormatter) -> None:
        """The command list of `--help`, from `SUBCOMMANDS` for the ones not imported yet."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None:
                rows.append((name, make_default_short_help(SUBCOMMANDS[name][1], limit)))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def load_subcommand(name: str) -> click.Command:
    """Import and return the subcommand `name` of `SUBCOMMANDS`."""
    module, _, attribute = SUBCOMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{SUBCOMMANDS[name][0]}: expected a click command, found {type(command).__name__}")
    return command

EXIT_CODES_HELP = """\b
Exit codes:
  0  success (for verify/collect: every envelope collected and trusted)
  1  at least one envelope or device failed or is not trusted
  2  usage, configuration or input error
"""


@click.group(
    cls=LazyGroup,
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


def main() -> None:
    # Warnings (trust on first use, insecure switches) reach stderr as one plain line each;
    # paramiko's own thread logs connection resets that the commands already report.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    cli(prog_name="dossier")


if __name__ == "__main__":  # pragma: no cover
    main()
