"""Every finding id: build the bad case, assert the id, its severity and its message."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import schemas
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from vbuilder import DAY, NOW, Device, b64, der, dossier, ku, make_leaf, make_root, resign_sha1, resign_weak
from verifier import FindingId, Policy, Severity, TrustStore, verify_envelope
from verifier.findings import PROFILE_FINDING_IDS

Case = Callable[[Path], tuple[bytes, dict[str, Any]]]
CASES: dict[str, tuple[str, Severity, str, Case]] = {}
# Finding ids exercised by other tests in this folder (named there).
ELSEWHERE: set[str] = set()


def case(name: str, finding_id: str, severity: Severity, fragment: str) -> Callable[[Case], Case]:
    def register(build: Case) -> Case:
        CASES[name] = (finding_id, severity, fragment, build)
        return build
    return register


_devices: dict[str, Device] = {}


def dev(name: str = "p256", root_kind: str = "p256", leaf_kind: str = "p256") -> Device:
    if name not in _devices:
        _devices[name] = Device(root_kind, leaf_kind)
    return _devices[name]


def ok_args(device: Device, **extra: Any) -> dict[str, Any]:
    return {"roots": [device.root], "expected_nonce": device.nonce, "at": NOW, **extra}


def edit_body(raw: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    document = json.loads(raw)
    change(document["signed-envelope"])
    return json.dumps(document).encode()


# (1) input bounds and framing ----------------------------------------------------------------
@case("input-too-large", FindingId.INPUT_TOO_LARGE, Severity.ERROR, "over the 200-byte limit")
def _(tmp: Path):
    return dev().envelope(), ok_args(dev(), policy=Policy(max_envelope_bytes=200))


@case("input-not-utf8", FindingId.INPUT_NOT_UTF8, Severity.ERROR, "not UTF-8")
def _(tmp: Path):
    return b'{"signed-envelope": "\xff\xfe"}', ok_args(dev())


@case("input-empty", FindingId.INPUT_EMPTY, Severity.ERROR, "empty")
def _(tmp: Path):
    return b" \r\n\n", ok_args(dev())


@case("input-prompt-before-json", FindingId.INPUT_UNEXPECTED_PREFIX, Severity.ERROR, "timestamp line")
def _(tmp: Path):
    return b"RP/0/RP0/CPU0:r1#show platform\n" + dev().envelope(), ok_args(dev())


# (2) strict JSON and structure ----------------------------------------------------------------
@case("envelope-truncated", FindingId.ENVELOPE_INVALID_JSON, Severity.ERROR, "not valid JSON")
def _(tmp: Path):
    return dev().envelope()[:-10], ok_args(dev())


@case("envelope-deep-nesting", FindingId.ENVELOPE_TOO_DEEP, Severity.ERROR, "deeper than 32 levels")
def _(tmp: Path):
    return b'{"signed-envelope": ' + b"[" * 5000 + b"]" * 5000 + b"}", ok_args(dev())


@case("envelope-duplicate-key", FindingId.ENVELOPE_DUPLICATE_KEY, Severity.ERROR, "'nonce' more than once")
def _(tmp: Path):
    raw = dev().envelope()
    return raw.replace(b'"nonce": ', b'"nonce": "AAAA", "nonce": ', 1), ok_args(dev())


@case("envelope-nan", FindingId.ENVELOPE_NON_FINITE_NUMBER, Severity.ERROR, "NaN")
def _(tmp: Path):
    return dev().envelope().replace(b'"signature_version": 1', b'"signature_version": NaN'), ok_args(dev())


@case("envelope-huge-float", FindingId.ENVELOPE_NON_FINITE_NUMBER, Severity.ERROR, "1e999")
def _(tmp: Path):
    return dev().envelope().replace(b'"signature_version": 1', b'"signature_version": 1e999'), ok_args(dev())


@case("envelope-lone-surrogate", FindingId.ENVELOPE_LONE_SURROGATE, Severity.ERROR, "U+D800")
def _(tmp: Path):
    raw = dev().envelope().replace(b'"system-trustpoint certificate"', b'"leaf \\ud800"')
    return raw, ok_args(dev())


@case("envelope-trailing-data", FindingId.ENVELOPE_TRAILING_DATA, Severity.ERROR, "data follows the JSON object")
def _(tmp: Path):
    return dev().envelope() + b'\n{"signed-envelope": {}}\n', ok_args(dev())


@case("envelope-version-as-string", FindingId.ENVELOPE_WRONG_TYPE, Severity.ERROR, "signature_version must be a JSON integer")
def _(tmp: Path):
    return dev().envelope().replace(b'"signature_version": 1', b'"signature_version": "1"'), ok_args(dev())


@case("envelope-version-as-bool", FindingId.ENVELOPE_WRONG_TYPE, Severity.ERROR, "boolean")
def _(tmp: Path):
    return dev().envelope().replace(b'"signature_version": 1', b'"signature_version": true'), ok_args(dev())


@case("envelope-not-object", FindingId.ENVELOPE_WRONG_TYPE, Severity.ERROR, "must be a JSON object")
def _(tmp: Path):
    return b'{"signed-envelope": []}', ok_args(dev())


@case("envelope-missing-signature", FindingId.ENVELOPE_MISSING_MEMBER, Severity.ERROR, "no 'signature' member")
def _(tmp: Path):
    return edit_body(dev().envelope(), lambda body: body.pop("signature")), ok_args(dev())


@case("envelope-unknown-member", FindingId.ENVELOPE_UNKNOWN_MEMBER, Severity.ERROR, "unknown member 'algorithm'")
def _(tmp: Path):
    return edit_body(dev().envelope(), lambda body: body.update(algorithm="none")), ok_args(dev())


@case("envelope-version-2", FindingId.ENVELOPE_UNSUPPORTED_VERSION, Severity.ERROR, "signature_version 2")
def _(tmp: Path):
    return dev().envelope(version=2), ok_args(dev())


@case("envelope-noncanonical-base64", FindingId.ENVELOPE_BAD_BASE64, Severity.ERROR, "not canonical base64")
def _(tmp: Path):
    return dev().envelope().replace(b'"nonce": "FYA="', b'"nonce": "FYB="'), ok_args(dev())


@case("envelope-base64-stray-character", FindingId.ENVELOPE_BAD_BASE64, Severity.ERROR, "signature is not standard base64")
def _(tmp: Path):
    return edit_body(dev().envelope(), lambda body: body.update(signature="*" + body["signature"])), ok_args(dev())


@case("envelope-base64-missing-padding", FindingId.ENVELOPE_BAD_BASE64, Severity.ERROR, "nonce")
def _(tmp: Path):
    return dev().envelope().replace(b'"nonce": "FYA="', b'"nonce": "FYA"'), ok_args(dev())


@case("envelope-bad-certificate", FindingId.ENVELOPE_BAD_CERTIFICATE, Severity.ERROR, "not a valid DER X.509 certificate")
def _(tmp: Path):
    def change(body):
        body["certificates"]["certificate"][1]["value"] = b64(b"\x30\x03\x02\x01\x01")
    return edit_body(dev().envelope(), change), ok_args(dev())


@case("envelope-certificate-trailing-bytes", FindingId.ENVELOPE_BAD_CERTIFICATE, Severity.ERROR, "certificate[1]")
def _(tmp: Path):
    def change(body):
        body["certificates"]["certificate"][1]["value"] = b64(der(dev().leaf) + b"\x00")
    return edit_body(dev().envelope(), change), ok_args(dev())


@case("envelope-seven-certificates", FindingId.ENVELOPE_TOO_MANY_CERTIFICATES, Severity.ERROR, "lists 7 certificates")
def _(tmp: Path):
    d = dev()
    return d.envelope(certs=[d.root] * 6 + [d.leaf]), ok_args(d)


# (3) signature --------------------------------------------------------------------------------
@case("signature-data-changed", FindingId.SIGNATURE_INVALID, Severity.ERROR, "does not verify")
def _(tmp: Path):
    raw = dev().envelope()
    return raw.replace(b"NCS-55A1-24H,SN:FOC2104R15R", b"NCS-55A1-24H,SN:FOC2104R15X"), ok_args(dev())


@case("signature-by-root-key", FindingId.SIGNATURE_INVALID, Severity.ERROR, "does not verify")
def _(tmp: Path):
    d = dev("rsa", "rsa2048", "rsa2048")
    return d.envelope(signer="p256"), ok_args(d)


@case("signature-ed25519-leaf", FindingId.SIGNATURE_UNSUPPORTED_KEY, Severity.ERROR, "not one ENVELOPE.md defines")
def _(tmp: Path):
    d = dev("ed", "p256", "ed25519")
    return d.envelope(), ok_args(d)


@case("signature-dsa-leaf-default-policy", FindingId.SIGNATURE_UNSUPPORTED_KEY, Severity.ERROR, "DSA, which the policy does not allow")
def _(tmp: Path):
    d = dev("dsa", "dsa2048", "dsa2048")
    return d.envelope(), ok_args(d)


@case("signature-rsa-1024-leaf", FindingId.SIGNATURE_WEAK_KEY, Severity.ERROR, "RSA-1024")
def _(tmp: Path):
    d = dev("rsa1024", "p256", "rsa1024")
    return d.envelope(), ok_args(d)


@case("signature-p192-leaf", FindingId.SIGNATURE_WEAK_KEY, Severity.ERROR, "secp192r1")
def _(tmp: Path):
    d = dev("p192", "p256", "p192")
    return d.envelope(), ok_args(d)


# (4) trust anchors and chain ------------------------------------------------------------------
def store_with(tmp: Path, entries: dict[str, Device], **root_kwargs: Any) -> TrustStore:
    store = TrustStore.open(tmp / "store", create=True)
    for name, d in entries.items():
        store.add_root(name, d.root, enrolled_at=NOW - 10 * DAY, **root_kwargs)
    return store


@case("trust-root-window-closed", FindingId.TRUST_NO_ROOTS, Severity.ERROR, "no root trusted at")
def _(tmp: Path):
    d = dev()
    store = store_with(tmp, {"r1": d}, valid_until=NOW - DAY)
    return d.envelope(), {"trust_store": store, "device": "r1", "expected_nonce": d.nonce, "at": NOW}


@case("trust-device-unknown", FindingId.TRUST_DEVICE_UNKNOWN, Severity.ERROR, "'r9' is not enrolled")
def _(tmp: Path):
    d = dev()
    return d.envelope(), {"trust_store": store_with(tmp, {"r1": d}), "device": "r9", "expected_nonce": d.nonce, "at": NOW}


@case("trust-root-not-enrolled-anywhere", FindingId.TRUST_DEVICE_UNKNOWN, Severity.ERROR, "no device in the trust store")
def _(tmp: Path):
    d = dev()
    other = dev("other", "p256#2", "p256")
    return d.envelope(), {"trust_store": store_with(tmp, {"r1": other}), "expected_nonce": d.nonce, "at": NOW}


@case("trust-device-ambiguous", FindingId.TRUST_DEVICE_AMBIGUOUS, Severity.ERROR, "r1, r2")
def _(tmp: Path):
    d = dev()
    return d.envelope(), {"trust_store": store_with(tmp, {"r1": d, "r2": d}), "expected_nonce": d.nonce, "at": NOW}


@case("trust-device-inferred", FindingId.TRUST_DEVICE_INFERRED, Severity.INFO, "'r1' found by")
def _(tmp: Path):
    d = dev()
    return d.envelope(), {"trust_store": store_with(tmp, {"r1": d}), "expected_nonce": d.nonce, "at": NOW}


@case("chain-no-certificate", FindingId.CHAIN_NO_CERTIFICATE, Severity.ERROR, "no leaf is pinned")
def _(tmp: Path):
    return dev().envelope(include_certificate=False), ok_args(dev())


@case("chain-new-root", FindingId.CHAIN_ROOT_NOT_ENROLLED, Severity.ERROR, "enrolled again")
def _(tmp: Path):
    d = dev()
    rekeyed = Device("p256#2", "p256")
    return rekeyed.envelope(), ok_args(d)


@case("chain-leaf-issuer-name-differs", FindingId.CHAIN_NOT_ISSUED_BY_ROOT, Severity.ERROR, "issuer is not the enrolled root")
def _(tmp: Path):
    d = dev()
    other = make_root("p256", name="another root")
    leaf = make_leaf("p256", "p256", d.root, issuer_name=other.subject)
    return Device("p256", "p256", root=d.root, leaf=leaf).envelope(), ok_args(d)


@case("chain-leaf-signed-by-other-key", FindingId.CHAIN_NOT_ISSUED_BY_ROOT, Severity.ERROR, "does not verify with the root's key")
def _(tmp: Path):
    d = dev()
    leaf = make_leaf("p256", "p256#2", d.root)
    return Device("p256", "p256", root=d.root, leaf=leaf).envelope(), ok_args(d)


@case("chain-leaf-is-ca", FindingId.CHAIN_LEAF_IS_CA, Severity.ERROR, "is a CA certificate")
def _(tmp: Path):
    d = dev()
    leaf = make_leaf("p256", "p256", d.root, ca=True)
    return Device("p256", "p256", root=d.root, leaf=leaf).envelope(), ok_args(d)


@case("chain-leaf-keycertsign", FindingId.CHAIN_LEAF_IS_CA, Severity.ERROR, "keyCertSign")
def _(tmp: Path):
    d = dev()
    leaf = make_leaf("p256", "p256", d.root, key_usage=ku(digital_signature=True, key_cert_sign=True))
    return Device("p256", "p256", root=d.root, leaf=leaf).envelope(), ok_args(d)


@case("chain-leaf-no-digital-signature", FindingId.CHAIN_LEAF_KEY_USAGE, Severity.ERROR, "does not allow digitalSignature")
def _(tmp: Path):
    d = dev()
    leaf = make_leaf("p256", "p256", d.root, key_usage=ku(key_encipherment=True))
    return Device("p256", "p256", root=d.root, leaf=leaf).envelope(), ok_args(d)


@case("chain-leaf-expired", FindingId.CHAIN_LEAF_EXPIRED, Severity.ERROR, "the leaf expired at")
def _(tmp: Path):
    d = dev()
    return d.envelope(), ok_args(d, at=d.leaf.not_valid_after_utc + dt.timedelta(seconds=1))


@case("chain-leaf-not-yet-valid", FindingId.CHAIN_LEAF_NOT_YET_VALID, Severity.ERROR, "the leaf is not valid until")
def _(tmp: Path):
    d = dev()
    return d.envelope(), ok_args(d, at=d.leaf.not_valid_before_utc - dt.timedelta(seconds=1))


@case("chain-root-expired", FindingId.CHAIN_ROOT_EXPIRED, Severity.ERROR, "the root expired at")
def _(tmp: Path):
    root = make_root("p256", not_before=NOW - 100 * DAY, not_after=NOW - DAY)
    d = Device("p256", "p256", root=root, leaf=make_leaf("p256", "p256", root))
    return d.envelope(), ok_args(d)


@case("chain-root-not-yet-valid", FindingId.CHAIN_ROOT_NOT_YET_VALID, Severity.ERROR, "the root is not valid until")
def _(tmp: Path):
    root = make_root("p256", not_before=NOW + DAY)
    d = Device("p256", "p256", root=root, leaf=make_leaf("p256", "p256", root))
    return d.envelope(), ok_args(d)


@case("chain-root-not-ca", FindingId.CHAIN_ROOT_NOT_CA, Severity.ERROR, "not a CA certificate")
def _(tmp: Path):
    root = make_root("p256", ca=False)
    d = Device("p256", "p256", root=root, leaf=make_leaf("p256", "p256", root))
    return d.envelope(), ok_args(d)


@case("chain-root-cannot-sign", FindingId.CHAIN_ROOT_CANNOT_SIGN, Severity.ERROR, "does not allow signing certificates")
def _(tmp: Path):
    root = make_root("p256", key_usage=ku(digital_signature=True, crl_sign=True))
    d = Device("p256", "p256", root=root, leaf=make_leaf("p256", "p256", root))
    return d.envelope(), ok_args(d)


@case("chain-unknown-critical-extension", FindingId.CHAIN_UNKNOWN_CRITICAL_EXTENSION, Severity.ERROR, "1.3.6.1.4.1.9.99")
def _(tmp: Path):
    d = dev()
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.9.99"), b"\x05\x00")
    leaf = make_leaf("p256", "p256", d.root, extra=[(odd, True)])
    return Device("p256", "p256", root=d.root, leaf=leaf).envelope(), ok_args(d)


@case("chain-leaf-sha1", FindingId.CHAIN_WEAK_SIGNATURE_ALGORITHM, Severity.ERROR, "signed with SHA1")
def _(tmp: Path):
    d = dev("rsa", "rsa2048", "rsa2048")
    leaf = resign_sha1(d.leaf, "rsa2048")
    return Device("rsa2048", "rsa2048", root=d.root, leaf=leaf).envelope(), ok_args(d)


@case("chain-leaf-md5", FindingId.CHAIN_WEAK_SIGNATURE_ALGORITHM, Severity.ERROR, "signed with MD5")
def _(tmp: Path):
    d = dev("rsa", "rsa2048", "rsa2048")
    leaf = resign_weak(d.leaf, "rsa2048", hashes.MD5())
    assert isinstance(leaf.signature_hash_algorithm, hashes.MD5)
    return Device("rsa2048", "rsa2048", root=d.root, leaf=leaf).envelope(), ok_args(d)


@case("chain-root-self-signed-sha1", FindingId.CHAIN_WEAK_SIGNATURE_ALGORITHM, Severity.ERROR, "self-signed with SHA1")
def _(tmp: Path):
    root = resign_sha1(make_root("rsa2048"), "rsa2048")
    d = Device("rsa2048", "p256", root=root, leaf=make_leaf("p256", "rsa2048", root))
    return d.envelope(), ok_args(d)


@case("chain-root-rsa-1024", FindingId.CHAIN_WEAK_KEY, Severity.ERROR, "root key is RSA-1024")
def _(tmp: Path):
    d = dev("weakroot", "rsa1024", "p256")
    return d.envelope(), ok_args(d)


def _enterprise(tmp: Path, *, sub_expired: bool = False) -> tuple[Device, TrustStore]:
    """An enterprise root with an enrolled sub-CA that issues the device's leaf."""
    d = dev()
    window = {"not_before": NOW - 100 * DAY, "not_after": NOW - DAY} if sub_expired else {}
    sub = make_leaf("p384", "p256", d.root, name="sub-ca", ca=True, key_usage=None, **window)
    leaf = make_leaf("p256", "p384", sub)
    store = store_with(tmp, {"r1": d})
    store.add_intermediate("r1", sub)
    return Device("p256", "p256", root=sub, leaf=leaf), store


