"""Step (4): the certificate chain, leaf to an enrolled root.

Two tools, each where it fits:

- `cryptography.x509.verification` (`PolicyBuilder` -> `ClientVerifier`, since a device has no
  hostname) does the path building, name chaining, signatures, validity, CA bit, path length
  and unknown-critical-extension checks for RSA and ECDSA chains. Its default extension
  policies are for the web PKI (leaf SAN and AKI, root keyUsage, EKU); device certificates made
  by `crypto ca enroll system-trustpoint` have none of those, so we pass our own policies that
  ask for what ENVELOPE.md section 4 says instead.
- Primitives (`verify_directly_issued_by` plus our own checks) for DSA chains, which the
  verifier's fixed key policy refuses but ENVELOPE.md allows when the policy opts in, and to
  explain *why* a chain failed with a stable finding id (`explain_chain_failure`).

The verified-chain cache keys on every certificate's SHA-256 and the policy, and remembers the
window in which every certificate of the chain is valid: a hit only skips the signature checks,
never the time check.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification as xv

from .errors import ChainError, VerifierError
from .findings import FindingId
from .policy import DEFAULT_POLICY, Policy
from .signature import KeyPolicyError, check_key_policy, is_dsa_key

__all__ = ["CERTIFICATE_ERRORS", "explain_chain_failure", "fingerprint", "format_name", "is_ca", "is_weak_hash",
           "load_der_certificate", "per_certificate", "read_now", "utc_moment", "validate_chain"]

_WEAK_HASHES = (hashes.SHA1, hashes.MD5)
_CACHE_SIZE = 4096  # one entry per (leaf, roots) pair: a fleet of thousands of devices fits
_cache: OrderedDict[tuple[Any, ...], tuple[list[x509.Certificate], dt.datetime, dt.datetime]] = OrderedDict()
_cache_lock = threading.Lock()
_DER = Encoding.DER
_read_by_der: dict[bytes, x509.Certificate] = {}  # read_now's certificates, by their DER


T = TypeVar("T")


#: What cryptography raises for a malformed certificate, when loading it or at the first use of
#: a part it parses lazily: TypeError for a name attribute of BIT STRING type under another OID
#: than x500UniqueIdentifier, KeyError for some attribute tags, x509.InvalidVersion (not a
#: ValueError) for the version, ValueError for a known extension whose value is not its DER
#: (a subjectAltName that does not parse), x509.DuplicateExtension (not a ValueError) for an
#: extension listed twice; found by the property tests and a hostile device's SUDI output.
CERTIFICATE_ERRORS = (ValueError, TypeError, KeyError, x509.InvalidVersion, x509.DuplicateExtension)


#: The attribute names the router prints (`show crypto ca certificates`) where RFC 4514 has none
#: and cryptography would print the dotted OID.
_ATTRIBUTE_NAMES = {
    x509.NameOID.SERIAL_NUMBER: "serialNumber",
    x509.ObjectIdentifier("1.2.840.113549.1.9.2"): "unstructuredName",
    x509.ObjectIdentifier("1.2.840.113549.1.9.8"): "unstructuredAddress",
    x509.NameOID.EMAIL_ADDRESS: "emailAddress",
}


def format_name(name: x509.Name) -> str:
    """A certificate subject or issuer as users read it: RFC 4514 with the router's attribute
    names (`CN=r1,unstructuredName=r1.example.com,serialNumber=FOC2104R15R`), never dotted OIDs.
    Device text: a terminal shows it through `verifier.display.inert`."""
    return name.rfc4514_string(_ATTRIBUTE_NAMES)


def read_now(cert: x509.Certificate) -> x509.Certificate:
    """Read the lazily parsed names, validity and extensions of `cert` now (raising one of
    CERTIFICATE_ERRORS if malformed) rather than wherever they are first used; returns it, or
    the certificate with the same DER read before (the same certificate, already read).

    Extensions included: every check that reads one (`get_extension_for_class`) would
    otherwise raise on a certificate whose extensions do not parse, far from where it was read.
    A device's root and pinned leaf are read from the trust store and then again from each
    envelope it signs: by DER, the names are read once, and what is memoized per certificate
    object (`per_certificate`) is shared by both.
    """
    der = cert.public_bytes(_DER)
    known = _read_by_der.get(der)
    if known is not None:
        return known
    cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018
    cert.extensions  # noqa: B018
    if len(_read_by_der) >= _CACHE_SIZE:
        _read_by_der.clear()
    _read_by_der[der] = cert  # (a race only reads a certificate twice)
    return cert


def load_der_certificate(der: bytes) -> x509.Certificate:
    """`x509.load_der_x509_certificate` with `read_now`; any of CERTIFICATE_ERRORS becomes a
    ValueError, raised at load time."""
    try:
        return read_now(x509.load_der_x509_certificate(der))
    except CERTIFICATE_ERRORS as exc:
        raise ValueError(f"not a valid DER X.509 certificate ({exc})") from None


def per_certificate(function: Callable[[x509.Certificate], T]) -> Callable[[x509.Certificate], T]:
    """Memoize a function of one certificate by the certificate object's identity.

    A device's root and leaf recur in every envelope, as the same objects (the envelope and
    the trust store cache them by their text). `functools.lru_cache` would hash the certificate,
    and hashing an `x509.Certificate` hashes its DER, which costs more than most of the
    functions memoized here, six times per verification. The cache keeps each certificate it holds, so an
    id cannot be reused while its entry is there; it is emptied when full (a fleet fits).
    """
    cache: dict[int, tuple[x509.Certificate, T]] = {}

    @functools.wraps(function)
    def memoized(cert: x509.Certificate) -> T:
        hit = cache.get(id(cert))
        if hit is not None and hit[0] is cert:
            return hit[1]
        value = function(cert)
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[id(cert)] = (cert, value)  # (a race only computes a value twice)
        return value

    return memoized


def is_ca(cert: x509.Certificate) -> bool:
    """Whether `cert` is a CA certificate (basicConstraints CA:TRUE): what a root, a sub-CA or a
    trust-pool entry must be."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


