"""`crypto ca trustpoint <name>`: its settings, the `(config-trustp)#` grammar, its keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID, ObjectIdentifier

from . import PkiError
from .keys import DEFAULT_KEY_LABEL, KeyPair, check_kind, check_label
from .scep import check_scep_url

__all__ = [
    "DEFAULT_LEAF_KEY_USAGE",
    "DEFAULT_MESSAGE_DIGEST",
    "DEFAULT_ROOT_KEY_USAGE",
    "KEY_USAGE_WORDS",
    "MESSAGE_DIGESTS",
    "OID_UNSTRUCTURED_ADDRESS",
    "OID_UNSTRUCTURED_NAME",
    "TrustpointConfig",
    "apply_trustpoint_command",
    "check_enrollment_supported",
    "parse_dn",
    "parse_key_usage_words",
    "resolve_trustpoint_keys",
]

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

# PKCS#9 attributes the router adds to the subject (ENVELOPE.md section 4).
OID_UNSTRUCTURED_NAME = ObjectIdentifier("1.2.840.113549.1.9.2")
OID_UNSTRUCTURED_ADDRESS = ObjectIdentifier("1.2.840.113549.1.9.8")
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
        return (check_kind(words[0].lower()), check_label(words[1]))

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
        (("rsakeypair",), "rsakeypair", lambda words: check_label(one_word(words))),
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
    """Raise PkiError unless the trustpoint enrolls with `url self`, `terminal` or a SCEP CA's
    `url http://...`."""
    if tp.enrollment in ("self", "terminal"):
        return
    if tp.enrollment is None:
        raise PkiError(
            f"% Trustpoint {tp.name} has no enrollment method: configure 'enrollment url self',"
            " 'enrollment url http://<SCEP CA>' or 'enrollment terminal'"
        )
    check_scep_url(tp.enrollment)


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