@case("chain-too-many-intermediates", FindingId.CHAIN_TOO_MANY_INTERMEDIATES, Severity.ERROR, "at most 0 are considered")
def _(tmp: Path):
    device, store = _enterprise(tmp)
    return device.envelope(), {"trust_store": store, "device": "r1", "expected_nonce": device.nonce, "at": NOW,
                               "policy": Policy(max_intermediates=0)}


@case("chain-enrolled-sub-ca-expired", FindingId.CHAIN_INVALID, Severity.ERROR, "does not validate")
def _(tmp: Path):
    device, store = _enterprise(tmp, sub_expired=True)
    return device.envelope(), {"trust_store": store, "device": "r1", "expected_nonce": device.nonce, "at": NOW}


@case("envelope-leaf-only", FindingId.ENVELOPE_MISSING_MEMBER, Severity.ERROR, "lists 1 certificate")
def _(tmp: Path):
    d = dev()
    return d.envelope(certs=[d.leaf]), ok_args(d)


@case("envelope-carried-sub-ca", FindingId.ENVELOPE_TOO_MANY_CERTIFICATES, Severity.ERROR, "not carried")
def _(tmp: Path):
    d = dev()
    sub = make_leaf("p384", "p256", d.root, name="sub-ca", ca=True, key_usage=None)
    leaf = make_leaf("p256", "p384", sub)
    return Device("p256", "p256", root=d.root, leaf=leaf).envelope(certs=[d.root, sub, leaf]), ok_args(d)


