"""TPM attestation evidence (IOS XR `Cisco-IOS-XR-remote-attestation-act` over NETCONF):
the TPM 2.0 structures (`structures`), the model's replies (`replies`) and their verification
(`attestation.verify_tpm_output`). docs/design/tpm-verification.md says why it is built so."""

from .attestation import IMA_PCR, TPMInputs, verify_tpm_output
from .replies import NAMESPACE, ReplyError
from .structures import TPMFormatError

__all__ = ["IMA_PCR", "NAMESPACE", "ReplyError", "TPMFormatError", "TPMInputs", "verify_tpm_output"]
