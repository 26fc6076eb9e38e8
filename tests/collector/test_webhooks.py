"""Webhooks: signed events to a real HTTP receiver on loopback, retried after a 500 and seen once;
a dead receiver costs the caller nothing; configuration fails closed."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import schemas
from collector.alerts import AlertSink
from collector.webhooks import (
    EventType,
    WebhookConfig,
    WebhookConfigError,
    WebhookSender,
    check_signature,
    load_webhook_config,
    sign,
)
from webhook_receiver import Receiver

SECRET = b"0123456789abcdef-test-secret"


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_events_are_signed_retried_after_a_500_and_seen_once(tmp_path: Path) -> None:
    log = tmp_path / "deliveries.jsonl"
    with Receiver(SECRET, fail_first=2) as receiver:
        config = WebhookConfig(urls=(receiver.url,), secret=SECRET, retry_base_s=0.02, delivery_log=log)
        sender = WebhookSender(config)
        alerts = AlertSink(webhooks=sender)
        alerts.untrusted("r1", ["signature.invalid"], "r1/a.envelope")
        alerts.failed("r2", "ssh.auth_failed", "authentication failed")
        alerts.degraded("r3", "affirming", "contraindicated", ["boot=contraindicated"],
                        ["appraisal.boot.secure_boot_disabled"], "r3/b.envelope")
        assert sender.flush(20)
        alerts.close()
    assert receiver.rejected == 0 and receiver.duplicates == 0
    assert sorted(e["type"] for e in receiver.accepted.values()) == sorted(
        ["envelope.untrusted", "poll.failed", "appraisal.degraded"])
    for event in receiver.accepted.values():
        jsonschema.validate(event, schemas.load("webhook-event"))
    lines = _lines(log)
    for line in lines:
        jsonschema.validate(line, schemas.load("webhook-delivery"))
    assert [line["outcome"] for line in lines].count("retry") == 2
    assert [line["outcome"] for line in lines].count("delivered") == 3
    retried = {line["event"] for line in lines if line["outcome"] == "retry"}
    assert all(any(l["event"] == e and l["outcome"] == "delivered" for l in lines) for e in retried)
    text = log.read_text()
    assert SECRET.decode() not in text and "s3cr3t-query" not in text  # neither secret nor URL query


def test_signature_and_replay_window() -> None:
    body = b'{"id":"x"}'
    now = int(time.time())
    good = sign(SECRET, now, body)
    assert check_signature(SECRET, str(now), body, good)
    assert not check_signature(b"another-secret-of-16", str(now), body, good)
    assert not check_signature(SECRET, str(now), body + b" ", good)
    assert not check_signature(SECRET, str(now - 301), body, sign(SECRET, now - 301, body))  # replayed later
    assert not check_signature(SECRET, "soon", body, good)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_dead_receiver_costs_the_caller_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import collector.webhooks as webhooks

    monkeypatch.setattr(webhooks, "MAX_PENDING", 50)
    log = tmp_path / "deliveries.jsonl"
    config = WebhookConfig(urls=(f"http://127.0.0.1:{_closed_port()}/",), secret=SECRET, retry_base_s=3600,
                           delivery_log=log)
    sender = WebhookSender(config)
    started = time.perf_counter()
    ids = [sender.emit(EventType.POLL_FAILED, f"r{i}", "down", {}) for i in range(60)]
    emitting = time.perf_counter() - started
    assert emitting < 0.5  # queued, never sent inline
    assert ids.count(None) == 10  # beyond the bound: dropped, not held
    sender.close(timeout=0.5)
    outcomes = [line["outcome"] for line in _lines(log)]
    assert outcomes.count("dropped") == 60  # 10 at once, 50 when the sender stopped
    assert "retry" in outcomes


def test_configuration_fails_closed(tmp_path: Path) -> None:
    assert load_webhook_config(None, {}) is None
    with pytest.raises(WebhookConfigError, match="secret"):
        load_webhook_config(None, {"DOSSIER_WEBHOOK_URLS": "https://h.example/x"})
    env = load_webhook_config(None, {"DOSSIER_WEBHOOK_URLS": "https://a.example/x, http://127.0.0.1:9/y",
                                     "DOSSIER_WEBHOOK_SECRET": SECRET.decode()})
    assert env is not None and env.urls == ("https://a.example/x", "http://127.0.0.1:9/y")
    assert SECRET.decode() not in repr(env) and SECRET.decode() not in json.dumps(env.public())
    with pytest.raises(WebhookConfigError, match="http"):
        load_webhook_config(None, {"DOSSIER_WEBHOOK_URLS": "ftp://h/x", "DOSSIER_WEBHOOK_SECRET": SECRET.decode()})
    path = tmp_path / "hooks.yaml"
    path.write_text(f"format: trust-dossier/webhooks/1\nurls: [https://h.example/x]\nsecret: {SECRET.decode()}\n"
                    "delivery_log: deliveries.jsonl\n")
    path.chmod(0o644)
    with pytest.raises(WebhookConfigError, match="chmod 600"):
        load_webhook_config(path, {})
    path.chmod(0o600)
    loaded = load_webhook_config(path, {})
    assert loaded is not None and loaded.delivery_log == tmp_path / "deliveries.jsonl"
    path.write_text("format: trust-dossier/webhooks/1\nurls: []\n")
    with pytest.raises(WebhookConfigError, match="schemas/webhooks.schema.json"):
        load_webhook_config(path, {})


def _certificate(days_left: float) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "r1")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x0B63).not_valid_before(now - dt.timedelta(days=300))
            .not_valid_after(now + dt.timedelta(days=days_left)).sign(key, hashes.SHA256()))


def test_each_expiry_notice_is_one_event(tmp_path: Path) -> None:
    """The schedule sends a notice once per slot however often the device is polled; the event
    goes with it, so a receiver sees it once."""
    with Receiver(SECRET) as receiver:
        sender = WebhookSender(WebhookConfig(urls=(receiver.url,), secret=SECRET, retry_base_s=0.02))
        alerts = AlertSink(webhooks=sender)
        state: dict[str, Any] = {}
        certificate = _certificate(5.5)
        assert alerts.expiry("r1", "leaf", certificate, state)
        assert not alerts.expiry("r1", "leaf", certificate, state)  # the next poll: already sent
        assert sender.flush(10)
        alerts.close()
    [event] = receiver.accepted.values()
    assert event["type"] == "certificate.expiring" and event["details"]["days_left"] == 5
    assert event["details"]["notice"] == "daily-5" and event["details"]["serial"] == "0B:63"
    assert event["message"].startswith("%SECURITY-CEPKI-1-CERT_EXPIRING_ALERT")