@case("envelope-leaf-twice", FindingId.ENVELOPE_TOO_MANY_CERTIFICATES, Severity.ERROR, "lists 3 certificates")
def _(tmp: Path):
    d = dev()
    return d.envelope(certs=[d.root, d.leaf, d.leaf]), ok_args(d)


@case("envelope-root-as-leaf-too", FindingId.ENVELOPE_TOO_MANY_CERTIFICATES, Severity.ERROR, "repeats an earlier certificate")
def _(tmp: Path):
    d = dev()
    return d.envelope(certs=[d.root, d.root]), ok_args(d)


@case("dossier-two-nonces", FindingId.DOSSIER_INVALID_JSON, Severity.ERROR, "'nonce' more than once")
def _(tmp: Path):
    text = json.dumps(dossier("1580")).replace('"nonce": "1580"', '"nonce": "ffff", "nonce": "1580"')
    return dev().envelope(data=text), ok_args(dev())


@case("dossier-after-bom", FindingId.DOSSIER_INVALID_JSON, Severity.ERROR, "contains a dossier")
def _(tmp: Path):
    return dev().envelope(data="\ufeff" + json.dumps(dossier("ffff"))), ok_args(dev())


@case("dossier-escaped-key-after-bom", FindingId.DOSSIER_INVALID_JSON, Severity.ERROR, "contains a dossier")
def _(tmp: Path):
    text = json.dumps(dossier("ffff")).replace('"model-name"', '"model\\u002dname"')
    return dev().envelope(data="\ufeff" + text), ok_args(dev())


