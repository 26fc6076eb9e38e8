"""Fixtures for distributed collection: this session's own Redis and PostgreSQL, an emulated fleet."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from services import REQUIRE_SERVICES_ENV, Postgres, ServiceMissing, postgres_server, redis_server  # noqa: E402


def _missing(why: str) -> None:
    if os.environ.get(REQUIRE_SERVICES_ENV):
        pytest.fail(f"{why}; ${REQUIRE_SERVICES_ENV} is set (.ci/run installs redis-server and postgresql)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    try:
        server = redis_server()
        url = server.__enter__()
    except ServiceMissing as exc:
        _missing(str(exc))
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install '.[distributed]')")
    try:
        server = postgres_server()
        found = server.__enter__()
    except ServiceMissing as exc:
        _missing(str(exc))
    try:
        yield found
    finally:
        server.__exit__(None, None, None)
