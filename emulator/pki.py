"""The emulated router's PKI: key pairs, trustpoints, the system root/leaf chain, cut-and-paste.

Pure code (no SSH, no shell): the emulator's command handlers call these functions and print
the strings they return. Every failure a user can cause raises `PkiError`, whose `message` is
the exact IOS XR-style text the shell prints (lines starting `% `).

Layouts follow the IOS XR documentation (`../shared/seed/000_3516cfa80f137662.txt`) and
`../shared/spec/ENVELOPE.md` section 4. Where the seed is silent, the choice is documented at
the constant or function that makes it.

Typical flow of the shell (system trustpoint, ENVELOPE.md section 4)::

    root_kp = generate_keypair("rsa", "system-root-key", modulus=2048, now=now)
    leaf_kp = generate_keypair("rsa", "system-enroll-key", modulus=2048, now=now)
    save_keypair(root_kp, keys_dir); save_keypair(leaf_kp, keys_dir)
    tp = TrustpointConfig(name="system-trustpoint", keypair=("rsa", "system-enroll-key"),
                          ca_keypair=("rsa", "system-root-key"), enrollment="self")
    fqdn = fqdn_for(hostname, domain)
    root_key, leaf_key = resolve_trustpoint_keys(tp, load_keypairs(keys_dir))
    root = make_root_certificate(tp, root_key, chassis_serial=sn, fqdn=fqdn,
                                 serial_number=0x0B62, now=now)
    print(format_authenticate_output(tp, root, fqdn))
    leaf = make_leaf_certificate(tp, leaf_key, root_cert=root, root_key=root_key,
                                 chassis_serial=sn, fqdn=fqdn, ip_address=None,
                                 serial_number=0x0B63, now=now)
    print(format_enroll_output(tp, leaf, leaf_key))
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier, SignatureAlgorithmOID

__all__ = [
    "ACCEPT_CERTIFICATE_QUESTION",
    "CERTIFICATE_IMPORTED",
    "DEFAULT_KEY_LABEL",
    "DEFAULT_LIFETIME_DAYS",
    "DISPLAY_REQUEST_QUESTION",
    "ENROLL_PASSWORD_NOTICE",
    "ENTER_IP_QUESTION",
    "INCLUDE_IP_QUESTION",
    "INCLUDE_SERIAL_QUESTION",
    "KEY_USAGE_WORDS",
    "PASSWORD_PROMPT",
    "PASTE_CERTIFICATE_PROMPT",
    "REENTER_PASSWORD_PROMPT",
    "REPLACE_KEYS_QUESTION",
    "ZEROIZE_KEYS_QUESTION",
    "KeyKind",
    "KeyPair",
    "KeyUsage",
    "PkiError",
    "TrustpointConfig",
    "apply_trustpoint_command",
    "build_csr",
    "check_enrollment_supported",
    "check_imported_certificate",
    "delete_keypair",
    "format_already_have_keys",
    "format_authenticate_output",
    "format_ca_fingerprint_prompt",
    "format_certificate_summary",
    "format_csr_output",
    "format_dn",
    "format_enroll_output",
    "format_enroll_preamble",
    "format_generate_done",
    "format_generate_prompt",
    "format_ios_time",
    "format_key_usage_string",
    "format_mypubkey",
    "format_request_fingerprint",
    "format_serial",
    "format_serial_notice",
    "format_show_certificates",
    "fqdn_for",
    "generate_keypair",
    "import_public_key",
    "load_keypairs",
    "make_leaf_certificate",
    "make_root_certificate",
    "md5_fingerprint_spaced",
    "parse_dn",
    "parse_generate_answer",
    "parse_key_usage_words",
    "parse_pasted_certificate",
    "parse_public_key_text",
    "resolve_trustpoint_keys",
    "save_keypair",
    "sha1_fingerprint_hex",
]

KeyKind = Literal["rsa", "dsa", "ecdsa"]
KeyUsage = Literal["general", "usage"]

# --------------------------------------------------------------------------------------------
# Limits and defaults (with where they come from)
# --------------------------------------------------------------------------------------------

# IOS XR names a key generated without a label `the_default` (the seed never shows a label-less
# key, so this follows IOS XR behaviour; it is used for every key kind).
DEFAULT_KEY_LABEL = "the_default"
# Labels become file names in the state directory, so they are restricted to a safe alphabet.
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# Seed: "Choose the size of the key modulus in the range of 512 to 4096 ... [2048]".
RSA_MODULUS_MIN = 512
RSA_MODULUS_MAX = 4096
RSA_MODULUS_DEFAULT = 2048
# cryptography refuses to *generate* RSA keys under 1024 bits; below that we build the key
# from primes found here (the seed's range starts at 512, and loading such keys still works).
_CRYPTOGRAPHY_RSA_MIN = 1024
_RSA_PUBLIC_EXPONENT = 65537
# The issue: DSA 1024 or 2048 bits, 2048 by default (ENVELOPE.md's table signs with DSA-2048).
DSA_SIZES = (1024, 2048)
DSA_SIZE_DEFAULT = 2048
ECDSA_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "nistp256": ec.SECP256R1,
    "nistp384": ec.SECP384R1,
    "nistp521": ec.SECP521R1,
}
ECDSA_CURVE_DEFAULT = "nistp256"
# Seed, second "show crypto ca certificates" example (no lifetime configured): both the root and
# the leaf are valid 365 days (12:30:17 Fri Feb 21 2020 .. Sat Feb 20 2021).
DEFAULT_LIFETIME_DAYS = 365
# `lifetime certificate|ca-certificate <days>`: assumed range, the seed gives none; ten years
# keeps certificates inside what every verifier parses.
LIFETIME_MIN_DAYS = 1
LIFETIME_MAX_DAYS = 3650
# Seed: "enrollment retry period" 1 to 60 minutes, "enrollment retry count" 1 to 100.
RETRY_PERIOD_RANGE = (1, 60)
RETRY_COUNT_RANGE = (1, 100)
MESSAGE_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
DEFAULT_MESSAGE_DIGEST = "sha256"
# "Certificate keypair configured Type: 1, ..." (seed, RSA). The DSA/ECDSA codes are assumed.
_KEY_TYPE_CODES = {"rsa": 1, "dsa": 2, "ecdsa": 3}
# A pasted certificate or key larger than this is not a certificate (bounds the parser).
MAX_PASTE_CHARS = 64 * 1024

# The seed's key-usage words (`key-usage certificate|ca-certificate ...`) and the x509
# KeyUsage field each one sets.
KEY_USAGE_WORDS: dict[str, str] = {
    "digitalsignature": "digital_signature",
    "nonrepudiation": "content_commitment",
    "keyencipherment": "key_encipherment",
    "dataencipherment": "data_encipherment",
    "keyagreement": "key_agreement",
    "keycertsign": "key_cert_sign",
    "crlsign": "crl_sign",
}
# ENVELOPE.md section 4 defaults.
DEFAULT_LEAF_KEY_USAGE = ["digitalsignature", "keyencipherment", "keyagreement"]
DEFAULT_ROOT_KEY_USAGE = ["digitalsignature", "keycertsign", "crlsign"]
# OpenSSL's names, in OpenSSL's order, for the "Leaf cert key usage string" line.
_KEY_USAGE_DISPLAY = [
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
]

# PKCS#9 attributes the router adds to the subject (ENVELOPE.md section 4).
OID_UNSTRUCTURED_NAME = ObjectIdentifier("1.2.840.113549.1.9.2")
OID_UNSTRUCTURED_ADDRESS = ObjectIdentifier("1.2.840.113549.1.9.8")
_DN_DISPLAY_NAMES = {
    NameOID.SERIAL_NUMBER: "serialNumber",
    OID_UNSTRUCTURED_NAME: "unstructuredName",
    OID_UNSTRUCTURED_ADDRESS: "unstructuredAddress",
    NameOID.EMAIL_ADDRESS: "E",
}
# Attributes accepted in `subject-name <DN>`.
_DN_ATTRIBUTES: dict[str, ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "E": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
}

# --------------------------------------------------------------------------------------------
# Texts the shell prints (seed wording where the seed shows it)
# --------------------------------------------------------------------------------------------

REPLACE_KEYS_QUESTION = "Do you really want to replace them? [yes/no]: "
# Not in the seed; IOS XR asks before zeroizing.
ZEROIZE_KEYS_QUESTION = "Do you really want to remove these keys? [yes/no]: "
INCLUDE_SERIAL_QUESTION = "% Include the router serial number in the subject name? [yes/no]: "
INCLUDE_IP_QUESTION = "% Include an IP address in the subject name? [yes/no]: "
# Asked after "yes" to INCLUDE_IP_QUESTION (IOS wording; the seed answers "no").
ENTER_IP_QUESTION = "Enter Interface name or IP Address[]: "
# The seed prints "Do you accept this certificate?? [yes/no]:" (a typo in the old example);
# the issue asks for one question mark.
ACCEPT_CERTIFICATE_QUESTION = "Do you accept this certificate? [yes/no]: "
# Seed, "crypto ca enroll myca".
ENROLL_PASSWORD_NOTICE = (
    "% Start certificate enrollment ...\n"
    "% Create a challenge password. You will need to verbally provide this\n"
    "password to the CA Administrator in order to revoke your certificate.\n"
    "% For security reasons your password will not be saved in the configuration.\n"
    "% Please make a note of it.\n"
)
PASSWORD_PROMPT = "Password: "
REENTER_PASSWORD_PROMPT = "Re-enter Password: "
# IOS wording for `enrollment terminal` (the seed does not show these screens).
DISPLAY_REQUEST_QUESTION = "Display Certificate Request to terminal? [yes/no]: "
PASTE_CERTIFICATE_PROMPT = (
    "Enter the base 64 encoded certificate.\n"
    'End with a blank line or the word "quit" on a line by itself\n'
)
CERTIFICATE_IMPORTED = "% Router Certificate successfully imported\n"


class PkiError(Exception):
    """A PKI command failed; `message` is the IOS XR-style text to print (starts with `% `)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------------------------