@case("dossier-after-timestamp-other-nonce", FindingId.NONCE_DOSSIER_MISMATCH, Severity.ERROR, "dossier's nonce differs")
def _(tmp: Path):
    return dev().envelope(data="Sun Oct 20 13:07:24.136 UTC\n" + json.dumps(dossier("ffff"))), ok_args(dev())


@case("chain-leaf-rotated", FindingId.CHAIN_LEAF_ROTATED, Severity.INFO, "key rotation")
def _(tmp: Path):
    d = dev()
    store = store_with(tmp, {"r1": d})
    store.pin_leaf("r1", d.leaf)
    new_leaf = make_leaf("p256#4", "p256", d.root, serial=0x0B63)
    rotated = Device("p256", "p256#4", root=d.root, leaf=new_leaf)
    return rotated.envelope(), {"trust_store": store, "device": "r1", "expected_nonce": d.nonce, "at": NOW}


# (5) nonce ------------------------------------------------------------------------------------
@case("nonce-not-given", FindingId.NONCE_NOT_CHECKED, Severity.ERROR, "freshness is unknown")
def _(tmp: Path):
    return dev().envelope(), ok_args(dev(), expected_nonce=None)


@case("nonce-not-given-insecure", FindingId.NONCE_NOT_CHECKED, Severity.WARNING, "insecure_skip_nonce")
def _(tmp: Path):
    return dev().envelope(), ok_args(dev(), expected_nonce=None, policy=Policy(insecure_skip_nonce=True))


