"""Webhook receivers that misbehave cannot hold the sender: one that drips its answer a byte at
a time (each byte well within the socket timeout) is cut off at the attempt's deadline, and the
next event to another receiver still goes out."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import collector.webhooks as webhooks
from collector.webhooks import EventType, WebhookConfig, WebhookSender
from webhook_receiver import Receiver

SECRET = b"0123456789abcdef-test-secret"
#: The attempt deadline the test sets (the real one is 10 s).
TEST_ATTEMPT_S = 1.0
#: How long the dripping receiver keeps going if nobody cuts it off.
DRIP_FOR_S = 20.0


@pytest.fixture
def dripping_receiver() -> Iterator[str]:
    """An HTTP 'receiver' that answers one header byte every 0.2 s for DRIP_FOR_S."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1)
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                end = time.monotonic() + DRIP_FOR_S
                while time.monotonic() < end and not stop.is_set():
                    conn.sendall(b"X")
                    time.sleep(0.2)
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def test_a_dripping_receiver_is_cut_off_at_the_attempt_deadline(
        dripping_receiver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "ATTEMPT_TIMEOUT_S", TEST_ATTEMPT_S)
    log = tmp_path / "deliveries.jsonl"
    with Receiver(SECRET) as healthy:
        config = WebhookConfig(urls=(dripping_receiver, healthy.url), secret=SECRET, max_attempts=1,
                               delivery_log=log)
        sender = WebhookSender(config)
        try:
            started = time.monotonic()
            sender.emit(EventType.POLL_FAILED, "r1", "timed out", {"reason": "ssh.timeout"})
            assert sender.flush(DRIP_FOR_S / 2), "the sender was still held by the dripping receiver"
            assert time.monotonic() - started < 4 * TEST_ATTEMPT_S + 2
        finally:
            sender.close(timeout=1)
        assert len(healthy.accepted) == 1
    outcomes = {line["url"]: line["outcome"] for line in map(json.loads, log.read_text().splitlines())}
    assert outcomes[dripping_receiver] == "failed"