@per_certificate  # a device's root and leaf recur in every envelope: four calls per envelope verified
def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, lowercase hex: how roots are enrolled and compared."""
    return cert.fingerprint(hashes.SHA256()).hex()


@per_certificate  # the enrolled root is asked at every envelope
def is_weak_hash(cert: x509.Certificate) -> str | None:
    """The name of a refused signature hash (SHA-1, MD5) the certificate is signed with, else None."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None  # e.g. Ed25519: no separate hash; the key policy decides
    if isinstance(algorithm, _WEAK_HASHES):
        return algorithm.name.upper()
    return None


def utc_moment(at: dt.datetime | None, error: type[VerifierError] = VerifierError,
               what: str = "verification time") -> dt.datetime:
    """`at` in UTC (None: now); `error` naming `what` for a naive datetime, whose zone nobody
    can know. The one reading of a caller's verification time."""
    if at is None:
        return dt.datetime.now(dt.UTC)
    if at.tzinfo is None:
        raise error(f"{what} {at.isoformat()} has no time zone; pass an aware datetime (UTC)")
    return at.astimezone(dt.UTC)


def _ca_basic_constraints(_policy: Any, _cert: x509.Certificate, value: x509.BasicConstraints) -> None:
    if not value.ca:
        raise ValueError("issuer is not a CA (basicConstraints CA:FALSE)")


def _ca_key_usage(_policy: Any, _cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
    if value is not None and not value.key_cert_sign:
        raise ValueError("issuer's keyUsage does not allow keyCertSign")


def _ee_basic_constraints(_policy: Any, _cert: x509.Certificate, value: x509.BasicConstraints | None) -> None:
    if value is not None and value.ca:
        raise ValueError("leaf is a CA (basicConstraints CA:TRUE)")


def _ee_key_usage(_policy: Any, _cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
    if value is None:
        return
    if not value.digital_signature:
        raise ValueError("leaf's keyUsage does not allow digitalSignature")
    if value.key_cert_sign:
        raise ValueError("leaf's keyUsage allows keyCertSign, which only a CA may have")


# The device profile (ENVELOPE.md section 4): issuers are CAs that may sign certificates;
# the leaf is not a CA and may sign data. No SAN, AKI, SKI or EKU is required: the device's
# `crypto ca enroll` does not add them. Unknown critical extensions still fail (the verifier
# refuses any critical extension no policy accounts for).
_CA_POLICY = (
    xv.ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, xv.Criticality.AGNOSTIC, _ca_basic_constraints)
    .may_be_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, _ca_key_usage)
)
_EE_POLICY = (
    xv.ExtensionPolicy.permit_all()
    .may_be_present(x509.BasicConstraints, xv.Criticality.AGNOSTIC, _ee_basic_constraints)
    .may_be_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, _ee_key_usage)
)


def _validity_window(chain: Sequence[x509.Certificate]) -> tuple[dt.datetime, dt.datetime]:
    return (
        max(cert.not_valid_before_utc for cert in chain),
        min(cert.not_valid_after_utc for cert in chain),
    )


def _public_key(cert: x509.Certificate, role: str) -> Any:
    try:
        return cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ChainError(f"the {role} certificate's public key cannot be loaded ({exc})") from None


def _needs_primitives(certs: Sequence[x509.Certificate]) -> bool:
    return any(is_dsa_key(_public_key(cert, "chain")) for cert in certs)


