"""Device emulator: an SSH server that behaves like IOS XR for the dossier commands."""

__all__: list[str] = []
