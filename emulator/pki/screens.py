"""What the shell prints for PKI commands: questions, notices, `show crypto key mypubkey`,
`show crypto ca certificates`, the authenticate/enroll screens and fingerprints (seed wording
and layout where the seed shows them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Union
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from . import PkiError
from .keys import (
    DSA_SIZE_DEFAULT,
    DSA_SIZES,
    ECDSA_CURVE_DEFAULT,
    ECDSA_CURVES,
    RSA_MODULUS_DEFAULT,
    RSA_MODULUS_MAX,
    RSA_MODULUS_MIN,
    KeyPair,
    KeyPurpose,
    KeyUsage,
    check_kind,
    check_label,
    kind_of_key,
)
from .trustpoints import OID_UNSTRUCTURED_ADDRESS, OID_UNSTRUCTURED_NAME, TrustpointConfig

__all__ = [
    "ACCEPT_CERTIFICATE_QUESTION",
    "CERTIFICATE_IMPORTED",
    "DISPLAY_REQUEST_QUESTION",
    "ENROLL_PASSWORD_NOTICE",
    "ENTER_IP_QUESTION",
    "INCLUDE_IP_QUESTION",
    "INCLUDE_SERIAL_QUESTION",
    "PASSWORD_PROMPT",
    "PASTE_CERTIFICATE_PROMPT",
    "REENTER_PASSWORD_PROMPT",
    "REPLACE_KEYS_QUESTION",
    "ZEROIZE_KEYS_QUESTION",
    "crl_distribution_points",
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
    "format_request_heading",
    "format_serial",
    "format_serial_notice",
    "format_show_certificates",
    "md5_fingerprint_spaced",
    "sha1_fingerprint_hex",
]

# "Certificate keypair configured Type: 1, ..." (seed, RSA). The DSA/ECDSA codes are assumed.
_KEY_TYPE_CODES = {"rsa": 1, "dsa": 2, "ecdsa": 3}
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

_DN_DISPLAY_NAMES = {
    NameOID.SERIAL_NUMBER: "serialNumber",
    OID_UNSTRUCTURED_NAME: "unstructuredName",
    OID_UNSTRUCTURED_ADDRESS: "unstructuredAddress",
    NameOID.EMAIL_ADDRESS: "E",
}

REPLACE_KEYS_QUESTION = "Do you really want to replace them? [yes/no]: "
# Not in the seed; IOS XR asks before zeroizing.
ZEROIZE_KEYS_QUESTION = "Do you really want to remove these keys? [yes/no]: "
INCLUDE_SERIAL_QUESTION = "% Include the router serial number in the subject name? [yes/no]: "
INCLUDE_IP_QUESTION = "% Include an IP address in the subject name? [yes/no]: "
# Asked after "yes" to INCLUDE_IP_QUESTION (IOS wording; the seed answers "no").
ENTER_IP_QUESTION = "Enter Interface name or IP Address[]: "
# Verbatim from the seed's `crypto ca authenticate myca` example, doubled question mark and
# no space after the colon included: scripts written against a router match this text.
ACCEPT_CERTIFICATE_QUESTION = "Do you accept this certificate?? [yes/no]:"
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



def format_generate_prompt(kind: str, label: str | None, usage: KeyUsage = "general") -> str:
    """What `crypto key generate <kind> [label]` prints before reading the size (seed layout).

    Ends with the question (no newline); feed the answer to `parse_generate_answer`.
    """
    kind = check_kind(kind)
    label = check_label(label)
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


def format_already_have_keys(label: str) -> str:
    """The seed's re-generation warning; ask REPLACE_KEYS_QUESTION after it."""
    return f"% You already have keys defined for {label}\n"


def format_generate_done(kind: str) -> str:
    """The seed's closing lines of `crypto key generate`."""
    name = check_kind(kind).upper()
    return f"Generating {name} keys ...\nDone w/ crypto generate keypair\n[OK]\n"



_HEX_GROUP = 8  # hex digits per group in "Data :"
_GROUPS_PER_LINE = 8


def _grouped_hex(der: bytes) -> list[str]:
    digits = der.hex().upper()
    groups = [digits[i : i + _HEX_GROUP] for i in range(0, len(digits), _HEX_GROUP)]
    return [
        " ".join(groups[i : i + _GROUPS_PER_LINE])
        for i in range(0, len(groups), _GROUPS_PER_LINE)
    ]


# The `Type :` words for each half of RSA usage keys, after the seed's "RSA General purpose".
_HALF_TYPE_WORDS = {"signature": "Signature", "encryption": "Encryption"}
# `Key usage :` of a router certificate, after the seed's "General Purpose".
_CERTIFICATE_USAGE_WORDS = {"general": "General Purpose", "signature": "Signature", "encryption": "Encryption"}