@case("nonce-replayed", FindingId.NONCE_MISMATCH, Severity.ERROR, "not the one that was sent")
def _(tmp: Path):
    return dev().envelope(), ok_args(dev(), expected_nonce=bytes.fromhex("1581"))


@case("nonce-65-bytes", FindingId.NONCE_INVALID, Severity.ERROR, "65 bytes")
def _(tmp: Path):
    return dev().envelope(nonce=b"\x01" * 65), ok_args(dev())


@case("nonce-dossier-differs", FindingId.NONCE_DOSSIER_MISMATCH, Severity.ERROR, "dossier's nonce differs")
def _(tmp: Path):
    return dev().envelope(dossier_nonce="1581"), ok_args(dev())


@case("nonce-dossier-missing", FindingId.NONCE_DOSSIER_MISSING, Severity.ERROR, "no nonce string")
def _(tmp: Path):
    document = dossier("1580")
    del document["nonce"]
    return dev().envelope(document=document), ok_args(dev())


# (6) the dossier ------------------------------------------------------------------------------
@case("data-show-version-text", FindingId.DATA_NOT_DOSSIER, Severity.INFO, "not a dossier")
def _(tmp: Path):
    return dev().envelope(data="Cisco IOS XR Software, Version 7.3.2\n"), ok_args(dev())


