"""Verifier: prove a signed dossier envelope (signature, two-tier chain, nonce)."""

__all__: list[str] = []