def _key_type_text(keypair: KeyPair, purpose: KeyPurpose = "general") -> str:
    if keypair.kind == "rsa" and purpose in _HALF_TYPE_WORDS:
        return f"RSA {_HALF_TYPE_WORDS[purpose]}"
    words = "General purpose" if keypair.usage == "general" else "Special Usage"
    if keypair.kind == "ecdsa":
        # Assumed: IOS XR names the curve in the type line.
        curve = keypair.curve or ""
        return f"ECDSA {words.split()[0]} Curve {curve[:1].upper()}{curve[1:]}"
    return f"{keypair.kind.upper()} {words}"


def format_mypubkey(keypairs: Iterable[KeyPair], kind: str, tz_name: str = "UTC") -> str:
    """`show crypto key mypubkey rsa|dsa|ecdsa` in the seed's layout ("" when no key).

    Data is the DER SubjectPublicKeyInfo as upper-case hex, 8 digits a group, 8 groups a line.
    Keys are listed oldest first; RSA usage keys as two keys of one label, signature first.
    """
    kind = check_kind(kind)
    selected = sorted(
        (keypair for keypair in keypairs if keypair.kind == kind),
        key=lambda keypair: (_aware(keypair.created), keypair.label),
    )
    blocks = []
    for purpose, keypair in (half for pair in selected for half in pair.halves()):
        lines = [
            f"Key label: {keypair.label}",
            f"Type      : {_key_type_text(keypair, purpose)}",
            f"Size      : {keypair.size}",
            f"Created   : {format_ios_time(keypair.created, tz_name)}",
            "Data      :",
            *_grouped_hex(keypair.public_der()),
        ]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)



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
    return f"{kind_of_key(public).upper()} ({public.key_size} bits)"


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


def crl_distribution_points(cert: x509.Certificate) -> list[str]:
    """The URIs of the certificate's CRL distribution points ([] when it names none)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [
        str(name.value) for point in points for name in (point.full_name or [])
        if isinstance(name, x509.UniformResourceIdentifier)
    ]


def _summary_with_crl_points(cert: x509.Certificate, indent: str) -> list[str]:
    """`format_certificate_summary`, with the seed's "CRL Distribution Point" line and the
    certificate's URIs (one a line) right after "Validity End" when it names any."""
    lines = format_certificate_summary(cert, indent=indent)
    urls = crl_distribution_points(cert)
    if urls:
        after_validity = next(i for i, line in enumerate(lines) if "Validity End" in line) + 1
        lines[after_validity:after_validity] = [
            f"{indent}CRL Distribution Point", *(f"{indent}  {url}" for url in urls)
        ]
    return lines


RouterCertificates = Union[x509.Certificate, Sequence[tuple[str, x509.Certificate]], None]


def format_show_certificates(
    trustpoints: Iterable[tuple[str, x509.Certificate | None, RouterCertificates]],
    detail: bool = False,
) -> str:
    """`show crypto ca certificates [name] [detail]` in the seed's layout.

    `trustpoints` is (name, ca_cert or None, router certificates) per trustpoint: None, one
    general-purpose certificate, or (purpose, certificate) pairs (usage keys: "signature",
    "encryption"), each shown with its "Key usage". Times are
    UTC, as in the seed. `detail` adds, under each certificate, the public key, signature
    algorithm and extensions. A trustpoint with no certificate prints only its header.
    """
    out: list[str] = []
    for name, ca_cert, router_cert in trustpoints:
        out += ["", f"Trustpoint : {name}", "====="]
        if ca_cert is not None:
            out.append("CA certificate")
            out += _summary_with_crl_points(ca_cert, "  ")
            if detail:
                out += _detail_lines(ca_cert, "  ")
        if isinstance(router_cert, x509.Certificate):
            router_cert = [("general", router_cert)]
        for purpose, router_cert in router_cert or ():
            out.append("Router certificate")
            out.append(f"  Key usage      : {_CERTIFICATE_USAGE_WORDS[purpose]}")
            out.append("  Status         : Available")
            out += _summary_with_crl_points(router_cert, "  ")
            if detail:
                out += _detail_lines(router_cert, "  ")
            out.append(f"  Associated Trustpoint: {name}")
    return "\n".join(out) + "\n" if out else ""



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



def format_request_fingerprint(csr_pem: str) -> str:
    """`Fingerprint: 17D8B38D ED2BDF2E ...` (MD5 of the request's DER, as the seed shows)."""
    der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    digest = hashes.Hash(hashes.MD5())  # noqa: S303 - display only, as IOS
    digest.update(der)
    digits = digest.finalize().hex().upper()
    return "Fingerprint: " + " ".join(digits[i : i + 8] for i in range(0, len(digits), 8)) + "\n"


def format_request_heading(purpose: str) -> str:
    """The line before each request of RSA usage keys, naming the key it is for."""
    return f"% {_HALF_TYPE_WORDS[purpose]} key certificate request:\n"


def format_csr_output(csr_pem: str) -> str:
    """The request as IOS prints it after "yes" to DISPLAY_REQUEST_QUESTION."""
    return (
        "Certificate Request follows:\n\n"
        + csr_pem.rstrip("\n")
        + "\n\n---End - This line not part of the certificate request---\n"
    )