@case("dossier-required-but-text", FindingId.DOSSIER_MISSING, Severity.ERROR, "not a dossier")
def _(tmp: Path):
    return dev().envelope(data="hello\n"), ok_args(dev(), policy=Policy(require_dossier=True))


@case("dossier-too-deep", FindingId.DOSSIER_TOO_DEEP, Severity.ERROR, "deeper than 32 levels")
def _(tmp: Path):
    return dev().envelope(data='{"model-name": ' + "[" * 2000 + "]" * 2000 + "}"), ok_args(dev())


@case("dossier-too-deep-for-the-policy", FindingId.DOSSIER_TOO_DEEP, Severity.ERROR, "deeper than 32 levels")
def _(tmp: Path):
    # parses (far within the interpreter's limit), fails the schema, and is counted before
    # jsonschema explains the failure
    document = dossier("1580")
    document["version"] = {"result-code": "Success", "version": "[" * 40 + "]" * 40}
    document["platform"] = {"result-code": "Success", "platform": 1}
    text = json.dumps(document).replace('"' + "[" * 40 + "]" * 40 + '"', "[" * 40 + "]" * 40)
    return dev().envelope(data=text), ok_args(dev())


@case("dossier-too-deep-unvalidated", FindingId.DOSSIER_TOO_DEEP, Severity.ERROR, "deeper than 32 levels")
def _(tmp: Path):
    # without the schema check, nothing bounds the depth but the count
    return (dev().envelope(data='{"model-name": "m", "nonce": "x", "deep": ' + "[" * 33 + "]" * 33 + "}"),
            ok_args(dev(), policy=Policy(validate_dossier=False)))


