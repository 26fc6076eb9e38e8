"""Every profile finding id is produced by at least one case here (ids are an API: each one is
reachable, has its severity, and its verdict validates against the schema)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography import x509

import schemas
from verifier.findings import PROFILE_FINDING_IDS, Finding, FindingId
from verifier.profiles import appraise_integrity, load_kgv, verify_output
from vp_helpers import AT, KGV_SIGNER_FILES, SUDI_ANCHOR_FILES, XE_DIR

Build = Callable[[], Any]


def _anchors() -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate((XE_DIR / "certs" / n).read_bytes()) for n in SUDI_ANCHOR_FILES]


def _m2() -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate((XE_DIR / "certs" / "crcam2.pem").read_bytes())]


def _read(name: str) -> bytes:
    return (XE_DIR / name).read_bytes()


def _kgv_signer() -> bytes:
    return b"\n".join((XE_DIR / "certs" / n).read_bytes() for n in KGV_SIGNER_FILES)


def _v(raw: bytes, **kwargs: Any) -> Any:
    kwargs.setdefault("roots", _anchors())
    kwargs.setdefault("at", AT)
    return verify_output(raw, **kwargs)


def _duplicate_pcr() -> Any:
    text = _read("isr4k_show_plat_int.txt").decode()
    line = next(line for line in text.splitlines() if line.startswith("PCR0:"))
    return _v(text.replace(line, line + "\n" + line).encode())


def _bad_base64() -> Any:
    lines = _read("isr4k_show_plat_sudi_sign_nonce.txt").decode().split("\n")
    lines[5] = "!" * 64
    return _v("\n".join(lines).encode(), expected_nonce=1)


def _sudi_version_2() -> Any:
    return _v(_read("isr4k_show_plat_sudi_sign_nonce.txt").replace(b"Signature version: 1", b"Signature version: 2"),
              expected_nonce=1)


def _subca_expired() -> Any:
    return _v(_read("38_show_sudi_sign_nonce.txt"), expected_nonce=10, at=dt.datetime(2029, 6, 1, tzinfo=dt.UTC))


def _kgv_appraisal_unknown() -> list[Finding]:
    kgv = load_kgv(XE_DIR / "old_kgv_signed.json", _m2(), signer=_kgv_signer(), at=AT)
    return appraise_integrity(_v(_read("isr4k_show_plat_int_bad_os_version.txt")), kgv)


def _kgv_appraisal_unauthenticated() -> list[Finding]:
    kgv = load_kgv(XE_DIR / "v2" / "sandbox.kgv.json", _m2(), allow_unsigned=True)
    return appraise_integrity(_v(_read("v2/cli_valid_multiple_measure.txt"), expected_nonce=34567), kgv)


CASES: dict[str, tuple[str, str, Build]] = {
    "unknown shape": (FindingId.PROFILE_UNKNOWN, "error", lambda: _v(b"Router#show clock\n")),
    "two shapes": (FindingId.PROFILE_AMBIGUOUS, "error",
                   lambda: _v(_read("isr4k_show_plat_sudi_sign_nonce.txt") + _read("isr4k_show_plat_int.txt"))),
    "named profile, other shape": (FindingId.PROFILE_SHAPE_MISMATCH, "error",
                                   lambda: _v(_read("isr4k_show_plat_int.txt"), profile="xe-system-integrity")),
    "no signature": (FindingId.OUTPUT_UNSIGNED, "error", lambda: _v(_read("isr4k_show_plat_int.txt"))),
    "device error": (FindingId.OUTPUT_DEVICE_ERROR, "error",
                     lambda: _v(_read("cbr8_show_plat_sudi_not_present.txt"))),
    "empty field": (FindingId.OUTPUT_MISSING_FIELD, "error",
                    lambda: _v(_read("isr4k_show_plat_int_not_present_os_hash.txt"))),
    "wrapped hash": (FindingId.OUTPUT_MALFORMED_FIELD, "error",
                     lambda: _v(_read("isr4k_show_plat_int_line_wrap.txt"))),
    "label twice": (FindingId.OUTPUT_DUPLICATE_FIELD, "error", _duplicate_pcr),
    "platform label": (FindingId.OUTPUT_UNAUTHENTICATED, "info",
                       lambda: _v(_read("isr4k_show_plat_int.txt"))),
    "certificate not base64": (FindingId.OUTPUT_BAD_CERTIFICATE, "error", _bad_base64),
    "signature version 2": (FindingId.OUTPUT_UNSUPPORTED_VERSION, "error", _sudi_version_2),
    "hash changed": (FindingId.MEASUREMENT_PCR_MISMATCH, "error",
                     lambda: _v(_read("isr4k_show_plat_int_bad_os_version.txt"))),
    "sub-CA not pinned": (FindingId.CHAIN_SUBCA_NOT_PINNED, "error",
                          lambda: _v(_read("38_show_sudi_sign_nonce.txt"), expected_nonce=10,
                                     roots=_anchors()[:1])),
    "sub-CA expired": (FindingId.CHAIN_SUBCA_EXPIRED, "error", _subca_expired),
    "device certificate changed": (FindingId.CHAIN_LEAF_NOT_ISSUED_BY_SUBCA, "error",
                                   lambda: _v(_read("isr4k_show_plat_sudi_sign_invalid_dev_cert.txt"),
                                              expected_nonce=1)),
    "ACT2 SHA-1 and e=3": (FindingId.CHAIN_LEGACY_PINNED_ANCHOR, "warning",
                           lambda: _v(_read("38_show_sudi_sign_nonce.txt"), expected_nonce=10)),
    "KGV signature bad": (FindingId.KGV_SIGNATURE_INVALID, "error",
                          lambda: _v(_read("old_kgv_signed.json"), roots=_m2(), signer=_kgv_signer(),
                                     signature=_read("old_kgv_signed.json.signature.bad"))),
    "KGV signer self-signed": (FindingId.KGV_SIGNER_UNTRUSTED, "error",
                               lambda: _v(_read("old_kgv_signed.json"), roots=_m2(), signer=_read("bad_custom_cert.pem"),
                                          signature=_read("old_kgv_signed.json.signature"))),
    "KGV not signed": (FindingId.KGV_UNAUTHENTICATED, "warning", _kgv_appraisal_unauthenticated),
    "hash not in KGV": (FindingId.KGV_HASH_UNKNOWN, "error", _kgv_appraisal_unknown),
    "KGV not JSON": (FindingId.KGV_MALFORMED, "error",
                     lambda: _v(b'{"header": {}, "products": 3, "biv_hash": 1}', profile="kgv", roots=_m2(),
                                signature=bytes(512), signer=_kgv_signer())),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_finding(name: str, vectors_dir: Path) -> None:
    finding_id, severity, build = CASES[name]
    result = build()
    findings = result if isinstance(result, list) else result.findings
    matching = [f for f in findings if f.id == finding_id]
    assert matching, (name, [str(f.id) for f in findings])
    assert all(str(f.severity) == severity for f in matching)
    assert all(f.message for f in matching)
    if not isinstance(result, list):
        jsonschema.validate(result.to_json(), schemas.load("verdict"))
        if severity == "error":
            assert not result.trusted


def test_every_profile_finding_id_has_a_case() -> None:
    covered = {str(finding_id) for finding_id, _, _ in CASES.values()}
    assert covered == {str(i) for i in PROFILE_FINDING_IDS}
