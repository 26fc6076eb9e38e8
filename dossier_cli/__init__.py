"""The `dossier` console command: one click group that gathers each package's subcommands.

The packages stay independent (collector -> verifier only; emulator and verifier import
neither); this package is the only place that sees all of them, which is why `dossier demo`
(emulator + collector together) lives here.
"""

__all__: list[str] = []