@case("dossier-invalid-json", FindingId.DOSSIER_INVALID_JSON, Severity.ERROR, "looks like JSON")
def _(tmp: Path):
    return dev().envelope(data='{"model-name": NaN}'), ok_args(dev())


@case("dossier-schema", FindingId.DOSSIER_SCHEMA, Severity.ERROR, "/model-revision")
def _(tmp: Path):
    document = dossier("1580")
    document["model-revision"] = "yesterday"
    return dev().envelope(document=document), ok_args(dev())


@case("dossier-unexpected-content", FindingId.DOSSIER_UNEXPECTED_CONTENT, Severity.WARNING, "/build-host")
def _(tmp: Path):
    document = dossier("1580")
    document["version"]["build-host"] = "b1"
    return dev().envelope(document=document), ok_args(dev())


@case("dossier-item-failed", FindingId.DOSSIER_ITEM_FAILED, Severity.WARNING, "could not collect 'packages'")
def _(tmp: Path):
    document = dossier("1580")
    document["packages"] = {"result-code": "Not supported on this platform"}
    return dev().envelope(document=document), ok_args(dev())


# (7) expiry -----------------------------------------------------------------------------------
def _expiring(leaf_days: int | None = None, root_days: int | None = None) -> Device:
    root = make_root("p256", not_after=NOW + root_days * DAY if root_days else None)
    leaf = make_leaf("p256", "p256", root, not_after=NOW + leaf_days * DAY if leaf_days else None)
    return Device("p256", "p256", root=root, leaf=leaf)


@case("expiry-leaf-in-60-days", FindingId.EXPIRY_LEAF_SOON, Severity.WARNING, "leaf certificate expires in 60 day(s)")
def _(tmp: Path):
    d = _expiring(leaf_days=60)
    return d.envelope(), ok_args(d)


