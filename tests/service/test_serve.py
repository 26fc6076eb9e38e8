"""One process polls and serves: `dossier serve --inventory` runs the collector's loop in a
thread while requests are answered; and the command end to end in a real subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from collector.service.app import create_app
from collector.service.settings import ServiceSettings


def test_the_service_polls_its_inventory_and_serves_what_it_stored(collected: Any, tmp_path: Path) -> None:
    settings = ServiceSettings(store=tmp_path / "store", trust_store=collected.trust, inventory=collected.inventory,
                               collect_interval_s=3600)
    app = create_app(settings)
    with TestClient(app) as client:
        loop = app.state.collector_loop
        assert loop.ran.wait(120), "the collector's loop did not finish a run"
        assert loop.runs == 1 and loop.last_error is None
        body = client.get("/api/v1/fleet").json()
    assert body["total"] == 3
    assert body["counts"].get("trusted") == 1  # the other two carry the faults the fixture gave them
    assert not loop._thread.is_alive()  # stopped with the app


def test_dossier_serve_end_to_end(collected: Any, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    tokens = tmp_path / "tokens.json"
    added = subprocess.run([sys.executable, "-m", "dossier_cli", "serve", "--tokens", str(tokens), "token", "add",
                            "ci"], env=env, capture_output=True, text=True, check=True)
    secret = added.stdout.strip()
    server = subprocess.Popen([sys.executable, "-m", "dossier_cli", "serve", "--store", str(collected.store_dir),
                               "--trust-store", str(collected.trust), "--tokens", str(tokens),
                               "--listen", f"127.0.0.1:{port}"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        # The command says it serves once it listens: connections queue from then on.
        assert server.stderr is not None and "serving" in server.stderr.readline()
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/fleet", headers={"Authorization": f"Bearer {secret}"},
                           timeout=60)
        assert answer is not None and answer.status_code == 200 and answer.json()["total"] == 3
        assert "server" not in answer.headers  # uvicorn's banner is not sent
    finally:
        server.terminate()
        server.wait(30)
