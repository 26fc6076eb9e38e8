"""`dossier ear verify --jwks URL` against hostile JWKS hosts: a redirect is not followed (an
https URL sent on to plain http would hand the key set to whoever is on the path, and with it
the EARs it verifies), and an answer dripped a byte at a time ends at the fetch's deadline."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

import verifier.ear as ear
from verifier.ear import EarInputError, load_jwks

#: The fetch deadline the test sets (the real one is 10 s).
TEST_DEADLINE_S = 1.0


def _jwks() -> bytes:
    key = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    return json.dumps({"keys": [{**key.as_dict(private=False), "kid": "k1"}]}).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/jwks.json")
            self.end_headers()
        elif self.path == "/jwks.json":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            for byte in self.body[:100]:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def jwks_host() -> Iterator[str]:
    _Handler.body = _jwks()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_jwks_url_is_fetched(jwks_host: str) -> None:
    assert load_jwks(f"{jwks_host}/jwks.json")["keys"][0]["kid"] == "k1"


def test_a_redirect_is_not_followed(jwks_host: str) -> None:
    with pytest.raises(EarInputError, match="redirect"):
        load_jwks(f"{jwks_host}/redirect")


def test_a_dripped_answer_ends_at_the_deadline(jwks_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ear, "JWKS_TIMEOUT_S", TEST_DEADLINE_S)
    started = time.monotonic()
    with pytest.raises(EarInputError, match="within"):
        load_jwks(f"{jwks_host}/drip")
    assert time.monotonic() - started < TEST_DEADLINE_S + 2