# Time and small formatters
# --------------------------------------------------------------------------------------------


def _zone(tz_name: str) -> timezone | ZoneInfo:
    if tz_name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise PkiError(
            f"% Unknown time zone {tz_name!r}: expected UTC or an IANA name such as "
            "Asia/Kolkata"
        ) from error


def _aware(moment: datetime) -> datetime:
    """Naive datetimes are UTC throughout this module."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def format_ios_time(moment: datetime, tz_name: str = "UTC") -> str:
    """`13:07:26 UTC Sun Oct 20 2019`, the seed's time layout (naive datetimes are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    local = moment.astimezone(_zone(tz_name))
    abbreviation = "UTC" if tz_name.upper() == "UTC" else local.tzname()
    return f"{local:%H:%M:%S} {abbreviation} {local:%a %b %d %Y}"


def format_serial(serial_number: int) -> str:
    """Certificate serial as colon-separated upper-case hex bytes: 0x0B62 -> `0B:62`."""
    if serial_number < 0:
        raise ValueError(f"serial numbers are positive; found {serial_number}")
    raw = serial_number.to_bytes(max(1, (serial_number.bit_length() + 7) // 8), "big")
    return ":".join(f"{byte:02X}" for byte in raw)


def sha1_fingerprint_hex(cert: x509.Certificate) -> str:
    """SHA-1 of the certificate's DER, upper-case hex without colons (seed's "SHA1 Fingerprint")."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S324 - display only, as IOS XR


def md5_fingerprint_spaced(cert: x509.Certificate) -> str:
    """MD5 of the DER as `58 71 FB ...` (the seed's cut-and-paste "Fingerprint:" line)."""
    return " ".join(f"{byte:02X}" for byte in cert.fingerprint(hashes.MD5()))  # noqa: S324


def format_dn(name: x509.Name) -> str:
    """A subject/issuer as IOS XR prints it: RFC 4514 order (last RDN first), PKCS#9 names."""
    return name.rfc4514_string(_DN_DISPLAY_NAMES)


def fqdn_for(hostname: str, domain: str | None) -> str:
    """`<hostname>.<domain>`; certificates need a domain name (seed: "Configure ... Domain")."""
    if not domain:
        raise PkiError(
            "% Please define a domain name first: certificates carry the router's FQDN "
            "(configure 'domain name <name>' and commit)"
        )
    return f"{hostname}.{domain}"


# --------------------------------------------------------------------------------------------
# Key pairs
# --------------------------------------------------------------------------------------------


@dataclass
class KeyPair:
    """One labelled key pair of the router (`crypto key generate ...`).

    `private_key` is None only for a public key imported with
    `crypto key import authentication rsa`, which is then in `imported_public_key`.
    """

    label: str
    kind: KeyKind
    usage: KeyUsage
    private_key: Any
    created: datetime
    imported_public_key: Any = None

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


def _check_kind(kind: str) -> KeyKind:
    if kind not in ("rsa", "dsa", "ecdsa"):
        raise PkiError(f"% Invalid key type {kind!r}: expected rsa, dsa or ecdsa")
    return kind  # type: ignore[return-value]


def _check_label(label: str | None) -> str:
    if label is None or label == "":
        return DEFAULT_KEY_LABEL
    if not _LABEL_RE.match(label):
        raise PkiError(
            f"% Invalid key label {label!r}: expected 1 to 64 letters, digits, '_', '-' or '.',"
            " starting with a letter or digit"
        )
    return label


def _kind_of_key(key: Any) -> KeyKind:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa"
    if isinstance(key, (dsa.DSAPrivateKey, dsa.DSAPublicKey)):
        return "dsa"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ecdsa"
    raise PkiError(f"% Unsupported key type {type(key).__name__}: expected RSA, DSA or ECDSA")


def _is_probable_prime(candidate: int, rounds: int = 40) -> bool:
    """Miller-Rabin; only for the 512..1023-bit RSA keys cryptography will not generate."""
    import secrets

    if candidate < 2:
        return False
    for small in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47):
        if candidate % small == 0:
            return candidate == small
    odd_part, twos = candidate - 1, 0
    while odd_part % 2 == 0:
        odd_part //= 2
        twos += 1
    for _ in range(rounds):
        witness = secrets.randbelow(candidate - 3) + 2
        value = pow(witness, odd_part, candidate)
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
    """An RSA key of 512..1023 bits built from fresh primes (see _CRYPTOGRAPHY_RSA_MIN)."""
    import math
    import secrets

    def prime(prime_bits: int) -> int:
        while True:
            # Top two bits set so that p*q has exactly `bits` bits.
            candidate = secrets.randbits(prime_bits) | (3 << (prime_bits - 2)) | 1
            if (candidate - 1) % _RSA_PUBLIC_EXPONENT and _is_probable_prime(candidate):
                return candidate

    while True:
        p = prime(bits - bits // 2)
        q = prime(bits // 2)
        modulus = p * q
        if p != q and modulus.bit_length() == bits:
            break
    lcm = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    d = pow(_RSA_PUBLIC_EXPONENT, -1, lcm)
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=d % (p - 1),
        dmq1=d % (q - 1),
        iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(_RSA_PUBLIC_EXPONENT, modulus),
    )
    return numbers.private_key()


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

    Finding them costs ~0.7 s for 2048 bits while a key from them costs microseconds; sharing
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
    nistp256 (default), nistp384 or nistp521. Raises PkiError for anything else.
    """
    kind = _check_kind(kind)
    label = _check_label(label)
    if usage not in ("general", "usage"):
        raise PkiError(f"% Invalid key usage {usage!r}: expected general-keys or usage keys")
    if kind == "rsa":
        bits = RSA_MODULUS_DEFAULT if modulus is None else modulus
        _check_modulus("rsa", bits)
        if bits < _CRYPTOGRAPHY_RSA_MIN:
            private_key: Any = _small_rsa_key(bits)
        else:
            private_key = rsa.generate_private_key(_RSA_PUBLIC_EXPONENT, bits)
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
    return KeyPair(label=label, kind=kind, usage=usage, private_key=private_key, created=now)


def format_generate_prompt(kind: str, label: str | None, usage: KeyUsage = "general") -> str:
    """What `crypto key generate <kind> [label]` prints before reading the size (seed layout).

    Ends with the question (no newline); feed the answer to `parse_generate_answer`.
    """
    kind = _check_kind(kind)
    label = _check_label(label)
    purpose = "General Purpose" if usage == "general" else "Special Usage"
    head = f"The name for the keys will be: {label}\n"
    if kind == "rsa":
        return head + (
            f"Choose the size of the key modulus in the range of {RSA_MODULUS_MIN} to "
            f"{RSA_MODULUS_MAX} for your {purpose}\n"
            f"Keypair. Choosing a key modulus greater than {RSA_MODULUS_MIN} may take a few "
            "minutes.\n"
            f"How many bits in the modulus [{RSA_MODULUS_DEFAULT}]: "
        )
    if kind == "dsa":
        return head + (
            f"Choose the size of the key modulus ({' or '.join(map(str, DSA_SIZES))}) for your "
            f"{purpose}\nKeypair.\n"
            f"How many bits in the modulus [{DSA_SIZE_DEFAULT}]: "
        )
    return head + (
        f"Choose the curve for your {purpose} Keypair ({', '.join(ECDSA_CURVES)}).\n"
        f"Which curve [{ECDSA_CURVE_DEFAULT}]: "
    )


def parse_generate_answer(kind: str, answer: str) -> dict[str, Any]:
    """The answer to `format_generate_prompt`'s question as keyword arguments for
    `generate_keypair` (`{"modulus": 2048}` or `{"curve": "nistp384"}`; empty = default)."""
    kind = _check_kind(kind)
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


def format_already_have_keys(label: str) -> str:
    """The seed's re-generation warning; ask REPLACE_KEYS_QUESTION after it."""
    return f"% You already have keys defined for {label}\n"


def format_generate_done(kind: str) -> str:
    """The seed's closing lines of `crypto key generate`."""
    name = _check_kind(kind).upper()
    return f"Generating {name} keys ...\nDone w/ crypto generate keypair\n[OK]\n"


# --- persistence -----------------------------------------------------------------------------

_PRIVATE_SUFFIX = ".key.pem"
_PUBLIC_SUFFIX = ".pub.pem"
_META_SUFFIX = ".meta.json"
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


def save_keypair(keypair: KeyPair, directory: Path) -> None:
    """Store a key pair under `directory`: PEM key (private: mode 0600) + metadata JSON.

    Both files are written atomically; the metadata is written last and is what
    `load_keypairs` lists, so a crash in between leaves the previous state readable.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = _stem(keypair.kind, _check_label(keypair.label))
    if keypair.is_imported:
        pem = keypair.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _atomic_write(directory / (stem + _PUBLIC_SUFFIX), pem, _PUBLIC_FILE_MODE)
    else:
        pem = keypair.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _atomic_write(directory / (stem + _PRIVATE_SUFFIX), pem, _PRIVATE_FILE_MODE)
    created = keypair.created
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    meta = {
        "label": keypair.label,
        "kind": keypair.kind,
        "usage": keypair.usage,
        "created": created.isoformat(),
        "imported": keypair.is_imported,
    }
    _atomic_write(
        directory / (stem + _META_SUFFIX),
        (json.dumps(meta, indent=2) + "\n").encode(),
        _PUBLIC_FILE_MODE,
    )


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
            kind = _check_kind(meta["kind"])
            label = _check_label(meta["label"])
            usage = meta["usage"]
            if usage not in ("general", "usage"):
                raise ValueError(f"usage {usage!r} is not 'general' or 'usage'")
            created = datetime.fromisoformat(meta["created"])
            imported = bool(meta["imported"])
        except (OSError, ValueError, KeyError, TypeError, PkiError) as error:
            raise PkiError(
                f"% Key store damaged: {meta_path} is not valid key metadata ({error}); "
                "remove it and generate the key again"
            ) from error
        stem = _stem(kind, label)
        key_path = directory / (stem + (_PUBLIC_SUFFIX if imported else _PRIVATE_SUFFIX))
        try:
            pem = key_path.read_bytes()
            if imported:
                key: Any = serialization.load_pem_public_key(pem)
            else:
                key = serialization.load_pem_private_key(pem, password=None)
        except (OSError, ValueError, TypeError) as error:
            raise PkiError(
                f"% Key store damaged: cannot read {key_path} ({error}); "
                "remove it and generate the key again"
            ) from error
        if _kind_of_key(key) != kind:
            raise PkiError(
                f"% Key store damaged: {key_path} holds a {_kind_of_key(key).upper()} key; "
                f"its metadata says {kind.upper()}"
            )
        found[(kind, label)] = KeyPair(
            label=label,
            kind=kind,
            usage=usage,
            private_key=None if imported else key,
            created=created,
            imported_public_key=key if imported else None,
        )
    return found


def delete_keypair(directory: Path, kind: str, label: str | None = None) -> list[str]:
    """`crypto key zeroize <kind> [label]`: delete one key pair, or every one of `kind`.

    Returns the labels deleted; raises PkiError when there was nothing to delete.
    """
    kind = _check_kind(kind)
    directory = Path(directory)
    # Listed from file names, not by loading the keys: a damaged key must still be removable.
    prefix = f"{kind}-"
    stored_labels = {
        path.name[len(prefix) : -len(suffix)]
        for suffix in (_META_SUFFIX, _PRIVATE_SUFFIX, _PUBLIC_SUFFIX)
        for path in (directory.glob(f"{prefix}*{suffix}") if directory.is_dir() else [])
    }
    if label is None:
        labels = sorted(stored_labels)
        if not labels:
            raise PkiError(f"% No {kind.upper()} keys to zeroize")
    else:
        label = _check_label(label)
        if label not in stored_labels:
            raise PkiError(f"% {kind.upper()} keypair {label} does not exist")
        labels = [label]
    for each in labels:
        stem = _stem(kind, each)
        # Metadata first: without it the key is no longer listed, even if we stop half-way.
        (directory / (stem + _META_SUFFIX)).unlink(missing_ok=True)
        (directory / (stem + _PRIVATE_SUFFIX)).unlink(missing_ok=True)
        (directory / (stem + _PUBLIC_SUFFIX)).unlink(missing_ok=True)
    return labels


# --- display and import ----------------------------------------------------------------------

_HEX_GROUP = 8  # hex digits per group in "Data :"
_GROUPS_PER_LINE = 8


def _grouped_hex(der: bytes) -> list[str]:
    digits = der.hex().upper()
    groups = [digits[i : i + _HEX_GROUP] for i in range(0, len(digits), _HEX_GROUP)]
    return [
        " ".join(groups[i : i + _GROUPS_PER_LINE])
        for i in range(0, len(groups), _GROUPS_PER_LINE)
    ]


def _key_type_text(keypair: KeyPair) -> str:
    purpose = "General purpose" if keypair.usage == "general" else "Special Usage"
    if keypair.kind == "ecdsa":
        # Assumed: IOS XR names the curve in the type line.
        curve = keypair.curve or ""
        return f"ECDSA {purpose.split()[0]} Curve {curve[:1].upper()}{curve[1:]}"
    return f"{keypair.kind.upper()} {purpose}"


def format_mypubkey(keypairs: Iterable[KeyPair], kind: str, tz_name: str = "UTC") -> str:
    """`show crypto key mypubkey rsa|dsa|ecdsa` in the seed's layout ("" when no key).

    Data is the DER SubjectPublicKeyInfo as upper-case hex, 8 digits a group, 8 groups a line.
    Keys are listed oldest first.
    """
    kind = _check_kind(kind)
    selected = sorted(
        (keypair for keypair in keypairs if keypair.kind == kind),
        key=lambda keypair: (_aware(keypair.created), keypair.label),
    )
    blocks = []
    for keypair in selected:
        lines = [
            f"Key label: {keypair.label}",
            f"Type      : {_key_type_text(keypair)}",
            f"Size      : {keypair.size}",
            f"Created   : {format_ios_time(keypair.created, tz_name)}",
            "Data      :",
            *_grouped_hex(keypair.public_der()),
        ]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


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
    kind = _kind_of_key(key)
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
        label=_check_label(label),
        kind="rsa",
        usage=usage,
        private_key=None,
        created=now,
        imported_public_key=key,
    )


# --------------------------------------------------------------------------------------------
# Trustpoints
# --------------------------------------------------------------------------------------------


def parse_key_usage_words(words: Iterable[str]) -> list[str]:
    """Validate `key-usage ... <words>` (any case); returns them lower-case, deduplicated."""
    result: list[str] = []
    for word in words:
        lowered = word.lower()
        if lowered not in KEY_USAGE_WORDS:
            raise PkiError(
                f"% Invalid key usage {word!r}: expected one or more of "
                + " ".join(KEY_USAGE_WORDS)
            )
        if lowered not in result:
            result.append(lowered)
    if not result:
        raise PkiError(
            "% Incomplete key-usage: expected one or more of " + " ".join(KEY_USAGE_WORDS)
        )
    return result


def parse_dn(text: str) -> x509.Name:
    """`CN=lab1-ads,C=US,ST=CA,L=San Jose,O=cisco systems,OU=ASR` -> x509.Name, in that order.

    Commas inside values are not supported. Raises PkiError naming the bad part.
    """
    attributes = []
    allowed = ", ".join(name for name in _DN_ATTRIBUTES if name != "EMAILADDRESS")
    if not text.strip():
        raise PkiError("% Invalid subject name: expected ATTR=value[,ATTR=value...]; found nothing")
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise PkiError(
                f"% Invalid subject name {text!r}: expected ATTR=value[,ATTR=value...]; "
                f"found {part.strip()!r}"
            )
        oid = _DN_ATTRIBUTES.get(key.upper())
        if oid is None:
            raise PkiError(
                f"% Invalid subject name {text!r}: unknown attribute {key!r}; expected one of "
                f"{allowed}"
            )
        if oid == NameOID.COUNTRY_NAME and len(value) != 2:
            raise PkiError(
                f"% Invalid subject name {text!r}: C must be a two-letter country code; "
                f"found {value!r}"
            )
        attributes.append(x509.NameAttribute(oid, value))
    return x509.Name(attributes)


@dataclass
class TrustpointConfig:
    """`crypto ca trustpoint <name>` and its sub-commands (None = not configured).

    `keypair`/`ca_keypair` are (kind, label). `enrollment` is "self" (`enrollment url self`),
    "terminal" (`enrollment terminal`) or the URL of `enrollment url <URL>`.
    """

    name: str
    keypair: tuple[str, str] | None = None
    ca_keypair: tuple[str, str] | None = None
    subject_name: str | None = None
    ca_subject_name: str | None = None
    enrollment: str | None = None
    key_usage_certificate: list[str] | None = None
    key_usage_ca_certificate: list[str] | None = None
    lifetime_certificate: int | None = None
    lifetime_ca_certificate: int | None = None
    message_digest: str | None = None
    rsakeypair: str | None = None
    enrollment_retry_period: int | None = None
    enrollment_retry_count: int | None = None
    query_url: str | None = None
    vrf: str | None = None

    def running_config_lines(self) -> list[str]:
        """The trustpoint as `show running-config` prints it (seed order, one-space indent)."""
        sub: list[str] = []
        if self.vrf is not None:
            sub.append(f"vrf {self.vrf}")
        if self.keypair is not None:
            sub.append(f"keypair {self.keypair[0]} {self.keypair[1]}")
        if self.ca_keypair is not None:
            sub.append(f"ca-keypair {self.ca_keypair[0]} {self.ca_keypair[1]}")
        if self.subject_name is not None:
            sub.append(f"subject-name {self.subject_name}")
        if self.ca_subject_name is not None:
            sub.append(f"subject-name ca-certificate {self.ca_subject_name}")
        if self.enrollment == "terminal":
            sub.append("enrollment terminal")
        elif self.enrollment is not None:
            sub.append(f"enrollment url {self.enrollment}")
        if self.enrollment_retry_count is not None:
            sub.append(f"enrollment retry count {self.enrollment_retry_count}")
        if self.enrollment_retry_period is not None:
            sub.append(f"enrollment retry period {self.enrollment_retry_period}")
        if self.query_url is not None:
            sub.append(f"query url {self.query_url}")
        if self.rsakeypair is not None:
            sub.append(f"rsakeypair {self.rsakeypair}")
        if self.key_usage_certificate is not None:
            sub.append("key-usage certificate " + " ".join(self.key_usage_certificate))
        if self.lifetime_certificate is not None:
            sub.append(f"lifetime certificate {self.lifetime_certificate}")
        if self.message_digest is not None:
            sub.append(f"message-digest {self.message_digest}")
        if self.key_usage_ca_certificate is not None:
            sub.append("key-usage ca-certificate " + " ".join(self.key_usage_ca_certificate))
        if self.lifetime_ca_certificate is not None:
            sub.append(f"lifetime ca-certificate {self.lifetime_ca_certificate}")
        return [f"crypto ca trustpoint {self.name}", *(" " + line for line in sub), "!"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        result = dataclasses.asdict(self)
        for key in ("keypair", "ca_keypair"):
            if result[key] is not None:
                result[key] = list(result[key])
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustpointConfig:
        """Inverse of `to_dict`; raises PkiError on unknown or missing members."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "name" not in data:
            raise PkiError(
                f"% Trustpoint state damaged: expected members {sorted(known)}; "
                f"found unknown {unknown}" + ("" if "name" in data else " and no 'name'")
            )
        values = dict(data)
        for key in ("keypair", "ca_keypair"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        for key in ("key_usage_certificate", "key_usage_ca_certificate"):
            if values.get(key) is not None:
                values[key] = list(values[key])
        return cls(**values)

    def leaf_key_ref(self) -> tuple[str, str]:
        """(kind, label) of the key the router certificate certifies.

        `keypair` if set, else `rsakeypair` (RSA), else the default RSA key (seed: "Not setting
        this key pair means that the trustpoint uses the default RSA key").
        """
        if self.keypair is not None:
            return self.keypair
        if self.rsakeypair is not None:
            return ("rsa", self.rsakeypair)
        return ("rsa", DEFAULT_KEY_LABEL)

    def root_key_ref(self) -> tuple[str, str]:
        """(kind, label) of the self-signed root's key (`ca-keypair`); PkiError if unset."""
        if self.ca_keypair is None:
            raise PkiError(
                f"% Trustpoint {self.name} has no ca-keypair: configure 'ca-keypair <type> "
                "<label>' to make a self-signed root (enrollment url self)"
            )
        return self.ca_keypair


def _check_range(what: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise PkiError(f"% Invalid {what} {value}: expected {low} to {high}")
    return value


def _parse_int(what: str, text: str, low: int, high: int) -> int:
    if not text.isdigit():
        raise PkiError(f"% Invalid {what} {text!r}: expected a number from {low} to {high}")
    return _check_range(what, int(text), low, high)


def _trustpoint_rows() -> list[tuple[tuple[str, ...], str, Any]]:
    """(keyword prefix, field, parser of the remaining words). Longest prefixes first."""

    def key_ref(words: list[str]) -> tuple[str, str]:
        if len(words) != 2:
            raise PkiError("% Incomplete command: expected <rsa|dsa|ecdsa> <label>")
        return (_check_kind(words[0].lower()), _check_label(words[1]))

    def text(words: list[str]) -> str:
        if not words:
            raise PkiError("% Incomplete command: expected a value")
        return " ".join(words)

    def dn_text(words: list[str]) -> str:
        value = text(words)
        parse_dn(value)  # validate now, like the router's parser
        return value

    def one_word(words: list[str]) -> str:
        if len(words) != 1:
            raise PkiError("% Invalid input: expected one word")
        return words[0]

    def url(words: list[str]) -> str:
        value = one_word(words)
        return "self" if value.lower() == "self" else value

    def digest(words: list[str]) -> str:
        value = one_word(words).lower()
        if value not in MESSAGE_DIGESTS:
            raise PkiError(
                f"% Invalid message-digest {value!r}: expected " + ", ".join(MESSAGE_DIGESTS)
            )
        return value

    def lifetime(words: list[str]) -> int:
        return _parse_int("lifetime", one_word(words), LIFETIME_MIN_DAYS, LIFETIME_MAX_DAYS)

    def period(words: list[str]) -> int:
        return _parse_int("retry period", one_word(words), *RETRY_PERIOD_RANGE)

    def count(words: list[str]) -> int:
        return _parse_int("retry count", one_word(words), *RETRY_COUNT_RANGE)

    def nothing(words: list[str]) -> str:
        if words:
            raise PkiError(f"% Invalid input detected: {' '.join(words)!r}")
        return "terminal"

    return [
        (("subject-name", "ca-certificate"), "ca_subject_name", dn_text),
        (("subject-name",), "subject_name", dn_text),
        (("key-usage", "ca-certificate"), "key_usage_ca_certificate", parse_key_usage_words),
        (("key-usage", "certificate"), "key_usage_certificate", parse_key_usage_words),
        (("lifetime", "ca-certificate"), "lifetime_ca_certificate", lifetime),
        (("lifetime", "certificate"), "lifetime_certificate", lifetime),
        (("enrollment", "retry", "period"), "enrollment_retry_period", period),
        (("enrollment", "retry", "count"), "enrollment_retry_count", count),
        (("enrollment", "url"), "enrollment", url),
        (("enrollment", "terminal"), "enrollment", nothing),
        (("ca-keypair",), "ca_keypair", key_ref),
        (("keypair",), "keypair", key_ref),
        (("message-digest",), "message_digest", digest),
        (("rsakeypair",), "rsakeypair", lambda words: _check_label(one_word(words))),
        (("query", "url"), "query_url", one_word),
        (("vrf",), "vrf", one_word),
    ]


def apply_trustpoint_command(
    tp: TrustpointConfig, words: list[str], *, negate: bool = False
) -> TrustpointConfig:
    """Apply one `(config-trustp)#` line (already split into words) and return the new config.

    `negate=True` is the `no <command>` form (remaining words are ignored). Keywords are
    case-insensitive and must be complete; the shell does abbreviation matching.
    Raises PkiError with the reason for an unknown or bad command.
    """
    lowered = [word.lower() for word in words]
    for prefix, field_name, parse in _trustpoint_rows():
        if tuple(lowered[: len(prefix)]) == prefix:
            rest = words[len(prefix) :]
            value = None if negate else parse(rest)
            return dataclasses.replace(tp, **{field_name: value})
    raise PkiError(f"% Invalid trustpoint command: {' '.join(words)!r}")


def check_enrollment_supported(tp: TrustpointConfig) -> None:
    """Raise PkiError unless the trustpoint enrolls with `url self` or `terminal`."""
    if tp.enrollment in ("self", "terminal"):
        return
    if tp.enrollment is None:
        raise PkiError(
            f"% Trustpoint {tp.name} has no enrollment method: configure 'enrollment url self'"
            " or 'enrollment terminal'"
        )
    raise PkiError(
        f"% Enrollment over SCEP ({tp.enrollment}) is not supported by this emulator: use "
        "'enrollment url self' or 'enrollment terminal'"
    )


def resolve_trustpoint_keys(
    tp: TrustpointConfig, keypairs: Mapping[tuple[str, str], KeyPair]
) -> tuple[KeyPair | None, KeyPair]:
    """(root key or None when no ca-keypair, leaf key) from the stored keys; PkiError if missing."""

    def lookup(ref: tuple[str, str], role: str) -> KeyPair:
        keypair = keypairs.get(ref)
        if keypair is None or keypair.is_imported:
            raise PkiError(
                f"% Trustpoint {tp.name}: {role} key pair {ref[0]} {ref[1]} not found; generate "
                f"it with 'crypto key generate {ref[0]} {ref[1]}'"
            )
        return keypair

    root = lookup(tp.ca_keypair, "ca") if tp.ca_keypair is not None else None
    return root, lookup(tp.leaf_key_ref(), "certificate")


# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------


def _subject(
    dn_text: str | None, fqdn: str, chassis_serial: str | None, ip_address: str | None
) -> x509.Name:
    # RDN order: configured DN, then the router's own attributes. IOS XR prints the last RDN
    # first, which gives the seed's "serialNumber=...,unstructuredName=...,OU=...,CN=...".
    attributes = list(parse_dn(dn_text)) if dn_text else []
    attributes.append(x509.NameAttribute(OID_UNSTRUCTURED_NAME, fqdn))
    if ip_address is not None:
        try:
            ipaddress.ip_address(ip_address)
        except ValueError as error:
            raise PkiError(
                f"% Invalid IP address {ip_address!r}: expected an IPv4 or IPv6 address"
            ) from error
        attributes.append(x509.NameAttribute(OID_UNSTRUCTURED_ADDRESS, ip_address))
    if chassis_serial is not None:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, chassis_serial))
    return x509.Name(attributes)


def _key_usage(words: list[str]) -> x509.KeyUsage:
    flags = {field: False for field in KEY_USAGE_WORDS.values()}
    for word in parse_key_usage_words(words):
        flags[KEY_USAGE_WORDS[word]] = True
    return x509.KeyUsage(encipher_only=False, decipher_only=False, **flags)


def _signature_hash(tp: TrustpointConfig, signer: KeyPair) -> hashes.HashAlgorithm:
    name = tp.message_digest or DEFAULT_MESSAGE_DIGEST
    if name not in MESSAGE_DIGESTS:
        raise PkiError(
            f"% Invalid message-digest {name!r}: expected " + ", ".join(MESSAGE_DIGESTS)
        )
    if signer.kind == "dsa":
        return hashes.SHA256()  # DSA certificates are always signed with SHA-256 here
    return MESSAGE_DIGESTS[name]()


def _validity(
    now: datetime, days: int | None, not_before: datetime | None, not_after: datetime | None
) -> tuple[datetime, datetime]:
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    start = not_before if not_before is not None else now.replace(microsecond=0)
    lifetime = DEFAULT_LIFETIME_DAYS if days is None else days
    end = not_after if not_after is not None else start + timedelta(days=lifetime)
    if end <= start:
        raise PkiError(
            f"% Certificate validity is empty: expected the end ({end}) after the start ({start})"
        )
    return start, end


def _sign(
    builder: x509.CertificateBuilder, signer: KeyPair, tp: TrustpointConfig
) -> x509.Certificate:
    if signer.is_imported:
        raise PkiError(f"% Key {signer.label} is an imported public key: it cannot sign")
    try:
        return builder.sign(signer.private_key, _signature_hash(tp, signer))
    except ValueError as error:
        # e.g. a 512-bit RSA key cannot hold a SHA-512 PKCS#1 digest.
        raise PkiError(
            f"% Certificate generation failed with {signer.kind.upper()} key {signer.label} "
            f"({signer.size} bits) and message-digest "
            f"{tp.message_digest or DEFAULT_MESSAGE_DIGEST}: {error}"
        ) from error


def make_root_certificate(
    tp: TrustpointConfig,
    root_key: KeyPair,
    *,
    chassis_serial: str,
    fqdn: str,
    serial_number: int,
    now: datetime,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """`crypto ca authenticate <tp>` with `enrollment url self`: the self-signed root.

    Subject = issuer = ca-certificate DN + unstructuredName=fqdn + serialNumber; CA:TRUE
    (critical); key usage as configured (default digitalSignature keyCertSign cRLSign,
    critical); SKI; lifetime `lifetime ca-certificate` (default 365 days).
    `not_before`/`not_after` override the validity (fault injection).
    """
    subject = _subject(tp.ca_subject_name, fqdn, chassis_serial, None)
    start, end = _validity(now, tp.lifetime_ca_certificate, not_before, not_after)
    public = root_key.public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(serial_number)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(tp.key_usage_ca_certificate or DEFAULT_ROOT_KEY_USAGE), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return _sign(builder, root_key, tp)


def _authority_key_identifier(root_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(root_cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def make_leaf_certificate(
    tp: TrustpointConfig,
    leaf_key: KeyPair,
    *,
    root_cert: x509.Certificate,
    root_key: KeyPair,
    chassis_serial: str | None,
    fqdn: str,
    ip_address: str | None,
    serial_number: int,
    now: datetime,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """`crypto ca enroll <tp>` with `enrollment url self`: the router (leaf) certificate.

    Subject = DN + unstructuredName (+ unstructuredAddress when `ip_address`) (+ serialNumber
    when `chassis_serial`); issuer = root's subject; CA:FALSE (critical); key usage as
    configured (default critical digitalSignature keyEncipherment keyAgreement); SKI and AKI;
    lifetime `lifetime certificate` (default 365 days). Signed with `root_key`.
    """
    if root_key.public_der() != root_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise PkiError(
            f"% Trustpoint {tp.name}: ca-keypair {root_key.kind} {root_key.label} does not match"
            " the CA certificate; run 'clear crypto ca certificates "
            f"{tp.name}' and 'crypto ca authenticate {tp.name}' again"
        )
    subject = _subject(tp.subject_name, fqdn, chassis_serial, ip_address)
    start, end = _validity(now, tp.lifetime_certificate, not_before, not_after)
    public = leaf_key.public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root_cert.subject)
        .public_key(public)
        .serial_number(serial_number)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(tp.key_usage_certificate or DEFAULT_LEAF_KEY_USAGE), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_authority_key_identifier(root_cert), critical=False)
    )
    return _sign(builder, root_key, tp)


def format_key_usage_string(cert: x509.Certificate) -> str:
    """`critical,digitalSignature,keyEncipherment,keyAgreement` (OpenSSL names and order)."""
    try:
        extension = cert.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        return "none"
    names = [
        display for field, display in _KEY_USAGE_DISPLAY if getattr(extension.value, field)
    ]
    return ",".join((["critical"] if extension.critical else []) + names)


def format_certificate_summary(cert: x509.Certificate, *, indent: str = "") -> list[str]:
    """Serial/Subject/Issued By/Validity/SHA1 lines of one certificate.

    Without `indent`: the compact labels of `crypto ca authenticate|enroll` (seed:
    "Serial Number : 0B:62"). With `indent`: the aligned labels and indented values of
    `show crypto ca certificates` (seed: "Issued By      :").
    """
    if indent:
        value_indent = indent + "  "
        labels = ("Serial Number  :", "Issued By      :", "Validity Start :", "Validity End   :")
    else:
        value_indent = ""
        labels = ("Serial Number :", "Issued By :", "Validity Start :", "Validity End :")
    return [
        f"{indent}{labels[0]} {format_serial(cert.serial_number)}",
        f"{indent}Subject:",
        f"{value_indent}{format_dn(cert.subject)}",
        f"{indent}{labels[1]}",
        f"{value_indent}{format_dn(cert.issuer)}",
        f"{indent}{labels[2]} {format_ios_time(cert.not_valid_before_utc)}",
        f"{indent}{labels[3]} {format_ios_time(cert.not_valid_after_utc)}",
        f"{indent}SHA1 Fingerprint:",
        f"{value_indent}{sha1_fingerprint_hex(cert)}",
    ]


def _subject_will_include(dn_text: str | None, fqdn: str) -> list[str]:
    lines = []
    if dn_text:
        lines.append(f"% The subject name in the certificate will include: {dn_text}")
    lines.append(f"% The subject name in the certificate will include: {fqdn}")
    return lines


def format_authenticate_output(tp: TrustpointConfig, cert: x509.Certificate, fqdn: str) -> str:
    """What `crypto ca authenticate <tp>` prints after making the root (seed layout)."""
    lines = _subject_will_include(tp.ca_subject_name, fqdn)
    lines += format_certificate_summary(cert)
    return "\n".join(lines) + "\n"


def format_enroll_preamble(tp: TrustpointConfig, fqdn: str) -> str:
    """The first lines of `crypto ca enroll <tp>`; then ask INCLUDE_SERIAL_QUESTION."""
    return "\n".join(_subject_will_include(tp.subject_name, fqdn)) + "\n"


def format_serial_notice(chassis_serial: str) -> str:
    """Printed after "yes" to INCLUDE_SERIAL_QUESTION; then ask INCLUDE_IP_QUESTION."""
    return f"% The serial number in the certificate will be: {chassis_serial}\n"


def format_enroll_output(tp: TrustpointConfig, cert: x509.Certificate, key: KeyPair) -> str:
    """What `crypto ca enroll <tp>` prints after making the leaf (seed layout).

    The seed prints the key-usage string and the serial number on one line; so do we.
    """
    first = (
        f"Certificate keypair configured Type: {_KEY_TYPE_CODES[key.kind]}, Label: {key.label}."
        f" Leaf cert key usage string: {format_key_usage_string(cert)}."
        f" Serial Number : {format_serial(cert.serial_number)}"
    )
    rest = format_certificate_summary(cert)[1:]  # the serial is already on the first line
    return "\n".join([first, *rest]) + "\n"


def _public_key_text(cert: x509.Certificate) -> str:
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"ECDSA {public.curve.name} ({public.curve.key_size} bits)"
    return f"{_kind_of_key(public).upper()} ({public.key_size} bits)"


_SIGNATURE_NAMES = {
    SignatureAlgorithmOID.RSA_WITH_SHA256: "sha256WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "sha384WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "sha512WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "sha1WithRSAEncryption",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ecdsa-with-SHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
    SignatureAlgorithmOID.DSA_WITH_SHA256: "dsa_with_SHA256",
}


def _detail_lines(cert: x509.Certificate, indent: str) -> list[str]:
    """Extra lines of `show crypto ca certificates ... detail` (our own IOS-like layout):
    public key, signature algorithm, then one line per extension."""
    signature_name = _SIGNATURE_NAMES.get(
        cert.signature_algorithm_oid, cert.signature_algorithm_oid.dotted_string
    )
    lines = [
        f"{indent}Public Key     : {_public_key_text(cert)}",
        f"{indent}Signature Algorithm : {signature_name}",
        f"{indent}Extensions:",
    ]
    for extension in cert.extensions:
        critical = " (critical)" if extension.critical else ""
        value = extension.value
        if isinstance(value, x509.BasicConstraints):
            text = "CA:TRUE" if value.ca else "CA:FALSE"
            name = "Basic Constraints"
        elif isinstance(value, x509.KeyUsage):
            text = format_key_usage_string(cert).removeprefix("critical,")
            name = "Key Usage"
        elif isinstance(value, x509.SubjectKeyIdentifier):
            text = value.digest.hex().upper()
            name = "Subject Key Identifier"
        elif isinstance(value, x509.AuthorityKeyIdentifier):
            text = (value.key_identifier or b"").hex().upper()
            name = "Authority Key Identifier"
        else:
            name = extension.oid.dotted_string
            text = "present"
        lines.append(f"{indent}  {name}{critical}: {text}")
    return lines


def format_show_certificates(
    trustpoints: Iterable[tuple[str, x509.Certificate | None, x509.Certificate | None]],
    detail: bool = False,
) -> str:
    """`show crypto ca certificates [name] [detail]` in the seed's layout.

    `trustpoints` is (name, ca_cert or None, router_cert or None) per trustpoint. Times are
    UTC, as in the seed. `detail` adds, under each certificate, the public key, signature
    algorithm and extensions. A trustpoint with no certificate prints only its header.
    """
    out: list[str] = []
    for name, ca_cert, router_cert in trustpoints:
        out += ["", f"Trustpoint : {name}", "====="]
        if ca_cert is not None:
            out.append("CA certificate")
            out += format_certificate_summary(ca_cert, indent="  ")
            if detail:
                out += _detail_lines(ca_cert, "  ")
        if router_cert is not None:
            out.append("Router certificate")
            out.append("  Key usage      : General Purpose")
            out.append("  Status         : Available")
            out += format_certificate_summary(router_cert, indent="  ")
            if detail:
                out += _detail_lines(router_cert, "  ")
            out.append(f"  Associated Trustpoint: {name}")
    return "\n".join(out) + "\n" if out else ""


# --------------------------------------------------------------------------------------------
# Cut-and-paste enrollment (`enrollment terminal`)
# --------------------------------------------------------------------------------------------

_PEM_CERT_RE = re.compile(
    r"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----(.*?)"
    r"-----END (?:X509 |TRUSTED )?CERTIFICATE-----",
    re.S,
)


def parse_pasted_certificate(text: str) -> x509.Certificate:
    """A certificate pasted at the terminal: PEM, or the bare base64 body (a final `quit`
    line is ignored). Raises PkiError saying what was expected and found."""
    if len(text) > MAX_PASTE_CHARS:
        raise PkiError(
            f"% Invalid certificate: expected at most {MAX_PASTE_CHARS} characters; "
            f"found {len(text)}"
        )
    lines = [line.strip() for line in text.strip().splitlines()]
    if lines and lines[-1].lower() == "quit":
        lines.pop()
    joined = "\n".join(lines)
    match = _PEM_CERT_RE.search(joined)
    body = match.group(1) if match else joined
    compact = "".join(body.split())
    expected = "expected a PEM certificate or its base64 body"
    if not compact:
        raise PkiError(f"% Invalid certificate: {expected}; found nothing")
    try:
        der = base64.b64decode(compact, validate=True)
    except binascii.Error as error:
        raise PkiError(
            f"% Invalid certificate: {expected}; found text that is not base64 "
            f"({compact[:20]!r}...)"
        ) from error
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise PkiError(
            f"% Invalid certificate: {expected}; the base64 decodes to {len(der)} bytes "
            f"that are not a DER X.509 certificate ({error})"
        ) from error


def format_ca_fingerprint_prompt(cert: x509.Certificate) -> str:
    """What `crypto ca authenticate <tp>` shows for a pasted CA certificate, ending with
    ACCEPT_CERTIFICATE_QUESTION (the seed's layout, MD5 "Fingerprint" as in the seed)."""
    lines = [
        f"Serial Number :{format_serial(cert.serial_number)}",
        "Subject Name :",
        format_dn(cert.subject),
        "Issued By :",
        format_dn(cert.issuer),
        f"Validity Start :{format_ios_time(cert.not_valid_before_utc)}",
        f"Validity End :{format_ios_time(cert.not_valid_after_utc)}",
        f"Fingerprint:{md5_fingerprint_spaced(cert)}",
    ]
    return "\n".join(lines) + "\n" + ACCEPT_CERTIFICATE_QUESTION


def build_csr(
    tp: TrustpointConfig,
    key: KeyPair,
    *,
    chassis_serial: str | None,
    fqdn: str,
    ip_address: str | None,
    include_serial: bool,
    challenge_password: str | None = None,
) -> str:
    """`crypto ca enroll <tp>` with `enrollment terminal`: the PKCS#10 request, PEM text.

    Subject as the leaf's (`make_leaf_certificate`); signed with `key` and the trustpoint's
    message digest. Show it with `format_csr_output`.
    """
    if include_serial and not chassis_serial:
        raise ValueError("include_serial needs chassis_serial")
    if key.is_imported:
        raise PkiError(f"% Key {key.label} is an imported public key: it cannot sign a request")
    serial = chassis_serial if include_serial else None
    subject = _subject(tp.subject_name, fqdn, serial, ip_address)
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if challenge_password:
        builder = builder.add_attribute(
            x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge_password.encode()
        )
    try:
        csr = builder.sign(key.private_key, _signature_hash(tp, key))
    except ValueError as error:
        raise PkiError(f"% Certificate request failed with key {key.label}: {error}") from error
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def format_request_fingerprint(csr_pem: str) -> str:
    """`Fingerprint: 17D8B38D ED2BDF2E ...` (MD5 of the request's DER, as the seed shows)."""
    der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    digest = hashes.Hash(hashes.MD5())  # noqa: S303 - display only, as IOS
    digest.update(der)
    digits = digest.finalize().hex().upper()
    return "Fingerprint: " + " ".join(digits[i : i + 8] for i in range(0, len(digits), 8)) + "\n"


def format_csr_output(csr_pem: str) -> str:
    """The request as IOS prints it after "yes" to DISPLAY_REQUEST_QUESTION."""
    return (
        "Certificate Request follows:\n\n"
        + csr_pem.rstrip("\n")
        + "\n\n---End - This line not part of the certificate request---\n"
    )


def check_imported_certificate(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    key: KeyPair,
    *,
    trustpoint: str = "",
    now: datetime | None = None,
) -> None:
    """`crypto ca import <tp> certificate`: the pasted certificate must be issued by the
    trustpoint's CA and certify our key. Raises PkiError with the reason otherwise."""
    where = f" of trustpoint {trustpoint}" if trustpoint else ""
    if cert.issuer != ca_cert.subject:
        raise PkiError(
            f"% Certificate import failed: expected a certificate issued by the CA{where} "
            f"({format_dn(ca_cert.subject)}); found one issued by {format_dn(cert.issuer)}"
        )
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError) as error:
        raise PkiError(
            f"% Certificate import failed: the certificate's signature does not verify with "
            f"the CA certificate{where} ({error or 'bad signature'})"
        ) from error
    found = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if found != key.public_der():
        raise PkiError(
            f"% Certificate import failed: the certificate's public key does not match key "
            f"pair {key.kind} {key.label}{where}; paste the certificate issued for this "
            "router's request"
        )
    if now is not None:
        moment = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise PkiError(
                f"% Certificate import failed: the certificate is valid from "
                f"{format_ios_time(cert.not_valid_before_utc)} to "
                f"{format_ios_time(cert.not_valid_after_utc)}; it is now {format_ios_time(moment)}"
            )
