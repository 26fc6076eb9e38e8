"""Tokens and scopes, the loopback rule, uploads (admin only, bounded, stored nowhere) and TLS."""

from __future__ import annotations

import json
import os
import ssl
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from collector.service.cli import listening_socket
from collector.service.errors import ServiceError
from collector.service.settings import ServiceSettings
from collector.service.tokens import Tokens
from dossier_cli.main import cli

from service_rig import GOOD, make_app


@pytest.fixture(scope="module")
def tokened(collected: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tokens_file = tmp_path_factory.mktemp("tokens") / "tokens.json"
    tokens = Tokens.load(tokens_file)
    secrets = {"read": tokens.add("reader", "read"), "admin": tokens.add("operator", "admin")}
    app = make_app(collected, tokens_file=tokens_file)
    return {"file": tokens_file, "secrets": secrets, "client": TestClient(app)}


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_tokens_file_keeps_salted_hashes_only_mode_0600(tokened: dict[str, Any]) -> None:
    text = tokened["file"].read_text()
    assert stat.S_IMODE(os.stat(tokened["file"]).st_mode) == 0o600
    for secret in tokened["secrets"].values():
        assert secret not in text and secret.startswith("dtk_")
    entries = json.loads(text)["tokens"]
    assert {entry["scope"] for entry in entries} == {"read", "admin"}
    assert len({entry["salt"] for entry in entries}) == 2


def test_a_token_is_required_once_tokens_exist(tokened: dict[str, Any]) -> None:
    client = tokened["client"]
    missing = client.get("/api/v1/fleet")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "auth.missing"
    wrong = client.get("/api/v1/fleet", headers=_bearer("dtk_not-a-token"))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "auth.invalid"
    assert client.get("/api/v1/fleet", headers=_bearer(tokened["secrets"]["read"])).status_code == 200
    assert client.get("/api/v1/fleet", headers=_bearer(tokened["secrets"]["admin"])).status_code == 200


def test_uploads_need_the_admin_scope(tokened: dict[str, Any]) -> None:
    client = tokened["client"]
    refused = client.post("/api/v1/verify", content=b"{}", headers=_bearer(tokened["secrets"]["read"]))
    assert refused.status_code == 403
    assert refused.json()["error"] == {"code": "auth.scope", "message": "this call needs a token of scope admin",
                                       "expected": "scope admin", "found": "scope read"}


def test_an_uploaded_envelope_is_verified_against_the_trust_store_and_not_stored(
        tokened: dict[str, Any], collected: Any) -> None:
    import jsonschema

    from collector.service.schemas import response_schema

    client, admin = tokened["client"], _bearer(tokened["secrets"]["admin"])
    history = client.get(f"/api/v1/devices/{GOOD}/history", headers=admin).json()["collections"]
    newest = history[0]
    output = client.get(f"/api/v1/devices/{GOOD}/outputs/{newest['envelope']}", headers=admin).json()
    raw = client.get(f"/api/v1/devices/{GOOD}/outputs/{newest['envelope']}/raw", headers=admin).content
    stored_before = sorted(p.name for p in (collected.store_dir / GOOD).iterdir())
    answer = client.post("/api/v1/verify", content=raw, headers=admin,
                         params={"device": GOOD, "nonce": output["nonce"], "at": newest["received"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    jsonschema.Draft202012Validator(response_schema("api-verification")).validate(body)
    assert body["verdict"]["trusted"] is True and body["stored"] is False
    assert sorted(p.name for p in (collected.store_dir / GOOD).iterdir()) == stored_before
    other = client.post("/api/v1/verify", content=raw, headers=admin,
                        params={"device": GOOD, "nonce": "00" * 16, "at": newest["received"]}).json()
    assert other["verdict"]["trusted"] is False


def test_uploads_are_bounded(collected: Any, tmp_path: Path) -> None:
    tokens = Tokens.load(tmp_path / "tokens.json")
    admin = tokens.add("operator", "admin")
    client = TestClient(make_app(collected, tokens_file=tmp_path / "tokens.json", max_upload_bytes=1000))
    answer = client.post("/api/v1/verify", content=b"x" * 1001, headers=_bearer(admin))
    assert answer.status_code == 413
    assert answer.json()["error"]["expected"] == "at most 1000 bytes"
    empty = client.post("/api/v1/verify", content=b"", headers=_bearer(admin))
    assert empty.status_code == 400 and empty.json()["error"]["found"] == "0 bytes"
    garbage = client.post("/api/v1/verify", content=b"\xff\x00 not an envelope", headers=_bearer(admin))
    assert garbage.status_code == 200 and garbage.json()["verdict"]["trusted"] is False


def test_without_tokens_reading_is_open_on_loopback_and_admin_refused(client: Any) -> None:
    assert client.get("/api/v1/fleet").status_code == 200
    refused = client.post("/api/v1/verify", content=b"{}")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "auth.admin_required"


def test_refuses_a_non_loopback_address_without_a_token(collected: Any, tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="expected an API token before listening on 0.0.0.0"):
        make_app(collected, listen="0.0.0.0:8080", tokens_file=tmp_path / "none.json")
    result = CliRunner().invoke(cli, ["serve", "--store", str(collected.store_dir), "--tokens",
                                      str(tmp_path / "none.json"), "--listen", "192.0.2.1:8443"])
    assert result.exit_code == 2 and "expected an API token" in result.output
    Tokens.load(tmp_path / "some.json").add("reader", "read")
    make_app(collected, listen="0.0.0.0:8080", tokens_file=tmp_path / "some.json")  # allowed with one


def test_token_add_prints_the_secret_once(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.json"
    result = CliRunner().invoke(cli, ["serve", "--tokens", str(tokens_file), "token", "add", "ci", "--scope",
                                      "admin"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert Tokens.load(tokens_file).scope_of(secret) == ("ci", "admin")
    again = CliRunner().invoke(cli, ["serve", "--tokens", str(tokens_file), "token", "add", "ci"])
    assert again.exit_code == 2 and "already" in again.output
    listed = CliRunner().invoke(cli, ["serve", "--tokens", str(tokens_file), "token", "list"])
    assert "ci\tadmin" in listed.output and secret not in listed.output


def test_serves_https_with_a_certificate(collected: Any, tmp_path: Path) -> None:
    """A live uvicorn on loopback, TLS from a certificate made here, read over HTTPS."""
    import datetime as dt

    import httpx
    import uvicorn
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    listener = listening_socket("127.0.0.1", 0)  # connections queue until uvicorn accepts them: no waiting
    port = listener.getsockname()[1]
    app = make_app(collected, listen=f"127.0.0.1:{port}", tls_cert=cert_path, tls_key=key_path)
    server = uvicorn.Server(uvicorn.Config(app, ssl_certfile=str(cert_path), ssl_keyfile=str(key_path),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        context = ssl.create_default_context(cafile=str(cert_path))
        answer = httpx.get(f"https://localhost:{port}/api/v1/fleet", verify=context, timeout=30)
        assert answer.status_code == 200 and answer.json()["total"] == 3
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://localhost:{port}/api/v1/fleet", timeout=5)
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def test_a_store_error_answer_names_no_server_path(tmp_path: Path) -> None:
    """A 503 says what is wrong with the store, not where the store lives on the server."""
    import pytest

    from collector.errors import StoreError
    from collector.service.queries import QueryError, StoreQueries
    from collector.store import Store

    store = Store.open(tmp_path / "secret-place" / "store")
    queries = StoreQueries(store, tmp_path / "secret-place" / "truststore")

    def broken() -> None:
        raise StoreError(f"cannot read {store.root}/xr-0001/index: Permission denied")

    with pytest.raises(QueryError) as raised:
        queries._read(broken)
    assert raised.value.status == 503 and "secret-place" not in f"{raised.value.message} {raised.value.found}"
    with pytest.raises(QueryError) as raised:
        queries.trust_store()  # none there
    assert raised.value.status == 503 and "secret-place" not in raised.value.message, raised.value.message
    store.close()