def _validate_with_primitives(
    leaf: x509.Certificate, roots: Sequence[x509.Certificate], at: dt.datetime, policy: Policy
) -> list[x509.Certificate]:
    """Two-tier only: DSA devices, which `x509.verification` refuses by its fixed key policy."""
    problems = [text for _id, text, _e, _f in explain_chain_failure(leaf, roots, (), at, policy)]
    if problems:
        raise ChainError("; ".join(problems))
    for root in roots:
        if root.subject == leaf.issuer:
            try:
                leaf.verify_directly_issued_by(root)
            except (InvalidSignature, ValueError, TypeError):
                continue
            return [leaf, root]
    raise ChainError("the leaf is not issued by any of the given roots")


def validate_chain(
    leaf: x509.Certificate,
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    at: dt.datetime | None = None,
    *,
    policy: Policy | None = None,
) -> list[x509.Certificate]:
    """Validate `leaf` up to one of `roots` at time `at` (default: now, UTC).

    Returns the chain, leaf first and the root last. Raises ChainError with the reason if no
    valid chain exists, if `roots` is empty, or if more intermediates are given than the policy
    allows (a bound on path-building time).
    """
    policy = policy or DEFAULT_POLICY
    when = utc_moment(at, ChainError, "validation time")
    if not roots:
        raise ChainError("no trust anchor: pass at least one enrolled root")
    if len(intermediates) > policy.max_intermediates:
        raise ChainError(
            f"{len(intermediates)} intermediates given; at most {policy.max_intermediates} are "
            "considered, to bound path-building time"
        )
    key = (
        fingerprint(leaf),
        tuple(fingerprint(root) for root in roots),
        tuple(fingerprint(cert) for cert in intermediates),
        policy,
    )
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
    if hit is not None:
        chain, not_before, not_after = hit
        second = when.replace(microsecond=0)
        if not_before <= second <= not_after:
            return list(chain)
        # outside the cached window: fall through so the error names the certificate
    for index, cert in enumerate((leaf, *intermediates)):
        weak = is_weak_hash(cert)
        if weak:
            role = "leaf" if index == 0 else f"intermediate {index}"
            raise ChainError(f"the {role} certificate is signed with {weak}, which is refused")
    try:
        # x509.verification checks only issuers' keys; the leaf's key signs the envelope, so
        # the same key policy as the signature step applies to it here too.
        check_key_policy(_public_key(leaf, "leaf"), policy, role="leaf")
    except KeyPolicyError as exc:
        raise ChainError(str(exc)) from None
    if _needs_primitives((leaf, *roots, *intermediates)):
        if intermediates:
            raise ChainError("DSA chains are supported two-tier only (no intermediates)")
        for cert, role in ((leaf, "leaf"), *((root, "root") for root in roots)):
            try:
                check_key_policy(_public_key(cert, role), policy, role=role)
            except KeyPolicyError as exc:
                raise ChainError(str(exc)) from None
        chain = _validate_with_primitives(leaf, roots, when, policy)
    else:
        builder = (
            xv.PolicyBuilder()
            .store(xv.Store(list(roots)))
            .time(when)
            .max_chain_depth(policy.max_intermediates)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        )
        try:
            verified = builder.build_client_verifier().verify(leaf, list(intermediates))
        except xv.VerificationError as exc:
            raise ChainError(f"the chain does not validate: {exc}") from None
        except (ValueError, KeyError, UnsupportedAlgorithm) as exc:  # a malformed certificate part
            raise ChainError(f"a certificate of the chain cannot be parsed: {exc}") from None
        chain = list(verified.chain)
    not_before, not_after = _validity_window(chain)
    with _cache_lock:
        _cache[key] = (chain, not_before, not_after)
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return list(chain)


def _unknown_critical(cert: x509.Certificate) -> str | None:
    for extension in cert.extensions:
        if extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
            return extension.oid.dotted_string
    return None


def _validity(cert: x509.Certificate, role: str, second: dt.datetime, not_yet_id: str, expired_id: str,
              add: Callable[..., None]) -> None:
    """The validity-window findings of one certificate, judged at `second`."""
    if second < cert.not_valid_before_utc:
        add(not_yet_id, f"the {role} is not valid until "
            f"{cert.not_valid_before_utc.isoformat()} (checked at {second.isoformat()})",
            f"valid at {second.isoformat()}", f"notBefore {cert.not_valid_before_utc.isoformat()}")
    if second > cert.not_valid_after_utc:
        add(expired_id, f"the {role} expired at {cert.not_valid_after_utc.isoformat()} "
            f"(checked at {second.isoformat()})", f"valid at {second.isoformat()}",
            f"notAfter {cert.not_valid_after_utc.isoformat()}")


