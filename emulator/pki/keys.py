"""Key pairs of the emulated router: `crypto key generate|zeroize|import`, and their files.

A key pair is stored under the device's state directory as PEM (private: mode 0600) plus a
metadata JSON; `load_keypairs` brings the same keys back on the next start.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from . import PkiError

__all__ = [
    "DEFAULT_KEY_LABEL",
    "DSA_SIZES",
    "DSA_SIZE_DEFAULT",
    "ECDSA_CURVES",
    "ECDSA_CURVE_DEFAULT",
    "MAX_PASTE_CHARS",
    "RSA_MODULUS_DEFAULT",
    "RSA_MODULUS_MAX",
    "RSA_MODULUS_MIN",
    "KeyKind",
    "KeyPair",
    "KeyPurpose",
    "KeyUsage",
    "check_kind",
    "check_label",
    "delete_keypair",
    "generate_keypair",
    "import_public_key",
    "kind_of_key",
    "load_keypairs",
    "parse_generate_answer",
    "parse_public_key_text",
    "save_keypair",
]

KeyKind = Literal["rsa", "dsa", "ecdsa"]
KeyUsage = Literal["general", "usage"]
# What one key pair of a label is for: general purpose, or one half of usage keys.
KeyPurpose = Literal["general", "signature", "encryption"]

# IOS XR names a key generated without a label `the_default` (the seed never shows a label-less
# key, so this follows IOS XR behaviour; it is used for every key kind).
DEFAULT_KEY_LABEL = "the_default"
# Labels become file names in the state directory, so they are restricted to a safe alphabet.
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# Seed: "Choose the size of the key modulus in the range of 512 to 4096 ... [2048]".
RSA_MODULUS_MIN = 512
RSA_MODULUS_MAX = 4096
RSA_MODULUS_DEFAULT = 2048
# `cryptography` generates RSA keys from 1024 bits up; the seed's range starts at 512, so the
# 512..1023-bit keys are built here from our own primes (`_small_rsa_key`; loading, signing and
# storing them is `cryptography`'s as for any key). Keys are never derived from the fleet's
# `--seed`: a device's keys come back from its state directory, not from a seed.
_CRYPTOGRAPHY_RSA_MIN = 1024
_RSA_PUBLIC_EXPONENT = 65537
_SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)
# The issue: DSA 1024 or 2048 bits, 2048 by default (ENVELOPE.md's table signs with DSA-2048).
DSA_SIZES = (1024, 2048)
DSA_SIZE_DEFAULT = 2048
ECDSA_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "nistp256": ec.SECP256R1,
    "nistp384": ec.SECP384R1,
    "nistp521": ec.SECP521R1,
}
ECDSA_CURVE_DEFAULT = "nistp256"
# A pasted certificate or key larger than this is not a certificate (bounds the parser).
MAX_PASTE_CHARS = 64 * 1024


@dataclass
class KeyPair:
    """One labelled key pair of the router (`crypto key generate ...`).

    `private_key` is None only for a public key imported with
    `crypto key import authentication rsa`, which is then in `imported_public_key`. RSA usage
    keys (`usage keys`) are two key pairs under one label: `private_key` signs,
    `encryption_key` is the encryption pair; each gets its own certificate.
    """

    label: str
    kind: KeyKind
    usage: KeyUsage
    private_key: Any
    created: datetime
    imported_public_key: Any = None
    encryption_key: Any = None

    @property
    def public_key(self) -> Any:
        """The public half (of the private key, or the imported key)."""
        if self.private_key is None:
            return self.imported_public_key
        return self.private_key.public_key()

    @property
    def is_imported(self) -> bool:
        """True for an imported public key (no private half: it cannot sign)."""
        return self.private_key is None

    @property
    def size(self) -> int:
        """Modulus (RSA/DSA) or curve size (ECDSA) in bits."""
        public = self.public_key
        if isinstance(public, ec.EllipticCurvePublicKey):
            return public.curve.key_size
        return public.key_size

    @property
    def curve(self) -> str | None:
        """`nistp256` / `nistp384` / `nistp521` for ECDSA keys, else None."""
        public = self.public_key
        if not isinstance(public, ec.EllipticCurvePublicKey):
            return None
        for name, curve_type in ECDSA_CURVES.items():
            if isinstance(public.curve, curve_type):
                return name
        return public.curve.name

    def public_der(self) -> bytes:
        """DER SubjectPublicKeyInfo of the public key."""
        return self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def halves(self) -> list[tuple[KeyPurpose, KeyPair]]:
        """Each key pair under this label with its purpose: `[("general", self)]`, or for RSA
        usage keys `[("signature", ...), ("encryption", ...)]` (the order IOS requests them in)."""
        if self.encryption_key is None:
            return [("general", self)]
        encryption = KeyPair(
            label=self.label, kind=self.kind, usage=self.usage,
            private_key=self.encryption_key, created=self.created,
        )
        return [("signature", self), ("encryption", encryption)]


def check_kind(kind: str) -> KeyKind:
    if kind not in ("rsa", "dsa", "ecdsa"):
        raise PkiError(f"% Invalid key type {kind!r}: expected rsa, dsa or ecdsa")
    return kind  # type: ignore[return-value]


def check_label(label: str | None) -> str:
    if label is None or label == "":
        return DEFAULT_KEY_LABEL
    if not _LABEL_RE.match(label):
        raise PkiError(
            f"% Invalid key label {label!r}: expected 1 to 64 letters, digits, '_', '-' or '.',"
            " starting with a letter or digit"
        )
    return label


def kind_of_key(key: Any) -> KeyKind:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ecdsa"
    # DSA last: cryptography 51+ warns on each use of its DSA names (deprecated)
    if isinstance(key, (dsa.DSAPrivateKey, dsa.DSAPublicKey)):
        return "dsa"
    raise PkiError(f"% Unsupported key type {type(key).__name__}: expected RSA, DSA or ECDSA")


def _is_probable_prime(candidate: int, rounds: int = 40) -> bool:
    """Miller-Rabin with random witnesses (a composite passes with probability under 4**-rounds)."""
    for small in _SMALL_PRIMES:  # cheap rejection of most candidates before any modular power
        if candidate % small == 0:
            return candidate == small
    odd_part, twos = candidate - 1, 0
    while odd_part % 2 == 0:
        odd_part, twos = odd_part // 2, twos + 1
    for _ in range(rounds):
        value = pow(secrets.randbelow(candidate - 3) + 2, odd_part, candidate)
        if value in (1, candidate - 1):
            continue
        for _ in range(twos - 1):
            value = pow(value, 2, candidate)
            if value == candidate - 1:
                break
        else:
            return False
    return True


def _small_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """A fresh RSA key of 512..1023 bits, the sizes `cryptography` refuses to generate."""

    def prime(prime_bits: int) -> int:
        while True:
            # The top two bits set make p*q exactly `bits` long; e must not divide p-1.
            candidate = secrets.randbits(prime_bits) | (3 << (prime_bits - 2)) | 1
            if (candidate - 1) % _RSA_PUBLIC_EXPONENT and _is_probable_prime(candidate):
                return candidate

    p, q = prime(bits - bits // 2), prime(bits // 2)
    while q == p:
        q = prime(bits // 2)
    d = pow(_RSA_PUBLIC_EXPONENT, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(_RSA_PUBLIC_EXPONENT, p * q)
    return rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    ).private_key()


def _check_modulus(kind: KeyKind, bits: int) -> int:
    if kind == "rsa" and not RSA_MODULUS_MIN <= bits <= RSA_MODULUS_MAX:
        raise PkiError(
            f"% Invalid modulus size {bits}: choose a key modulus in the range of "
            f"{RSA_MODULUS_MIN} to {RSA_MODULUS_MAX}"
        )
    if kind == "dsa" and bits not in DSA_SIZES:
        raise PkiError(
            f"% Invalid modulus size {bits}: DSA keys are "
            + " or ".join(str(size) for size in DSA_SIZES)
            + " bits"
        )
    return bits


@functools.cache
def _dsa_parameters(bits: int) -> dsa.DSAParameters:
    """Domain parameters (p, q, g) shared by every DSA key of one size in this process.

    Finding them is slow for 2048 bits while a key from them is quick; sharing
    public domain parameters is normal DSA practice (FIPS 186), and it keeps a 1,000-device
    DSA fleet from spending many minutes at start-up. Each key is still its own.
    """
    return dsa.generate_parameters(bits)


def generate_keypair(
    kind: str,
    label: str | None = None,
    *,
    modulus: int | None = None,
    curve: str | None = None,
    usage: KeyUsage = "general",
    now: datetime,
) -> KeyPair:
    """Generate a key pair as `crypto key generate rsa|dsa|ecdsa [label]` does.

    RSA: modulus 512..4096 (default 2048). DSA: 1024 or 2048 (default 2048). ECDSA: curve
    nistp256 (default), nistp384 or nistp521. RSA usage keys are two key pairs of that size
    (signature and encryption, as the seed: "your router has two RSA key pairs"). Raises
    PkiError for anything else.
    """
    kind = check_kind(kind)
    label = check_label(label)
    if usage not in ("general", "usage"):
        raise PkiError(f"% Invalid key usage {usage!r}: expected general-keys or usage keys")
    if kind == "rsa":
        bits = RSA_MODULUS_DEFAULT if modulus is None else modulus
        _check_modulus("rsa", bits)
        private_key: Any = _rsa_key(bits)
    elif kind == "dsa":
        bits = DSA_SIZE_DEFAULT if modulus is None else modulus
        _check_modulus("dsa", bits)
        private_key = _dsa_parameters(bits).generate_private_key()
    else:
        curve_name = ECDSA_CURVE_DEFAULT if curve is None else curve.lower()
        if curve_name not in ECDSA_CURVES:
            raise PkiError(
                f"% Invalid curve {curve!r}: expected one of " + ", ".join(ECDSA_CURVES)
            )
        private_key = ec.generate_private_key(ECDSA_CURVES[curve_name]())
    encryption_key = None
    if kind == "rsa" and usage == "usage":
        encryption_key = _rsa_key(bits)
    return KeyPair(label=label, kind=kind, usage=usage, private_key=private_key, created=now,
                   encryption_key=encryption_key)


def _rsa_key(bits: int) -> rsa.RSAPrivateKey:
    if bits < _CRYPTOGRAPHY_RSA_MIN:
        return _small_rsa_key(bits)
    return rsa.generate_private_key(_RSA_PUBLIC_EXPONENT, bits)

def parse_generate_answer(kind: str, answer: str) -> dict[str, Any]:
    """The answer to `format_generate_prompt`'s question as keyword arguments for
    `generate_keypair` (`{"modulus": 2048}` or `{"curve": "nistp384"}`; empty = default)."""
    kind = check_kind(kind)
    answer = answer.strip()
    if kind == "ecdsa":
        curve = (answer or ECDSA_CURVE_DEFAULT).lower()
        if curve not in ECDSA_CURVES:
            raise PkiError(
                f"% Invalid curve {answer!r}: expected one of " + ", ".join(ECDSA_CURVES)
            )
        return {"curve": curve}
    if not answer:
        return {"modulus": RSA_MODULUS_DEFAULT if kind == "rsa" else DSA_SIZE_DEFAULT}
    if not answer.isdigit():
        raise PkiError(f"% Invalid modulus {answer!r}: expected a number of bits")
    return {"modulus": _check_modulus(kind, int(answer))}


# --- persistence -----------------------------------------------------------------------------

_PRIVATE_SUFFIX = ".key.pem"
_PUBLIC_SUFFIX = ".pub.pem"
_META_SUFFIX = ".meta.json"
# The encryption half of usage keys. Not `.key.pem`-suffixed, so no label's files can share
# its name and the label listing in `delete_keypair` does not mistake it for a key pair.
_ENCRYPTION_SUFFIX = ".encryption-key.pem"
_PRIVATE_FILE_MODE = 0o600
_PUBLIC_FILE_MODE = 0o644


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half."""
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600, so a private key is never readable by others.
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def _stem(kind: str, label: str) -> str:
    return f"{kind}-{label}"


