"""The service's webhook settings (PUT /api/v1/admin/webhooks/settings) as an attacker holding
an admin token would use them: the delivery log cannot be pointed at another file (a stored
envelope, the tokens file: every attempt would append to it, and its rotation would move it
away), and a body larger than any configuration is refused before it is read whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from collector.service.app import create_app
from collector.service.settings import ServiceSettings
from collector.service.tokens import Tokens
from collector.store import Store
from collector.webhooks import load_webhook_config
from collector_fakes import make_pki
from dossier_cli.main import cli

SECRET = "adversarial-webhook-secret-0123"
FORMAT = "trust-dossier/webhooks/1"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    root = tmp_path_factory.mktemp("adv-webhooks")
    store = Store.open(root / "store")
    store.close()
    anchor = root / "root.pem"
    anchor.write_bytes(make_pki().root.public_bytes(serialization.Encoding.PEM))
    added = CliRunner().invoke(cli, ["trust", "add", "r1", str(anchor), "--trust-store", str(root / "trust")])
    assert added.exit_code == 0, added.output
    tokens_file = root / "tokens.json"
    admin = Tokens.load(tokens_file).add("ops", "admin")
    hooks = root / "hooks.yaml"
    hooks.write_text(f"format: {FORMAT}\nurls: ['http://127.0.0.1:9/hook']\nsecret: {SECRET}\n")
    hooks.chmod(0o600)
    app = create_app(ServiceSettings(store=root / "store", trust_store=root / "trust", tokens_file=tokens_file,
                                     extra={"webhooks": load_webhook_config(hooks), "webhooks_file": hooks,
                                            "ear_key": root / "ear.pem"}), start_collector=False)
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {admin}"}, root


@pytest.mark.parametrize("target", ["../tokens.json", "/etc/passwd", "store/r1/x.envelope", "deliveries.jsonl"])
def test_the_api_cannot_point_the_delivery_log_at_a_file(service: tuple[TestClient, dict[str, str], Path],
                                                         target: str) -> None:
    client, auth, root = service
    before = client.get("/api/v1/admin/webhooks", headers=auth).json()
    answer = client.put("/api/v1/admin/webhooks/settings", headers=auth, json={
        "format": FORMAT, "urls": ["http://127.0.0.1:9/hook"], "delivery_log": target})
    assert answer.status_code == 400, answer.text
    body: dict[str, Any] = answer.json()["error"]
    assert "delivery_log" in body["message"]
    assert client.get("/api/v1/admin/webhooks", headers=auth).json() == before
    assert "delivery_log" not in (root / "hooks.yaml").read_text()


def test_the_delivery_log_the_service_reports_can_be_sent_back(service: tuple[TestClient, dict[str, str], Path]
                                                               ) -> None:
    """A client that sends back what GET answered is not refused for it."""
    client, auth, _ = service
    current = client.get("/api/v1/admin/webhooks", headers=auth).json()
    answer = client.put("/api/v1/admin/webhooks/settings", headers=auth, json={
        "format": FORMAT, "urls": ["http://127.0.0.1:9/other"],
        "delivery_log": current["settings"]["delivery_log"]})
    assert answer.status_code == 200, answer.text


def test_a_huge_settings_body_is_refused(service: tuple[TestClient, dict[str, str], Path]) -> None:
    client, auth, _ = service
    huge = b'{"format": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    answer = client.put("/api/v1/admin/webhooks/settings", headers={**auth, "Content-Type": "application/json"},
                        content=huge)
    assert answer.status_code == 413, answer.text


def test_a_deeply_nested_settings_body_is_a_clear_error(service: tuple[TestClient, dict[str, str], Path]) -> None:
    client, auth, _ = service
    answer = client.put("/api/v1/admin/webhooks/settings", headers={**auth, "Content-Type": "application/json"},
                        content=b"[" * 20_000 + b"]" * 20_000)
    assert answer.status_code == 400, answer.text
