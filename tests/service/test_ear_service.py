"""The service's EARs and webhook settings: an EAR from the API verifies with `dossier ear verify`
and with PyJWT against /.well-known/jwks.json; the admin API edits the webhook settings and the
new receiver gets signed events (the secret kept, never shown)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path
from typing import Any

import jsonschema
import jwt as pyjwt
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import schemas
from collector.service.ear_hooks import EarService
from collector.service.tokens import Tokens
from collector.webhooks import load_webhook_config
from dossier_cli.main import cli
from service_rig import GOOD, TAMPERED, Collected, make_app
from webhook_receiver import Receiver  # tests/collector, on pytest's pythonpath

SECRET = "service-webhook-secret-0123"


@pytest.fixture(scope="module")
def hooks_app(collected: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("ear-service")
    # A copy of the store: the sender's delivery log and the service's state go there, never into
    # the store the other service tests share (and copy).
    shutil.copytree(collected.store_dir, root / "store")
    collected = Collected(root / "store", collected.trust, collected.inventory, collected.fleet)
    tokens_file = root / "tokens.json"
    admin = Tokens.load(tokens_file).add("ops", "admin")
    hooks = root / "hooks.yaml"
    with Receiver(SECRET.encode()) as receiver:
        hooks.write_text(f"format: trust-dossier/webhooks/1\nurls: ['{receiver.url}']\nsecret: {SECRET}\n")
        hooks.chmod(0o600)
        app = make_app(collected, tokens_file=tokens_file, extra={
            "webhooks": load_webhook_config(hooks), "webhooks_file": hooks, "ear_key": root / "ear.pem"})
        with TestClient(app) as client:
            yield client, admin, hooks, root


def test_an_ear_from_the_api_verifies_offline_and_with_pyjwt(hooks_app: Any, tmp_path: Path) -> None:
    client, admin, _, _ = hooks_app
    keys = client.get("/.well-known/jwks.json")  # public: no token needed
    assert keys.status_code == 200, keys.text
    jwks = keys.json()
    jsonschema.validate(jwks, schemas.load("jwks"))
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(keys.text)
    auth = {"Authorization": f"Bearer {admin}"}
    assert client.get(f"/api/v1/devices/{GOOD}/ear").status_code == 401
    expected = {GOOD: {"instance-identity": 2}, TAMPERED: {"instance-identity": 99}}
    for device, vector in expected.items():
        answer = client.get(f"/api/v1/devices/{device}/ear", headers=auth)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        jsonschema.validate(body, schemas.load("api-ear"))
        ear = tmp_path / f"{device}.jwt"
        ear.write_text(body["ear"])
        checked = CliRunner().invoke(cli, ["ear", "verify", str(ear), "--jwks", str(jwks_file), "--json"])
        assert checked.exit_code == 0, checked.output
        [key] = [k for k in jwks["keys"] if k["kid"] == body["kid"]]
        claims = pyjwt.decode(body["ear"], pyjwt.PyJWK(key).key, algorithms=["ES256"])
        assert claims == json.loads(checked.stdout)["claims"]
        assert claims["submods"][device]["ear_trustworthiness_vector"] == vector
    assert client.get("/api/v1/devices/nope/ear", headers=auth).status_code == 404


def test_admin_api_edits_webhook_settings_and_keeps_the_secret(hooks_app: Any) -> None:
    client, admin, hooks, _ = hooks_app
    auth = {"Authorization": f"Bearer {admin}"}
    current = client.get("/api/v1/admin/webhooks", headers=auth)
    assert current.status_code == 200 and current.json()["configured"] is True
    assert SECRET not in current.text
    with Receiver(SECRET.encode()) as second:
        changed = client.put("/api/v1/admin/webhooks/settings", headers=auth, json={
            "format": "trust-dossier/webhooks/1", "urls": [second.url], "events": ["poll.failed"],
            "retry_base_s": 0.05})
        assert changed.status_code == 200, changed.text
        jsonschema.validate(changed.json(), schemas.load("api-webhooks"))
        assert SECRET not in changed.text and "token=" not in changed.text
        assert stat.S_IMODE(hooks.stat().st_mode) == 0o600 and SECRET in hooks.read_text()
        sender = EarService.of(client.app).alerts.webhooks
        EarService.of(client.app).alerts.failed(GOOD, "ssh.timeout", "timed out")
        EarService.of(client.app).alerts.untrusted(GOOD, ["signature.invalid"], None)  # not wanted now
        assert sender.flush(10)
        assert [event["type"] for event in second.accepted.values()] == ["poll.failed"]
        assert second.rejected == 0
    bad = client.put("/api/v1/admin/webhooks/settings", headers=auth, json={"format": "trust-dossier/webhooks/1",
                                                                            "urls": ["ftp://x/"]})
    assert bad.status_code == 400
    read_only = client.put("/api/v1/admin/webhooks/settings", json={})
    assert read_only.status_code == 401


def test_serve_refuses_a_webhooks_file_others_can_read(collected: Any, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.yaml"
    hooks.write_text(f"format: trust-dossier/webhooks/1\nurls: ['https://h.example/x']\nsecret: {SECRET}\n")
    hooks.chmod(0o644)
    result = CliRunner().invoke(cli, ["serve", "--store", str(collected.store_dir), "--trust-store",
                                      str(collected.trust), "--webhooks", str(hooks)])
    assert result.exit_code == 2 and "chmod 600" in result.output and SECRET not in result.output
