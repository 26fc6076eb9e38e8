"""The emulated TPM vendor's CA: a root and an attestation sub-CA that certify every node's AK.

One authority per fleet state directory (as the XE SUDI authority), so a verifier pins one root
for the whole fleet: `Fleet.tpm_authority().root`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The SUDI authority's helpers: one way to make an emulated vendor CA and store its files.
from ..iosxe import CA_NOT_AFTER, _ca_certificate, _ca_name, _write

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


_LOCK = threading.Lock()
_AUTHORITIES: dict[Path, TpmAuthority] = {}


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_authority(state_dir: Path) -> TpmAuthority:
    """The fleet's TPM vendor CA under `state_dir/tpm-vendor-ca`, made on first use."""
    folder = (Path(state_dir) / AUTHORITY_DIR).resolve()
    with _LOCK:
        cached = _AUTHORITIES.get(folder)
        if cached is not None:
            return cached
        root_path, sub_path, key_path = folder / "root.pem", folder / "sub-ca.pem", folder / "sub-ca.key"
        if root_path.exists() and sub_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise TpmAuthorityError(f"TPM vendor CA key {key_path} is damaged: expected an EC private key")
            authority = TpmAuthority(x509.load_pem_x509_certificate(root_path.read_bytes()),
                                     x509.load_pem_x509_certificate(sub_path.read_bytes()), key)
        else:
            root_key = ec.generate_private_key(ec.SECP256R1())
            sub_key = ec.generate_private_key(ec.SECP256R1())
            root_name = _ca_name("Emulated TPM Vendor Root CA")
            root = _ca_certificate(root_name, root_name, root_key.public_key(), root_key,  # type: ignore[arg-type]
                                   root_key.public_key(), None)
            sub_ca = _ca_certificate(_ca_name("Emulated TPM Attestation CA"), root_name, sub_key.public_key(),
                                     root_key, root_key.public_key(), 0)  # type: ignore[arg-type]
            # The root key is not kept: nothing after this needs it.
            _write(key_path, _private_pem(sub_key), 0o600)
            _write(sub_path, sub_ca.public_bytes(serialization.Encoding.PEM))
            _write(root_path, root.public_bytes(serialization.Encoding.PEM))
            authority = TpmAuthority(root, sub_ca, sub_key)
        _AUTHORITIES[folder] = authority
        return authority
