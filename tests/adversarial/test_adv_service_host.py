"""DNS rebinding against `dossier serve` on loopback without tokens (reading is open there): a
page of another site whose name is made to resolve to 127.0.0.1 sends requests with its own
name as Host; the service answers only requests naming this machine, so such a page can read
nothing of the fleet. With tokens the browser has nothing to send the other site's page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from collector.service.app import create_app
from collector.service.settings import ServiceSettings
from collector.store import Store
from collector_fakes import make_pki
from dossier_cli.main import cli


@pytest.fixture(scope="module")
def open_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("adv-host")
    Store.open(root / "store").close()
    anchor = root / "root.pem"
    anchor.write_bytes(make_pki().root.public_bytes(serialization.Encoding.PEM))
    added = CliRunner().invoke(cli, ["trust", "add", "r1", str(anchor), "--trust-store", str(root / "trust")])
    assert added.exit_code == 0, added.output
    settings = ServiceSettings(store=root / "store", trust_store=root / "trust", listen="127.0.0.1:8080",
                               check_host=True, warm_on_start=False)
    with TestClient(create_app(settings, start_collector=False), base_url="http://127.0.0.1:8080") as client:
        yield client


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "127.0.0.1", "localhost", "[::1]:8080"])
def test_requests_naming_this_machine_are_answered(open_service: TestClient, host: str) -> None:
    assert open_service.get("/api/v1/fleet", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8080", "127.0.0.1.attacker.example:8080",
                                  "localhost.attacker.example", ""])
def test_a_rebound_name_reads_nothing(open_service: TestClient, host: str) -> None:
    for path in ("/api/v1/fleet", "/dashboard", "/openapi.json"):
        answer = open_service.get(path, headers={"Host": host})
        assert answer.status_code == 421, (path, answer.status_code)
        assert answer.json()["error"]["code"] == "request.host"


def test_dossier_serve_checks_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's settings turn the check on (library callers, e.g. tests, choose)."""
    import collector.service.app as service_app
    from collector.service.errors import ServiceError

    seen: list[ServiceSettings] = []

    def capture(settings: ServiceSettings, **_: object) -> None:
        seen.append(settings)
        raise ServiceError("captured")

    monkeypatch.setattr(service_app, "create_app", capture)
    result = CliRunner().invoke(cli, ["serve", "--store", str(tmp_path / "store"), "--tokens",
                                      str(tmp_path / "tokens.json")])
    assert result.exit_code == 2 and "captured" in result.output, result.output
    assert seen and seen[0].check_host is True
