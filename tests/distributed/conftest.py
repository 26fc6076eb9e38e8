"""Fixtures for distributed collection: this session's own Redis and PostgreSQL, an emulated fleet."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from services import REQUIRE_SERVICES_ENV, Postgres, ServiceMissing, postgres_server, redis_server  # noqa: E402


def _missing(why: str) -> None:
    if os.environ.get(REQUIRE_SERVICES_ENV):
        pytest.fail(f"{why}; ${REQUIRE_SERVICES_ENV} is set (.ci/run installs redis-server and postgresql)")
    pytest.skip(why)


def _started(server: Any) -> Iterator[Any]:
    """What the service context manager `server` yields, for the session; the tests skip (or fail
    under $DOSSIER_REQUIRE_SERVICES) when the service cannot be started here."""
    try:
        found = server.__enter__()
    except ServiceMissing as exc:
        _missing(str(exc))
    try:
        yield found
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from _started(redis_server())


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install '.[distributed]')")
    yield from _started(postgres_server())