def explain_chain_failure(
    leaf: x509.Certificate,
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    at: dt.datetime,
    policy: Policy = DEFAULT_POLICY,
) -> list[tuple[str, str, str | None, str | None]]:
    """Name what is wrong with a two-tier chain: (finding id, message, expected, found) tuples.

    Used after `validate_chain` failed, to give the operator a stable reason. Checks follow
    ENVELOPE.md section 5; an empty result means the primitives found nothing wrong.
    """
    try:
        return _explain(leaf, roots, intermediates, at, policy)
    except (ValueError, KeyError, UnsupportedAlgorithm) as exc:  # a malformed certificate part
        return [(FindingId.CHAIN_INVALID, f"a certificate of the chain cannot be parsed ({exc})",
                 "well-formed certificates", "a malformed certificate")]


def _explain(
    leaf: x509.Certificate,
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    at: dt.datetime,
    policy: Policy,
) -> list[tuple[str, str, str | None, str | None]]:
    second = utc_moment(at, ChainError, "validation time").replace(microsecond=0)
    found: list[tuple[str, str, str | None, str | None]] = []

    def add(finding_id: str, message: str, expected: str | None = None, got: str | None = None) -> None:
        found.append((finding_id, message, expected, got))

    try:
        leaf_bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        leaf_bc = None
    try:
        leaf_ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        leaf_ku = None
    if leaf_bc is not None and leaf_bc.ca:
        add(FindingId.CHAIN_LEAF_IS_CA, "the signing certificate is a CA certificate; a device "
            "signs with its leaf, never with its root", "basicConstraints CA:FALSE", "CA:TRUE")
    elif leaf_ku is not None and leaf_ku.key_cert_sign:
        add(FindingId.CHAIN_LEAF_IS_CA, "the signing certificate may sign certificates "
            "(keyUsage keyCertSign), which only a CA may", "no keyCertSign", "keyCertSign")
    if leaf_ku is not None and not leaf_ku.digital_signature:
        add(FindingId.CHAIN_LEAF_KEY_USAGE, "the leaf's keyUsage does not allow digitalSignature, "
            "so it may not sign envelopes", "digitalSignature", "keyUsage without digitalSignature")
    _validity(leaf, "leaf", second, FindingId.CHAIN_LEAF_NOT_YET_VALID, FindingId.CHAIN_LEAF_EXPIRED, add)
    for cert, role in ((leaf, "leaf"), *((root, "root") for root in roots)):
        weak = is_weak_hash(cert)
        if weak:
            add(FindingId.CHAIN_WEAK_SIGNATURE_ALGORITHM, f"the {role} certificate is signed "
                f"with {weak}, which is refused", "SHA-256 or stronger", weak)
        critical = _unknown_critical(cert)
        if critical:
            add(FindingId.CHAIN_UNKNOWN_CRITICAL_EXTENSION, f"the {role} certificate has a "
                f"critical extension {critical} that the verifier does not understand",
                "no unknown critical extensions", critical)
        try:
            check_key_policy(_public_key(cert, role), policy, role=role)
        except KeyPolicyError as exc:
            add(FindingId.CHAIN_WEAK_KEY, str(exc), exc.expected, exc.found)
        except ChainError as exc:
            add(FindingId.CHAIN_INVALID, str(exc), "a loadable public key", "an unreadable key")
    if intermediates:
        return found  # beyond two tiers only the generic reason from path building is reliable
    issuers = [root for root in roots if root.subject == leaf.issuer]
    if not issuers:
        add(FindingId.CHAIN_NOT_ISSUED_BY_ROOT, "the leaf's issuer is not the enrolled root's "
            "subject", " or ".join(format_name(root.subject) for root in roots),
            format_name(leaf.issuer))
        return found
    signed_by = None
    for root in issuers:
        try:
            leaf.verify_directly_issued_by(root)
        except (InvalidSignature, ValueError, TypeError):
            continue
        signed_by = root
        break
    if signed_by is None:
        add(FindingId.CHAIN_NOT_ISSUED_BY_ROOT, "the leaf names the enrolled root as issuer but "
            "its signature does not verify with the root's key", "signed by the enrolled root",
            "a signature by another key")
        return found
    root = signed_by
    try:
        root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        root_bc = None
    if root_bc is None or not root_bc.ca:
        add(FindingId.CHAIN_ROOT_NOT_CA, "the enrolled root is not a CA certificate",
            "basicConstraints CA:TRUE", "no basicConstraints" if root_bc is None else "CA:FALSE")
    try:
        root_ku = root.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        root_ku = None
    if root_ku is not None and not root_ku.key_cert_sign:
        add(FindingId.CHAIN_ROOT_CANNOT_SIGN, "the enrolled root's keyUsage does not allow "
            "signing certificates", "keyCertSign", "keyUsage without keyCertSign")
    _validity(root, "root", second, FindingId.CHAIN_ROOT_NOT_YET_VALID, FindingId.CHAIN_ROOT_EXPIRED, add)
    return found
