"""x509-limbo through `validate_chain`: core cases match limbo, profile cases match our decision."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from limbo_expectations import ACCEPT, CORE_MISSES, PROFILE_DECISIONS, REJECT
from verifier import Policy
from verifier.chain import validate_chain
from verifier.errors import ChainError

TIERS_FILE = Path(__file__).resolve().parents[2].parent / "shared/vectors/x509-limbo/profile-pinned-root.json"


@cache
def _load(vectors: str) -> tuple[dict[str, Any], dict[str, Any]]:
    base = Path(vectors) / "x509-limbo"
    cases = {case["id"]: case for case in json.loads((base / "limbo.json").read_text())["testcases"]}
    return cases, json.loads((base / "profile-pinned-root.json").read_text())


def _ids(tier: str) -> list[str]:
    if not TIERS_FILE.exists():
        return ["(vectors absent)"]
    return sorted(k for k, v in json.loads(TIERS_FILE.read_text()).items() if v["tier"] == tier)


def _run(case: dict[str, Any], policy: Policy | None = None) -> tuple[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some limbo certs have non-positive serials on purpose
        leaf = x509.load_pem_x509_certificate(case["peer_certificate"].encode())
        roots = [x509.load_pem_x509_certificate(pem.encode()) for pem in case["trusted_certs"]]
        intermediates = [x509.load_pem_x509_certificate(pem.encode()) for pem in case["untrusted_intermediates"]]
    at = dt.datetime.fromisoformat(case["validation_time"]) if case["validation_time"] else None
    try:
        validate_chain(leaf, roots, intermediates, at, policy=policy)
    except ChainError as exc:
        return REJECT, str(exc)
    return ACCEPT, ""


@pytest.mark.parametrize("case_id", _ids("core"))
def test_core(case_id: str, vectors_dir: Path) -> None:
    cases, _ = _load(str(vectors_dir))
    case = cases[case_id]
    result, reason = _run(case)
    if case_id in CORE_MISSES:
        assert result != case["expected_result"], f"{case_id} now matches: drop it from CORE_MISSES"
    else:
        assert result == case["expected_result"], f"{case_id}: {reason}"


@pytest.mark.parametrize("case_id", _ids("profile"))
def test_profile_decision(case_id: str, vectors_dir: Path) -> None:
    cases, _ = _load(str(vectors_dir))
    assert case_id in PROFILE_DECISIONS, f"profile case {case_id} has no documented decision"
    decision, why = PROFILE_DECISIONS[case_id]
    result, reason = _run(cases[case_id])
    assert result == decision, f"{case_id}: decided {decision} ({why}) but got {result}: {reason}"


def test_every_table_entry_is_a_real_case(vectors_dir: Path) -> None:
    _, tiers = _load(str(vectors_dir))
    assert all(tiers[case_id]["tier"] == "core" for case_id in CORE_MISSES)
    assert {k for k, v in tiers.items() if v["tier"] == "profile"} == set(PROFILE_DECISIONS)


def test_cve_2024_0567_validates_with_a_larger_intermediate_cap(vectors_dir: Path) -> None:
    cases, _ = _load(str(vectors_dir))
    assert _run(cases["cve::cve-2024-0567"], Policy(max_intermediates=10))[0] == ACCEPT
