"""`verifier.ear`: each check of an EAR fails with its own id; the CLI maps them to exit codes."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from collector.ear import EarSigner, ear_claims, trustworthiness_vector
from collector.insights.appraise import Appraisal
from collector.insights.findings import CATEGORIES, Status
from dossier_cli.main import cli
from verifier.ear import TIERS, EarInputError, EarInvalid, EarProblem, load_jwks, tier_of, verify_ear

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def _appraisal(vector: dict[str, Status]) -> Appraisal:
    return Appraisal(device="r1", envelope="r1/x.envelope", status=Status.worst(list(vector.values())),
                     vector=vector, policy={"name": "p", "sha256": None})


def _claims() -> dict[str, Any]:
    vector = {str(c): Status.AFFIRMING for c in CATEGORIES}
    return ear_claims(_appraisal(vector), nonce=bytes(16), envelope_sha256="0" * 64, issued_at=NOW)


@pytest.fixture(scope="module")
def signer() -> EarSigner:
    return EarSigner(ec.generate_private_key(ec.SECP256R1()))


def _resigned(signer: EarSigner, claims: dict[str, Any]) -> str:
    return signer.sign(claims)


def test_a_valid_ear_verifies(signer: EarSigner) -> None:
    result = verify_ear(signer.sign(_claims()), signer.jwks(), now=NOW)
    assert result.statuses == {"r1": "affirming"} and result.key_id == signer.key_id
    assert result.claims["eat_nonce"] == base64.urlsafe_b64encode(bytes(16)).rstrip(b"=").decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_public_key(signer: EarSigner) -> str:
    """The algorithm-confusion forgery: HMAC keyed with the public JWKS anyone can fetch."""
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'kid': signer.key_id}).encode())}.{_b64(json.dumps(_claims()).encode())}"
    mac = hmac.new(json.dumps(signer.jwks()).encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def test_each_failure_has_its_id(signer: EarSigner) -> None:
    token = signer.sign(_claims())
    header, payload, signature = token.split(".")
    altered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    altered["submods"]["r1"]["ear_status"] = "affirming"
    altered["submods"]["r1"]["ear_trustworthiness_vector"]["hardware"] = 2
    altered["iat"] += 1
    forged = ".".join([header, base64.urlsafe_b64encode(json.dumps(altered).encode()).rstrip(b"=").decode(), signature])
    cases: list[tuple[str, dict[str, Any], EarProblem]] = [
        (forged, signer.jwks(), EarProblem.SIGNATURE_INVALID),
        (token, EarSigner(ec.generate_private_key(ec.SECP256R1())).jwks(), EarProblem.KEY_UNKNOWN),
        ("not-a-jws", signer.jwks(), EarProblem.MALFORMED),
        # alg "none" and a symmetric algorithm keyed with the public JWKS: refused before any key is used
        (pyjwt.encode(_claims(), None, algorithm="none", headers={"kid": signer.key_id}), signer.jwks(),
         EarProblem.ALGORITHM_NOT_ALLOWED),
        (_hs256_with_public_key(signer), signer.jwks(), EarProblem.ALGORITHM_NOT_ALLOWED),
    ]
    future = _claims() | {"iat": int(NOW.timestamp()) + 3600}
    cases.append((signer.sign(future), signer.jwks(), EarProblem.ISSUED_IN_FUTURE))
    better = _claims()
    better["submods"]["r1"]["ear_trustworthiness_vector"]["file-system"] = 96
    cases.append((signer.sign(better), signer.jwks(), EarProblem.STATUS_BETTER_THAN_VECTOR))
    unknown_claim = _claims()
    unknown_claim["submods"]["r1"]["ear_trustworthiness_vector"]["boot"] = 2  # not an AR4SI claim
    cases.append((signer.sign(unknown_claim), signer.jwks(), EarProblem.CLAIMS_INVALID))
    wrong_profile = _claims() | {"eat_profile": "tag:example.com,2020:other"}
    cases.append((signer.sign(wrong_profile), signer.jwks(), EarProblem.CLAIMS_INVALID))
    for token_case, jwks, problem in cases:
        with pytest.raises(EarInvalid) as caught:
            verify_ear(token_case, jwks, now=NOW)
        assert caught.value.problem is problem, (problem, str(caught.value))


def test_tiers_follow_ar4si_ranges() -> None:
    expected = {-128: "contraindicated", -97: "contraindicated", -96: "warning", -33: "warning", -32: "affirming",
                -2: "affirming", -1: "none", 0: "none", 1: "none", 2: "affirming", 31: "affirming", 32: "warning",
                95: "warning", 96: "contraindicated", 127: "contraindicated"}
    assert {value: tier_of(value) for value in expected} == expected


@given(st.fixed_dictionaries({str(c): st.sampled_from(list(Status)) for c in CATEGORIES}), st.booleans())
def test_no_vector_we_issue_is_better_than_its_status(vector: dict[str, Status], untrusted: bool) -> None:
    """Folding boot into executables never hides a worse tier: the vector's worst claim is the
    appraisal's status (or contraindicated when the output is untrusted)."""
    status = Status.worst(list(vector.values()))
    claims = trustworthiness_vector(vector, untrusted=untrusted)
    worst = max((tier_of(v) for v in claims.values()), key=TIERS.index, default="none")
    assert TIERS.index(worst) <= TIERS.index(str(Status.CONTRAINDICATED if untrusted else status))
    if not untrusted:
        assert worst == str(status)


