"""`dossier demo`: the main job on an embedded emulator fleet."""

from __future__ import annotations

import click


@click.command("demo")
def demo_command() -> None:
    """Start an in-process emulator fleet, collect a signed dossier from each device and verify it."""
    raise click.ClickException("the demo is not built yet")


def register(group: click.Group) -> None:
    group.add_command(demo_command)
