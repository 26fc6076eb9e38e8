"""Subcommands of `dossier` that belong to the collector package."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this package's subcommands to the top-level `dossier` group."""
