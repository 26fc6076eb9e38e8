"""Distributed collection's configuration: a password in a URL's query string
(`?password=`, which libpq and redis-py both accept) is as much a password written in the file as
`user:password@` is, and is refused the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collector.distributed.config import DistributedConfigError, load_config


def _config(tmp_path: Path, **fields: object) -> Path:
    document = {"store": "store", "trust_store": "trust", "inventory": "inventory.yaml", **fields}
    path = tmp_path / "distributed.yaml"
    path.write_text(yaml.safe_dump(document), "utf-8")
    return path


@pytest.mark.parametrize(("broker_url", "database_dsn"), [
    ("redis://redis:6379/0?password=hunter2", "host=db dbname=d"),
    ("redis://redis:6379/0", "postgresql://dossier@db/d?sslmode=require&password=hunter2"),
    ("redis://redis:6379/0", "postgresql://dossier@db/d?PASSWORD=hunter2"),
])
def test_a_password_in_a_url_query_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker_url: str,
                                              database_dsn: str) -> None:
    monkeypatch.delenv("DOSSIER_BROKER_URL", raising=False)
    monkeypatch.delenv("DOSSIER_DATABASE_DSN", raising=False)
    with pytest.raises(DistributedConfigError, match="expected no password written in the configuration") as caught:
        load_config(_config(tmp_path, broker_url=broker_url, database_dsn=database_dsn))
    assert "hunter2" not in str(caught.value)
