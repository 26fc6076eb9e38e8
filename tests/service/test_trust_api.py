"""The trust store through the API over the collected emulated fleet: a read token lists it, an
admin token enrolls (only with the right fingerprint; replacing only when asked) and removes, and
each change shows at once in the verdicts of the device's stored outputs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from collector.service.schemas import response_schema
from collector.service.tokens import Tokens
from collector.service.trust_api import MAX_TRUST_BODY_BYTES
from verifier import TrustStore
from verifier.chain import fingerprint

from service_rig import GOOD, TAMPERED, make_app


@dataclasses.dataclass
class Rig:
    client: TestClient
    app: Any
    trust: Path
    pristine: Path
    read: dict[str, str]
    admin: dict[str, str]


@pytest.fixture(scope="module")
def rig_once(collected: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    # The session's trust store is shared with other tests: these change a copy of their own.
    base = tmp_path_factory.mktemp("trust-api")
    pristine, trust = base / "pristine", base / "trust"
    shutil.copytree(collected.trust, pristine)
    shutil.copytree(pristine, trust)
    tokens_file = base / "tokens.json"
    tokens = Tokens.load(tokens_file)
    read, admin = tokens.add("reader", "read"), tokens.add("operator", "admin")
    app = make_app(dataclasses.replace(collected, trust=trust), tokens_file=tokens_file, warm_on_start=False)
    with TestClient(app) as client:
        yield Rig(client, app, trust, pristine, _bearer(read), _bearer(admin))


@pytest.fixture
def rig(rig_once: Rig) -> Rig:
    """The rig with its trust store as collected (each test starts from it)."""
    shutil.rmtree(rig_once.trust)
    shutil.copytree(rig_once.pristine, rig_once.trust)
    rig_once.app.state.queries.forget_verdicts()
    return rig_once


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _valid(name: str, body: Any) -> Any:
    jsonschema.Draft202012Validator(response_schema(name)).validate(body)
    return body


def _root_of(rig: Rig, device: str) -> x509.Certificate:
    return TrustStore.open(rig.trust).roots_for(device)[0]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _state(rig: Rig, device: str) -> str:
    response = rig.client.get(f"/api/v1/devices/{device}", headers=rig.read)
    assert response.status_code == 200, response.text
    return response.json()["device"]["verification"]["state"]  # type: ignore[no-any-return]


def _listing(rig: Rig) -> dict[str, Any]:
    response = rig.client.get("/api/v1/trust", headers=rig.read)
    assert response.status_code == 200, response.text
    return _valid("api-trust", response.json())  # type: ignore[no-any-return]


def _new_ca(name: str, *, ca: bool = True) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


def _put(rig: Rig, device: str, root: x509.Certificate, *, expected: str | None = None, **extra: Any) -> Any:
    body = {"root_pem": _pem(root), "expected_sha256": expected or fingerprint(root), **extra}
    return rig.client.put(f"/api/v1/admin/trust/{device}", json=body, headers=rig.admin)


def test_a_read_token_lists_the_trust_store_but_cannot_change_it(rig: Rig) -> None:
    listing = _listing(rig)
    roots = {record["device"]: [root["sha256"] for root in record["roots"]] for record in listing["devices"]}
    assert roots[GOOD] == [fingerprint(_root_of(rig, GOOD))]
    # The same facts as `dossier trust list --json`, through the same owner.
    assert {key: value for key, value in listing.items() if key != "format"} == TrustStore.open(rig.trust).listing()
    for method, body in (("PUT", {"root_pem": _pem(_root_of(rig, GOOD)), "expected_sha256": "00" * 32}),
                         ("DELETE", None)):
        response = rig.client.request(method, f"/api/v1/admin/trust/{GOOD}", json=body, headers=rig.read)
        assert response.status_code == 403, response.text
        error = _valid("api-error", response.json())["error"]
        assert error["code"] == "auth.scope" and error["expected"] == "scope admin" and error["found"] == "scope read"
    assert _listing(rig) == listing


def test_remove_makes_outputs_untrusted_and_enrolling_with_the_fingerprint_trusts_them_again(rig: Rig) -> None:
    root = _root_of(rig, GOOD)
    assert _state(rig, GOOD) == "trusted"
    removed = rig.client.delete(f"/api/v1/admin/trust/{GOOD}", headers=rig.admin)
    assert removed.status_code == 200, removed.text
    assert _valid("api-trust-change", removed.json())["action"] == "removed"
    assert GOOD not in {record["device"] for record in _listing(rig)["devices"]}
    assert _state(rig, GOOD) == "untrusted"  # the cached verdicts were forgotten
    newest = rig.client.get(f"/api/v1/devices/{GOOD}/history", params={"limit": 1}, headers=rig.read).json()
    output = rig.client.get(f"/api/v1/devices/{GOOD}/outputs/{newest['collections'][0]['envelope']}",
                            headers=rig.read).json()
    assert output["verdict"]["trusted"] is False
    assert "trust.device_unknown" in {finding["id"] for finding in output["verdict"]["findings"]}
    again = rig.client.delete(f"/api/v1/admin/trust/{GOOD}", headers=rig.admin)
    assert again.status_code == 404 and again.json()["error"]["code"] == "trust.not_enrolled"

    colons = ":".join(fingerprint(root)[i:i + 2] for i in range(0, 64, 2)).upper()
    enrolled = _put(rig, GOOD, root, expected=f"SHA256:{colons}")
    assert enrolled.status_code == 200, enrolled.text
    change = _valid("api-trust-change", enrolled.json())
    assert change["action"] == "enrolled" and change["source"] == "fingerprint"
    assert change["root"]["sha256"] == fingerprint(root)
    assert _state(rig, GOOD) == "trusted"
    assert _put(rig, GOOD, root).json()["action"] == "already-enrolled"


def test_a_wrong_fingerprint_is_refused_and_nothing_changes(rig: Rig) -> None:
    before = _listing(rig)
    other = _root_of(rig, TAMPERED)
    wanted = fingerprint(_root_of(rig, GOOD))
    for device in (GOOD, "xr-new"):
        response = _put(rig, device, other, expected=wanted, replace=True)
        assert response.status_code == 409, response.text
        error = _valid("api-error", response.json())["error"]
        assert error["code"] == "trust.fingerprint_mismatch"
        assert error["expected"] == f"SHA-256 {wanted}" and error["found"] == f"SHA-256 {fingerprint(other)}"
    assert _listing(rig) == before
    assert _state(rig, GOOD) == "trusted"


def test_replacing_a_root_needs_replace_true_and_closes_the_old_roots_window(rig: Rig) -> None:
    old, new = _root_of(rig, GOOD), _new_ca("rotated root")
    before = _listing(rig)
    refused = _put(rig, GOOD, new)
    assert refused.status_code == 409, refused.text
    error = _valid("api-error", refused.json())["error"]
    assert error["code"] == "trust.replace_required" and fingerprint(old) in error["message"]
    assert _listing(rig) == before

    replaced = _put(rig, GOOD, new, replace=True)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["action"] == "replaced"
    record = next(record for record in _listing(rig)["devices"] if record["device"] == GOOD)
    windows = {root["sha256"]: (root["valid_from"], root["valid_until"]) for root in record["roots"]}
    assert windows[fingerprint(old)][1] is not None and windows[fingerprint(new)][0] is not None
    # The stored outputs were received before the old root's window closed: still trusted.
    assert _state(rig, GOOD) == "trusted"


def test_intermediates_are_enrolled_beside_the_root_and_a_leaf_is_refused(rig: Rig) -> None:
    root, sub_ca, leaf = _new_ca("enterprise root"), _new_ca("enterprise sub-CA"), _new_ca("a leaf", ca=False)
    refused = _put(rig, "xr-new", root, intermediates=[_pem(sub_ca), _pem(leaf)])
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "trust.certificate_invalid"
    assert "intermediates/1" in refused.json()["error"]["message"]
    assert "xr-new" not in {record["device"] for record in _listing(rig)["devices"]}  # nothing half-enrolled
    enrolled = _put(rig, "xr-new", root, intermediates=[_pem(sub_ca)])
    assert enrolled.status_code == 200 and enrolled.json()["intermediates"] == [fingerprint(sub_ca)]
    record = next(record for record in _listing(rig)["devices"] if record["device"] == "xr-new")
    assert [item["sha256"] for item in record["intermediates"]] == [fingerprint(sub_ca)]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"root_pem": "x"}',
                                  b'{"root_pem": "-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----",'
                                  b' "expected_sha256": "' + b"ab" * 32 + b'"}'],
                         ids=["not-json", "not-an-object", "no-fingerprint", "not-a-certificate"])
def test_bodies_that_are_not_an_enrollment_are_refused(rig: Rig, body: bytes) -> None:
    before = sorted(path.name for path in (rig.trust / "devices").iterdir())
    response = rig.client.put(f"/api/v1/admin/trust/{GOOD}", content=body, headers=rig.admin)
    code = _valid("api-error", response.json())["error"]["code"]
    assert (response.status_code, code) in ((400, "trust.body_invalid"), (409, "trust.certificate_invalid")), response.text
    assert sorted(path.name for path in (rig.trust / "devices").iterdir()) == before


def test_an_oversize_body_is_refused_before_it_is_read(rig: Rig) -> None:
    before = _listing(rig)
    body = b'{"root_pem": "' + b"A" * MAX_TRUST_BODY_BYTES + b'", "expected_sha256": "' + b"ab" * 32 + b'"}'
    response = rig.client.put(f"/api/v1/admin/trust/{GOOD}", content=body, headers=rig.admin)
    assert response.status_code == 413, response.text
    error = _valid("api-error", response.json())["error"]
    assert error["code"] == "upload.too_large" and str(MAX_TRUST_BODY_BYTES) in error["expected"]
    assert _listing(rig) == before


@pytest.mark.parametrize("name", ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", ".hidden", "a%2Fb", "a%00b", "x" * 80,
                                  "..", "dev ice"])
def test_device_names_with_path_tricks_are_refused(rig: Rig, name: str) -> None:
    root = _new_ca("trick")
    files = sorted(str(path.relative_to(rig.trust)) for path in rig.trust.rglob("*"))
    for method in ("PUT", "DELETE"):
        body = {"root_pem": _pem(root), "expected_sha256": fingerprint(root)} if method == "PUT" else None
        response = rig.client.request(method, f"/api/v1/admin/trust/{name}", json=body, headers=rig.admin)
        assert response.status_code in (400, 404, 405), (name, response.status_code, response.text)
        _valid("api-error", response.json())
    assert sorted(str(path.relative_to(rig.trust)) for path in rig.trust.rglob("*")) == files


def test_pinned_attestation_keys_are_listed_by_fingerprint_without_pem(rig: Rig) -> None:
    """A device with TPM evidence has its nodes' attestation keys pinned (`dossier enroll`): the
    listing names each by node, SHA-256 and how it was pinned, as its schema says."""
    key = _new_ca("AK 0/RP0/CPU0")
    TrustStore.open(rig.trust).pin_attestation_key(GOOD, "0/RP0/CPU0", key, source="fingerprint")
    record = next(r for r in _listing(rig)["devices"] if r["device"] == GOOD)
    pinned = record["attestation_keys"]["0/RP0/CPU0"]
    assert pinned["sha256"] == fingerprint(key) and pinned["source"] == "fingerprint" and "pem" not in pinned
