"""The emulated TPM vendor's CA: a root and an attestation sub-CA that certify every node's AK.

One authority per fleet state directory (as the XE SUDI authority), so a verifier pins one root
for the whole fleet: `Fleet.tpm_authority().root`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# One way to make an emulated vendor CA and store its files (the SUDI authority's too).
from ..iosxe import CA_NOT_AFTER, load_vendor_ca

__all__ = ["AUTHORITY_DIR", "TpmAuthority", "TpmAuthorityError", "load_authority"]

AUTHORITY_DIR = "tpm-vendor-ca"  # under the fleet's state directory, beside the device folders


class TpmAuthorityError(Exception):
    """The stored TPM vendor CA is damaged."""


@dataclass
class TpmAuthority:
    root: x509.Certificate
    sub_ca: x509.Certificate
    sub_ca_key: ec.EllipticCurvePrivateKey

    def issue_ak(self, public_key: ec.EllipticCurvePublicKey, *, hostname: str, node: str,
                 chassis_serial: str, now: datetime) -> x509.Certificate:
        """The AK certificate of one node's TPM (digitalSignature only, not a CA)."""
        subject = x509.Name([
            x509.NameAttribute(NameOID.SERIAL_NUMBER, chassis_serial),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trust-dossier emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{hostname} {node} AIK"),
        ])
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.sub_ca.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(CA_NOT_AFTER)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.sub_ca_key.public_key()),
                           critical=False)
            .sign(self.sub_ca_key, hashes.SHA256())
        )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TpmAuthorityError(f"TPM vendor CA key {path} is damaged: expected an EC private key")
    return key


def load_authority(state_dir: Path) -> TpmAuthority:
    """The fleet's TPM vendor CA under `state_dir/tpm-vendor-ca`, made on first use."""
    return load_vendor_ca(Path(state_dir) / AUTHORITY_DIR, "Emulated TPM Vendor Root CA",
                          "Emulated TPM Attestation CA",
                          lambda: ec.generate_private_key(ec.SECP256R1()), _load_key, TpmAuthority)