def _private_pem(private_key: Any) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def save_keypair(keypair: KeyPair, directory: Path) -> None:
    """Store a key pair under `directory`: PEM key (private: mode 0600) + metadata JSON.

    Both files are written atomically; the metadata is written last and is what
    `load_keypairs` lists, so a crash in between leaves the previous state readable.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = _stem(keypair.kind, check_label(keypair.label))
    if keypair.is_imported:
        pem = keypair.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _atomic_write(directory / (stem + _PUBLIC_SUFFIX), pem, _PUBLIC_FILE_MODE)
    else:
        _atomic_write(
            directory / (stem + _PRIVATE_SUFFIX), _private_pem(keypair.private_key), _PRIVATE_FILE_MODE
        )
    if keypair.encryption_key is not None:
        _atomic_write(
            directory / (stem + _ENCRYPTION_SUFFIX),
            _private_pem(keypair.encryption_key),
            _PRIVATE_FILE_MODE,
        )
    else:
        (directory / (stem + _ENCRYPTION_SUFFIX)).unlink(missing_ok=True)
    created = keypair.created
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    meta = {
        "label": keypair.label,
        "kind": keypair.kind,
        "usage": keypair.usage,
        "created": created.isoformat(),
        "imported": keypair.is_imported,
        "encryption": keypair.encryption_key is not None,
    }
    _atomic_write(
        directory / (stem + _META_SUFFIX),
        (json.dumps(meta, indent=2) + "\n").encode(),
        _PUBLIC_FILE_MODE,
    )


def _load_stored_key(path: Path, kind: KeyKind, *, public: bool) -> Any:
    """One stored PEM key of `kind`; PkiError naming the file when unreadable or of another kind."""
    try:
        pem = path.read_bytes()
        if public:
            key: Any = serialization.load_pem_public_key(pem)
        else:
            key = serialization.load_pem_private_key(pem, password=None)
    except (OSError, ValueError, TypeError) as error:
        raise PkiError(
            f"% Key store damaged: cannot read {path} ({error}); remove it and generate the key again"
        ) from error
    if kind_of_key(key) != kind:
        raise PkiError(
            f"% Key store damaged: {path} holds a {kind_of_key(key).upper()} key; "
            f"its metadata says {kind.upper()}"
        )
    return key


def load_keypairs(directory: Path) -> dict[tuple[str, str], KeyPair]:
    """Every key pair saved under `directory`, keyed by (kind, label); {} if there is none.

    Raises PkiError naming the file when a stored key is unreadable or inconsistent.
    """
    directory = Path(directory)
    found: dict[tuple[str, str], KeyPair] = {}
    if not directory.is_dir():
        return found
    for meta_path in sorted(directory.glob("*" + _META_SUFFIX)):
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
            kind = check_kind(meta["kind"])
            label = check_label(meta["label"])
            usage = meta["usage"]
            if usage not in ("general", "usage"):
                raise ValueError(f"usage {usage!r} is not 'general' or 'usage'")
            created = datetime.fromisoformat(meta["created"])
            imported = bool(meta["imported"])
            # Absent in metadata written before usage keys had an encryption half.
            has_encryption = bool(meta.get("encryption", False))
        except (OSError, ValueError, KeyError, TypeError, PkiError) as error:
            raise PkiError(
                f"% Key store damaged: {meta_path} is not valid key metadata ({error}); "
                "remove it and generate the key again"
            ) from error
        stem = _stem(kind, label)
        key_path = directory / (stem + (_PUBLIC_SUFFIX if imported else _PRIVATE_SUFFIX))
        key = _load_stored_key(key_path, kind, public=imported)
        encryption_key = None
        if has_encryption:
            encryption_key = _load_stored_key(directory / (stem + _ENCRYPTION_SUFFIX), kind, public=False)
        found[(kind, label)] = KeyPair(
            label=label,
            kind=kind,
            usage=usage,
            private_key=None if imported else key,
            created=created,
            imported_public_key=key if imported else None,
            encryption_key=encryption_key,
        )
    return found


def delete_keypair(directory: Path, kind: str, label: str | None = None) -> list[str]:
    """`crypto key zeroize <kind> [label]`: delete one key pair, or every one of `kind`.

    Returns the labels deleted; raises PkiError when there was nothing to delete.
    """
    kind = check_kind(kind)
    directory = Path(directory)
    # Listed from file names, not by loading the keys: a damaged key must still be removable.
    prefix = f"{kind}-"
    stored_labels = {
        path.name[len(prefix) : -len(suffix)]
        for suffix in (_META_SUFFIX, _PRIVATE_SUFFIX, _PUBLIC_SUFFIX, _ENCRYPTION_SUFFIX)
        for path in (directory.glob(f"{prefix}*{suffix}") if directory.is_dir() else [])
    }
    if label is None:
        labels = sorted(stored_labels)
        if not labels:
            raise PkiError(f"% No {kind.upper()} keys to zeroize")
    else:
        label = check_label(label)
        if label not in stored_labels:
            raise PkiError(f"% {kind.upper()} keypair {label} does not exist")
        labels = [label]
    for each in labels:
        stem = _stem(kind, each)
        # Metadata first: without it the key is no longer listed, even if we stop half-way.
        (directory / (stem + _META_SUFFIX)).unlink(missing_ok=True)
        (directory / (stem + _PRIVATE_SUFFIX)).unlink(missing_ok=True)
        (directory / (stem + _PUBLIC_SUFFIX)).unlink(missing_ok=True)
        (directory / (stem + _ENCRYPTION_SUFFIX)).unlink(missing_ok=True)
    return labels



_OPENSSH_PREFIXES = ("ssh-rsa ", "ssh-dss ", "ecdsa-sha2-")


def parse_public_key_text(text: str, *, expected_kind: str | None = "rsa") -> Any:
    """A public key pasted for `crypto key import authentication rsa`.

    Accepts PEM (SubjectPublicKeyInfo or PKCS#1), an OpenSSH `ssh-rsa AAAA...` line, or the
    DER SubjectPublicKeyInfo as base64 or as hex (the `show crypto key mypubkey` layout).
    """
    if len(text) > MAX_PASTE_CHARS:
        raise PkiError(
            f"% Invalid public key: expected at most {MAX_PASTE_CHARS} characters; "
            f"found {len(text)}"
        )
    stripped = text.strip()
    expected = (
        "expected a PEM public key, an OpenSSH 'ssh-rsa AAAA...' line, or a base64 or hex "
        "DER SubjectPublicKeyInfo"
    )
    if not stripped:
        raise PkiError(f"% Invalid public key: {expected}; found nothing")
    try:
        if stripped.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(stripped.encode())
        elif stripped.startswith(_OPENSSH_PREFIXES):
            key = serialization.load_ssh_public_key(stripped.split("\n")[0].strip().encode())
        else:
            compact = "".join(stripped.split())
            if re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", compact) and compact.startswith("30"):
                der = bytes.fromhex(compact)
            else:
                der = base64.b64decode(compact, validate=True)
            key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm) as error:
        first_line = stripped.splitlines()[0][:40]
        raise PkiError(f"% Invalid public key: {expected}; found {first_line!r}") from error
    kind = kind_of_key(key)
    if expected_kind is not None and kind != expected_kind:
        raise PkiError(
            f"% Invalid public key: expected an {expected_kind.upper()} key; "
            f"found an {kind.upper()} key"
        )
    return key


def import_public_key(
    text: str, label: str | None, *, usage: KeyUsage = "general", now: datetime
) -> KeyPair:
    """`crypto key import authentication rsa [usage keys|general-keys] [label]`: a public-only
    RSA KeyPair (`is_imported`), to `save_keypair` and show with `format_mypubkey`."""
    key = parse_public_key_text(text, expected_kind="rsa")
    return KeyPair(
        label=check_label(label),
        kind="rsa",
        usage=usage,
        private_key=None,
        created=now,
        imported_public_key=key,
    )

