"""Helpers for the emulator PKI and signing tests: cached keys and the system trustpoint.

Keys are expensive (RSA-4096, DSA-2048), so each is generated once per test process and
shared by every test module that imports this one.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator.pki.certificates import make_leaf_certificate, make_root_certificate
from emulator.pki.keys import KeyPair, generate_keypair
from emulator.pki.trustpoints import TrustpointConfig

__all__ = [
    "KEY_TYPES",
    "SEED",
    "Chain",
    "cached_keypair",
    "outside_ca",
    "seed_trustpoint",
    "system_chain",
]

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "000_3516cfa80f137662.txt"

# ENVELOPE.md's table of leaf key types: name -> (kind, generate_keypair options).
KEY_TYPES: dict[str, tuple[str, dict[str, object]]] = {
    "rsa2048": ("rsa", {"modulus": 2048}),
    "rsa3072": ("rsa", {"modulus": 3072}),
    "rsa4096": ("rsa", {"modulus": 4096}),
    "ecdsa-p256": ("ecdsa", {"curve": "nistp256"}),
    "ecdsa-p384": ("ecdsa", {"curve": "nistp384"}),
    "ecdsa-p521": ("ecdsa", {"curve": "nistp521"}),
    "dsa2048": ("dsa", {"modulus": 2048}),
}
# The root for each leaf type: same family, the cheapest size (the leaf's type is what the
# envelope's algorithm depends on; every root type is still exercised once).
ROOT_TYPE_FOR = {
    "rsa2048": "rsa2048",
    "rsa3072": "rsa2048",
    "rsa4096": "rsa2048",
    "ecdsa-p256": "ecdsa-p256",
    "ecdsa-p384": "ecdsa-p384",
    "ecdsa-p521": "ecdsa-p521",
    "dsa2048": "dsa2048",
}

SEED_CREATED = datetime(2019, 10, 20, 13, 5, 26, tzinfo=timezone.utc)


@cache
def cached_keypair(key_type: str, role: str = "leaf") -> KeyPair:
    """One key of `key_type` per (type, role) per test process."""
    kind, options = KEY_TYPES[key_type]
    label = "system-enroll-key" if role == "leaf" else f"system-{role}-key"
    return generate_keypair(kind, label, now=SEED_CREATED, **options)  # type: ignore[arg-type]


def outside_ca(common_name: str = "Enterprise Root CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh P-256 root CA outside the device (for cut-and-paste enrollment), valid now."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(7).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def seed_trustpoint(kind: str = "rsa") -> TrustpointConfig:
    """The seed's "Generate System Trust Point" configuration."""
    return TrustpointConfig(
        name="system-trustpoint",
        keypair=(kind, "system-enroll-key"),
        ca_keypair=(kind, "system-root-key"),
        subject_name="CN=lab1-ads,C=US,ST=CA,L=San Jose,O=cisco systems,OU=ASR",
        ca_subject_name="CN=lab1-ca,C=US,ST=CA,L=San Jose,O=cisco systems,OU=ASR",
        enrollment="self",
        key_usage_certificate=["digitalsignature", "keyagreement", "dataencipherment"],
        key_usage_ca_certificate=["digitalsignature", "keycertsign", "crlsign"],
        lifetime_certificate=300,
        lifetime_ca_certificate=367,
        message_digest="sha256",
    )


class Chain:
    """A root and a leaf made by the emulator for one key type, valid now."""

    def __init__(self, key_type: str) -> None:
        kind = KEY_TYPES[key_type][0]
        self.key_type = key_type
        self.tp = seed_trustpoint(kind)
        self.root_key = cached_keypair(ROOT_TYPE_FOR[key_type], "root")
        self.leaf_key = cached_keypair(key_type, "leaf")
        now = datetime.now(timezone.utc) - timedelta(minutes=5)
        self.root: x509.Certificate = make_root_certificate(
            self.tp,
            self.root_key,
            chassis_serial="c44a11fc",
            fqdn="xr-0001.example.com",
            serial_number=0x0B62,
            now=now,
        )
        self.leaf: x509.Certificate = make_leaf_certificate(
            self.tp,
            self.leaf_key,
            root_cert=self.root,
            root_key=self.root_key,
            chassis_serial="c44a11fc",
            fqdn="xr-0001.example.com",
            ip_address=None,
            serial_number=0x0B63,
            now=now,
        )


@cache
def system_chain(key_type: str) -> Chain:
    """The cached chain for `key_type`."""
    return Chain(key_type)
