"""A webhook receiver for tests: a real HTTP server on loopback that does what the docs ask of
one (check the signature and the timestamp window, deduplicate on the event id)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from collector.webhooks import check_signature


class Receiver:
    """Answers 500 to the first `fail_first` requests, 401 to a bad signature, else 204."""

    def __init__(self, secret: bytes, *, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.requests = 0
        self.rejected = 0
        self.accepted: dict[str, dict[str, Any]] = {}  # event id -> body
        self.duplicates = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests += 1
                    if receiver.requests <= receiver.fail_first:
                        self.send_response(500)
                        self.end_headers()
                        return
                    if not check_signature(receiver.secret, self.headers.get("X-Dossier-Timestamp", ""), body,
                                           self.headers.get("X-Dossier-Signature", "")):
                        receiver.rejected += 1
                        self.send_response(401)
                        self.end_headers()
                        return
                    event = json.loads(body)
                    assert event["id"] == self.headers["X-Dossier-Event-Id"]
                    if event["id"] in receiver.accepted:
                        receiver.duplicates += 1
                    receiver.accepted[event["id"]] = event
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/dossier?token=s3cr3t-query"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