@case("expiry-leaf-in-7-days", FindingId.EXPIRY_LEAF_IMMINENT, Severity.ALERT, "expires in 7 day(s)")
def _(tmp: Path):
    d = _expiring(leaf_days=7)
    return d.envelope(), ok_args(d)


@case("expiry-root-in-30-days", FindingId.EXPIRY_ROOT_SOON, Severity.WARNING, "root certificate expires in 30 day(s)")
def _(tmp: Path):
    d = _expiring(root_days=30)
    return d.envelope(), ok_args(d)


@case("expiry-root-in-1-day", FindingId.EXPIRY_ROOT_IMMINENT, Severity.ALERT, "renew it now")
def _(tmp: Path):
    d = _expiring(root_days=1)
    return d.envelope(), ok_args(d)


NOT_FATAL = {Severity.INFO, Severity.WARNING, Severity.ALERT}


@pytest.mark.parametrize("name", sorted(CASES))
def test_finding(name: str, tmp_path: Path) -> None:
    finding_id, severity, fragment, build = CASES[name]
    raw, kwargs = build(tmp_path)
    verdict = verify_envelope(raw, **kwargs)
    matching = [f for f in verdict.findings if f.id == finding_id]
    assert matching, f"{name}: expected {finding_id}, got {verdict.ids()} {[f.message for f in verdict.findings]}"
    finding = matching[0]
    assert finding.severity is severity
    assert fragment in finding.message, finding.message
    assert finding.expected is None or isinstance(finding.expected, str)
    if severity is Severity.ERROR:
        assert not verdict.trusted
        assert verdict.dossier is None and verdict.data is None
    else:
        # the case builds exactly this one non-fatal condition
        assert verdict.trusted, verdict.ids()
    jsonschema.validate(verdict.to_json(), schemas.load("verdict"))


def test_every_finding_id_has_a_case() -> None:
    covered = {finding_id for finding_id, *_ in CASES.values()} | ELSEWHERE
    missing = {str(i) for i in FindingId} - {str(i) for i in covered}
    assert not missing, f"finding ids without a test case: {sorted(missing)}"


ELSEWHERE.add(FindingId.VERIFIER_INCOMPLETE)
# IOS XE identity (a pinned SUDI certificate per device): tests/adversarial/test_adv_xe_identity.py
ELSEWHERE.update({FindingId.IDENTITY_MISMATCH, FindingId.IDENTITY_NOT_PINNED, FindingId.IDENTITY_NOT_CHECKED})
# The record log's findings: tests/verifier/test_records.py and tests/adversarial/test_adv_record_log.py.
ELSEWHERE.update(finding_id for finding_id in FindingId if finding_id.startswith("record."))
# A stored file against its metadata: tests/verifier/test_verify_cli_operator.py and test_verify_cli.py.
ELSEWHERE.add(FindingId.STORED_MISMATCH)
# The vendor profiles' findings: tests/verifier_profiles/test_profile_findings.py.
ELSEWHERE.update(PROFILE_FINDING_IDS)
# TPM attestation's findings: tests/verifier/test_tpm_verify.py (each one a case there).
ELSEWHERE.update(finding_id for finding_id in FindingId if finding_id.startswith("tpm."))


def test_a_step_that_did_not_complete_is_never_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: a chain step that returns without proving anything and without saying
    why (a bug no input can reach today) still leaves the envelope untrusted. The fault is
    injected by replacing the chain step, because no real input produces it."""
    import verifier.verify as verify_module

    d = dev()
    trusted = verify_envelope(d.envelope(), **ok_args(d))
    assert trusted.trusted
    monkeypatch.setattr(verify_module, "_check_chain", lambda *args, **kwargs: False)
    verdict = verify_envelope(d.envelope(), **ok_args(d))
    assert not verdict.trusted
    assert FindingId.VERIFIER_INCOMPLETE in verdict.ids()
    assert verdict.dossier is None
    jsonschema.validate(verdict.to_json(), schemas.load("verdict"))
