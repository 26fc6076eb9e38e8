"""x509-limbo: how `verifier.chain.validate_chain` answers each case, and why where it differs.

`profile-pinned-root.json` sorts the cases into tiers for a verifier that checks a leaf against
pinned roots with no hostname: `core` must match limbo's expected result; `profile` is a policy
choice, decided below one by one; `n/a` (hostname, name constraints, EKU, CRL) is not run.
"""

from __future__ import annotations

# core cases whose result differs from limbo's, with the reason. Every other core case matches.
CORE_MISSES: dict[str, str] = {
    "cve::cve-2024-0567": (
        "9 untrusted intermediates are supplied; validate_chain refuses more than "
        "Policy.max_intermediates (4) before path building, to bound the time a device can make "
        "the verifier spend. With Policy(max_intermediates=10) it validates (tested)."
    ),
}

ACCEPT, REJECT = "SUCCESS", "FAILURE"

# profile cases: our result, and why. Device certificates come from `crypto ca enroll
# system-trustpoint` (ENVELOPE.md section 4): no SAN, usually no AKI/SKI, no AIA.
PROFILE_DECISIONS: dict[str, tuple[str, str]] = {
    "pathlen::validation-ignores-pathlen-in-leaf": (REJECT, "a signing leaf must not be a CA (ENVELOPE.md 5)"),
    "pathlen::self-issued-certs-pathlen": (REJECT, "no self-issued exemption from pathLen; device chains are two-tier, stricter is fine"),
    "rfc5280::aki::critical-aki": (ACCEPT, "AKI is not required or used: chains are built by name and signature"),
    "rfc5280::aki::leaf-missing-aki": (ACCEPT, "device leaves need not carry AKI"),
    "rfc5280::aki::intermediate-missing-aki": (ACCEPT, "AKI is not required"),
    "rfc5280::ski::critical-ski": (ACCEPT, "SKI is not required or used"),
    "rfc5280::ski::root-missing-ski": (ACCEPT, "device roots need not carry SKI"),
    "rfc5280::ski::intermediate-missing-ski": (ACCEPT, "SKI is not required"),
    "rfc5280::ee-empty-issuer": (REJECT, "cryptography refuses an empty issuer; no device makes one"),
    "rfc5280::ca-empty-subject": (REJECT, "cryptography refuses an empty CA subject; name chaining needs one"),
    "rfc5280::root-missing-basic-constraints": (REJECT, "the enrolled root must be a CA (ENVELOPE.md 5)"),
    "rfc5280::root-non-critical-basic-constraints": (ACCEPT, "CA:TRUE is what matters; criticality is not required of roots"),
    "rfc5280::root-inconsistent-ca-extensions": (REJECT, "a root whose keyUsage lacks keyCertSign may not sign the leaf"),
    "rfc5280::ee-aia": (ACCEPT, "AIA is allowed and never fetched"),
    "rfc5280::ee-critical-aia-invalid": (ACCEPT, "AIA is never used, so its criticality changes nothing here"),
    "webpki::aki::root-with-aki-missing-keyidentifier": (ACCEPT, "CABF root AKI rules do not apply to device roots"),
    "webpki::aki::root-with-aki-authoritycertissuer": (ACCEPT, "CABF root AKI rules do not apply"),
    "webpki::aki::root-with-aki-authoritycertserialnumber": (ACCEPT, "CABF root AKI rules do not apply"),
    "webpki::aki::root-with-aki-all-fields": (ACCEPT, "CABF root AKI rules do not apply"),
    "webpki::aki::root-with-aki-ski-mismatch": (ACCEPT, "AKI/SKI are not used for path building decisions we rely on"),
    "webpki::explicit-curve": (REJECT, "explicit EC parameters are refused (named curves only)"),
    "webpki::malformed-aia": (ACCEPT, "AIA is never parsed or used"),
    "webpki::forbidden-p192-root": (REJECT, "key policy: P-256/384/521 only"),
    "webpki::forbidden-p192-leaf": (REJECT, "key policy: P-256/384/521 only (the leaf key is checked too)"),
    "webpki::forbidden-dsa-root": (REJECT, "DSA only with Policy(allow_dsa=True)"),
    "webpki::forbidden-dsa-leaf": (REJECT, "DSA only with Policy(allow_dsa=True)"),
    "webpki::forbidden-weak-rsa-key-in-root": (REJECT, "key policy: RSA >= 2048 bits"),
    "webpki::forbidden-weak-rsa-in-leaf": (REJECT, "key policy: RSA >= 2048 bits (the leaf key is checked too)"),
    "webpki::forbidden-rsa-not-divisible-by-8-in-root": (ACCEPT, "odd RSA sizes within 2048-4096 bits have no known weakness"),
    "webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf": (ACCEPT, "odd RSA sizes within 2048-4096 bits have no known weakness"),
    "webpki::v1-cert": (REJECT, "cryptography refuses X.509 v1 certificates"),
}