def test_cli_exit_codes(signer: EarSigner, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(signer.jwks()))
    good = tmp_path / "good.jwt"
    good.write_text(signer.sign(_claims() | {"iat": int(dt.datetime.now(dt.UTC).timestamp())}))
    bad = tmp_path / "bad.jwt"
    bad.write_text(good.read_text()[:-4] + ("AAAA" if not good.read_text().endswith("AAAA") else "BBBB"))
    runner = CliRunner()
    ok = runner.invoke(cli, ["ear", "verify", str(good), "--jwks", str(jwks)])
    assert ok.exit_code == 0 and "r1: affirming" in ok.output
    invalid = runner.invoke(cli, ["ear", "verify", str(bad), "--jwks", str(jwks), "--json"])
    assert invalid.exit_code == 1 and json.loads(invalid.stdout)["problem"] == "ear.signature_invalid"
    for args in ([str(tmp_path / "missing.jwt"), "--jwks", str(jwks)], [str(good), "--jwks", str(tmp_path / "none.json")],
                 [str(good), "--jwks", "http://127.0.0.1:9/jwks.json"], [str(good)]):
        result = runner.invoke(cli, ["ear", "verify", *args])
        assert result.exit_code == 2, (args, result.output)


def test_an_empty_or_odd_jwks_is_an_input_error(tmp_path: Path) -> None:
    from joserfc.jwk import ECKey

    private = json.dumps({"keys": [ECKey.generate_key("P-256", private=True).as_dict(private=True) | {"kid": "k"}]})
    for text in ('{"keys": []}', "[]", "not json", '{"keys": [{"kty": "nope"}]}', private):
        path = tmp_path / "jwks.json"
        path.write_text(text)
        with pytest.raises(EarInputError):
            verify_ear("a.b.c", load_jwks(str(path)))


def test_ear_verify_in_a_subprocess_needs_only_the_verifier(signer: EarSigner, tmp_path: Path) -> None:
    """Auditors run `dossier ear verify` without the collector: it imports none of it (nor the
    emulator, paramiko or rich), and answers through the real console command."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(signer.jwks()))
    ear = tmp_path / "r1.jwt"
    ear.write_text(signer.sign(_claims() | {"iat": int(dt.datetime.now(dt.UTC).timestamp())}))
    probe = ("import json, sys\nfrom dossier_cli.main import cli\ntry:\n    cli(sys.argv[1:], prog_name='dossier')\n"
             "except SystemExit as exc:\n    code = exc.code\n"
             "print(json.dumps({'exit': code, 'modules': sorted({n.split('.')[0] for n in sys.modules})}))")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", probe, "ear", "verify", str(ear), "--jwks", str(jwks)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)}, cwd=root,
                            timeout=60, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["exit"] == 0 and "valid: signed by key" in result.stdout
    assert not set(report["modules"]) & {"collector", "emulator", "paramiko", "rich"}
