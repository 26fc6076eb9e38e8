"""Every real Cisco sample in ../shared/vectors/cisco-ios-xe/expected.json meets its expected
verdict and reason, through the library and `dossier verify` (named profile and auto), at a
time inside its certificates' windows and, for the valid ones, at the current time."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from cryptography import x509

import schemas
from dossier_cli.main import cli
from verifier.policy import Policy
from verifier.profiles import detect_profiles, verify_output

from vp_helpers import AT, KGV_SIGNER_FILES, SUDI_ANCHOR_FILES, XE_DIR

# integrity outputs carry no certificate: the same device's SUDI output signs them (README table)
PAIRS = {
    "isr1k_show_plat_int_sign_nonce.txt": "isr1k_show_plat_sudi_sign_nonce.txt",
    "isr4k_show_plat_int_multi_bad_hashes.txt": "isr4k_show_plat_sudi_cert.txt",
    "isr4k_show_plat_int_multi_hashes.txt": "isr4k_show_plat_sudi_cert.txt",
    "isr4k_show_plat_int_unsigned_multi_bad_hashes.txt": "isr4k_show_plat_sudi_cert.txt",
    "show_plat_int_crlf_eol.txt": "show_plat_sudi_crlf_eol.txt",
    "isr4k_show_plat_int_sign.txt": "isr4k_device_cert.txt",  # a bare leaf: sub-CA found among the anchors
}
V2_SIGNER = "v2/cli_valid_trust_chain.txt"
UNSIGNED_BAD_DATA = {"output.device_error", "output.missing_field", "output.unsigned"}
# the exact set of error ids each invalid sample gets at AT (valid: none; not-signed: output.unsigned)
ERRORS = {
    "38_show_sudi_sign_bad.txt": {"signature.invalid"},
    "cbr8_show_plat_sudi_not_present.txt": {"output.device_error", "chain.no_certificate"},
    "isr4k_show_plat_sudi_sign_invalid_dev_cert.txt": {"chain.leaf_not_issued_by_subca", "signature.invalid"},
    "38_show_plat_int_no_hash.txt": UNSIGNED_BAD_DATA,
    "cbr8_show_plat_int_sign_not_present.txt": UNSIGNED_BAD_DATA,
    "isr4k_show_plat_int_bad_boot_0_version.txt": {"measurement.pcr_mismatch", "output.unsigned"},
    "isr4k_show_plat_int_bad_boot_loader_version.txt": {"measurement.pcr_mismatch", "output.unsigned"},
    "isr4k_show_plat_int_bad_os_version.txt": {"measurement.pcr_mismatch", "output.unsigned"},
    "isr4k_show_plat_int_line_wrap.txt": UNSIGNED_BAD_DATA | {"output.malformed_field"},
    "isr4k_show_plat_int_multi_bad_hashes.txt": {"measurement.pcr_mismatch"},  # signature itself is genuine
    "isr4k_show_plat_int_not_present_boot_loader_hash.txt": {"output.missing_field", "output.unsigned"},
    "isr4k_show_plat_int_not_present_os_hash.txt": {"output.missing_field", "output.unsigned"},
    "isr4k_show_plat_int_not_present_os_version.txt": {"output.missing_field", "output.unsigned"},
    "isr4k_show_plat_int_sign_bad.txt": {"signature.invalid"},
    "isr4k_show_plat_int_sign_nonce_invalid_pcr0.txt": {"measurement.pcr_mismatch"},
    "isr4k_show_plat_int_unsigned_multi_bad_hashes.txt": {"measurement.pcr_mismatch", "output.unsigned"},
    "bad_custom_cert.pem": {"kgv.signer_untrusted"},
    "old_kgv_signed.json.signature.bad": {"kgv.signature_invalid"},
    "examples/example_kgv.json.bad_signature": {"kgv.signature_invalid"},
    "examples/example_kgv_updated_unsigned.json": {"kgv.signature_invalid"},
    # upstream labels it valid, but no trust chain for the ASR1006-X exists: a verifier that
    # could not check the signature must not say trusted (PCRs do recompute: no other error)
    "v2/netconf_valid_multiple_locations.xml": {"chain.no_certificate"},
    "v2/netconf_invalid_measurement_no_list_key.xml": {"output.missing_field", "chain.no_certificate"},
    "v2/restconf_invalid_measurement_no_list_key.json": {"output.missing_field", "chain.no_certificate"},
}


@dataclass(frozen=True)
class Case:
    """How one expected.json entry is verified."""

    entry: str
    profile: str
    file: str
    nonce: int | None
    anchors: str  # "sudi" or "m2"
    signer: tuple[str, ...] = ()
    signature: str | None = None
    errors: frozenset[str] = frozenset()


def make_case(entry: dict[str, Any]) -> Case:
    name, kind = entry["file"], entry["kind"]
    nonce = int(entry["nonce"]) if entry["nonce"] else None
    errors = ERRORS.get(name, {"output.unsigned"} if entry["expect"] == "not-signed" else set())
    if entry["expect"] == "valid":
        assert name not in ERRORS or name == "v2/netconf_valid_multiple_locations.xml"
    errors = frozenset(errors)
    if kind == "sudi-sign":
        return Case(name, "xe-sudi-sign", name, nonce, "sudi", errors=errors)
    if kind == "integrity-sign":
        signer = PAIRS.get(name, "isr4k_show_plat_sudi_sign_nonce.txt")
        return Case(name, "xe-integrity-sign", name, nonce, "sudi", (signer,), errors=errors)
    if name == "isr4k_device_cert.txt":
        return Case(name, "xe-sudi-certificate", name, None, "sudi", errors=errors)
    if name.startswith("v2/") and not name.endswith("kgv.json"):
        needs_signer = "trust_chain" not in name and "multiple_locations" not in name
        return Case(name, "xe-system-integrity", name, nonce, "sudi", (V2_SIGNER,) if needs_signer else (),
                    errors=errors)
    kgv_signer = tuple(f"certs/{n}" for n in KGV_SIGNER_FILES)
    if name == "bad_custom_cert.pem":  # offered as the KGV signer: must be refused
        return Case(name, "kgv", "old_kgv_signed.json", None, "m2", (name,), "old_kgv_signed.json.signature",
                    errors)
    if name == "v2/sandbox.kgv.json":
        return Case(name, "kgv", name, None, "m2", kgv_signer, None, errors)
    if name.endswith((".signature", ".signature.bad", ".bad_signature")):
        data = name.removesuffix(".bad").removesuffix(".signature").removesuffix(".bad_signature")
        return Case(name, "kgv", data, None, "m2", kgv_signer, name, errors)
    signature = ("examples/example_kgv.json.signature" if name == "examples/example_kgv_updated_unsigned.json"
                 else name + ".signature")
    return Case(name, "kgv", name, None, "m2", kgv_signer, signature, errors)


def _cases() -> list[Case]:
    path = XE_DIR / "expected.json"  # the place the vectors_dir fixture reads
    if not path.is_file():
        return []
    return [make_case(entry) for entry in json.loads(path.read_text())]


CASES = _cases()
IDS = [case.entry for case in CASES]


def test_every_sample_has_a_case(expected: dict[str, dict[str, Any]]) -> None:
    assert sorted(IDS) == sorted(expected)
    assert len(IDS) == 54


def _library(case: Case, xe_dir: Path, sudi_anchors: list[x509.Certificate], root_m2: x509.Certificate,
             *, profile: str | None = None, at: dt.datetime | None = AT, policy: Policy | None = None) -> Any:
    signer = b"\n".join((xe_dir / name).read_bytes() for name in case.signer) or None
    return verify_output(
        (xe_dir / case.file).read_bytes(), profile=profile or case.profile,
        roots=sudi_anchors if case.anchors == "sudi" else [root_m2],
        expected_nonce=case.nonce, signer=signer,
        signature=(xe_dir / case.signature).read_bytes() if case.signature else None,
        at=at, policy=policy,
    )


def _error_ids(verdict: Any) -> set[str]:
    return {str(finding.id) for finding in verdict.errors}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_library_verdict_at_a_valid_time(case: Case, xe_dir: Path, expected: dict[str, Any],
                                         sudi_anchors: list[x509.Certificate], root_m2: x509.Certificate) -> None:
    no_nonce = case.nonce is None and case.profile in ("xe-sudi-sign", "xe-integrity-sign")
    policy = Policy(insecure_skip_nonce=True) if no_nonce else None
    verdict = _library(case, xe_dir, sudi_anchors, root_m2, policy=policy)
    assert verdict.profile == case.profile
    assert _error_ids(verdict) == case.errors, [f.message for f in verdict.errors]
    assert verdict.trusted is (expected[case.entry]["expect"] == "valid" and not case.errors)
    if expected[case.entry]["expect"] == "not-signed":
        assert verdict.to_json()["profile_data"]["signed"] is False
    jsonschema.validate(verdict.to_json(), schemas.load("verdict"))
    if no_nonce and not case.errors:
        # signed without a nonce: proven, but freshness is unknown, so not trusted by default
        strict = _library(case, xe_dir, sudi_anchors, root_m2)
        assert _error_ids(strict) == {"nonce.not_checked"}


@pytest.mark.parametrize("case", [c for c in CASES if not c.errors], ids=[c.entry for c in CASES if not c.errors])
def test_library_verdict_now(case: Case, xe_dir: Path, sudi_anchors: list[x509.Certificate],
                             root_m2: x509.Certificate) -> None:
    """At the current time most device certificates have expired: the verdict says so."""
    policy = Policy(insecure_skip_nonce=True)
    then = _library(case, xe_dir, sudi_anchors, root_m2, at=AT, policy=policy)
    now = _library(case, xe_dir, sudi_anchors, root_m2, at=None, policy=policy)
    leaf = then.leaf
    if leaf is not None and leaf.not_valid_after_utc < dt.datetime.now(dt.UTC):
        assert "chain.leaf_expired" in _error_ids(now) and not now.trusted
    else:
        assert now.trusted, now.ids()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_auto_detects_the_profile(case: Case, xe_dir: Path) -> None:
    assert detect_profiles((xe_dir / case.file).read_bytes()) == [case.profile]


def _argv(case: Case, xe_dir: Path, profile: str) -> list[str]:
    argv = ["verify", "--json", "--profile", profile, "--at", "2022-01-01T00:00:00Z"]
    for name in (SUDI_ANCHOR_FILES if case.anchors == "sudi" else ("crcam2.pem",)):
        argv += ["--root", str(xe_dir / "certs" / name)]
    for name in case.signer:
        argv += ["--signer", str(xe_dir / name)]
    if case.signature:
        argv += ["--signature", str(xe_dir / case.signature)]
    if case.nonce is not None:
        argv += ["--nonce-dec", str(case.nonce)]
    elif case.profile in ("xe-sudi-sign", "xe-integrity-sign"):
        argv.append("--insecure-skip-nonce")
    return argv + [str(xe_dir / case.file)]


@pytest.mark.parametrize("profile", ["named", "auto"])
def test_cli_verdicts(profile: str, xe_dir: Path) -> None:
    """`dossier verify --profile NAME|auto` gives every sample its verdict and reasons (exit 0/1)."""
    runner = CliRunner()
    for case in CASES:
        result = runner.invoke(cli, _argv(case, xe_dir, case.profile if profile == "named" else "auto"))
        assert result.exit_code == (1 if case.errors else 0), (case.entry, result.output)
        line = json.loads(result.stdout.strip().splitlines()[-1])
        assert line["profile"] == case.profile
        assert {f["id"] for f in line["findings"] if f["severity"] == "error"} == case.errors, case.entry


def test_cli_nonce_hex_is_the_signed_u64(xe_dir: Path) -> None:
    """--nonce HEX (as the collector's metadata stores it) means the same as --nonce-dec."""
    roots = [arg for name in SUDI_ANCHOR_FILES for arg in ("--root", str(xe_dir / "certs" / name))]
    sample = str(xe_dir / "38_show_sudi_sign_nonce.txt")
    ok = CliRunner().invoke(cli, ["verify", "--profile", "auto", "--at", "2022-01-01T00:00:00Z", "--nonce",
                                  "000000000000000a", *roots, sample])
    assert ok.exit_code == 0, ok.output
    wrong = CliRunner().invoke(cli, ["verify", "--json", "--profile", "auto", "--at", "2022-01-01T00:00:00Z",
                                     "--nonce-dec", "11", *roots, sample])
    assert wrong.exit_code == 1
    assert [f["id"] for f in json.loads(wrong.stdout)["findings"] if f["severity"] == "error"] == ["signature.invalid"]


def test_cli_verdicts_now(xe_dir: Path) -> None:
    """Judged now (no --at), the valid samples whose device certificate expired are not trusted,
    and say why; the others stay trusted."""
    runner = CliRunner()
    now = dt.datetime.now(dt.UTC)
    for case in (c for c in CASES if not c.errors):
        argv = [arg for arg in _argv(case, xe_dir, "auto") if arg != "2022-01-01T00:00:00Z" and arg != "--at"]
        result = runner.invoke(cli, argv)
        line = json.loads(result.stdout.strip().splitlines()[-1])
        leaf = line["leaf"]
        expired = leaf is not None and dt.datetime.fromisoformat(leaf["not_after"]) < now
        error_ids = {f["id"] for f in line["findings"] if f["severity"] == "error"}
        if expired:
            assert result.exit_code == 1 and "chain.leaf_expired" in error_ids, case.entry
        else:
            assert result.exit_code == 0 and not error_ids, (case.entry, error_ids)
