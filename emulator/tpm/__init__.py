"""The emulated TPM behind each device's NETCONF attestation RPCs (docs/tpm-attestation.md)."""

__all__: list[str] = []
