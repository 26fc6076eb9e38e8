"""The emulator's NETCONF agent (RFC 6241/6242) and its attestation RPCs (docs/tpm-attestation.md)."""

__all__: list[str] = []
