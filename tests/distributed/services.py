"""Private Redis and PostgreSQL servers for tests and benchmarks: free ports, temp folders.

Never the machine's own services: each server is started here and stopped when done. As root,
PostgreSQL runs as the `postgres` user (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

#: Set by .ci/run: there a missing Redis or PostgreSQL fails the tests that need them.
REQUIRE_SERVICES_ENV = "DOSSIER_REQUIRE_SERVICES"
#: Seconds a server gets to accept connections (it takes well under one here).
START_TIMEOUT_S = 30


class ServiceMissing(RuntimeError):
    """A binary the service needs is not installed."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before accepting connections")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not accept connections on port {port} within {START_TIMEOUT_S} s")


@contextmanager
def redis_server() -> Iterator[str]:
    """A Redis on a free port without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceMissing("redis-server is not installed (Debian: redis-server)")
    port = free_port()
    folder = tempfile.mkdtemp(prefix="dossier-redis-")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise ServiceMissing("PostgreSQL's initdb is not installed (Debian: postgresql)")
    return Path(initdb).parent


@dataclass(frozen=True)
class Postgres:
    dsn: str
    port: int


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL cluster in a temp folder on a free port, trusting local connections."""
    bin_dir = _postgres_bin()
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="dossier-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceMissing("running as root and there is no `postgres` user to run PostgreSQL as") from None
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    port = free_port()
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    process = subprocess.Popen([*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder}",
                                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=200"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, "postgres")
        deadline = time.monotonic() + START_TIMEOUT_S
        # Listening is not ready: it refuses connections while it starts up.
        while subprocess.run([str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"postgres on port {port} did not become ready within {START_TIMEOUT_S} s")
            time.sleep(0.05)
        yield Postgres(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", port)
    finally:
        # "fast" shutdown (the default "smart" one waits for every client to leave); through
        # pg_ctl, as the user it runs as (runuser does not pass every signal on).
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"],
                       capture_output=True, timeout=60)
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(server: Postgres, name: str) -> str:
    """A fresh database on `server` (one per test); its DSN."""
    import psycopg

    with psycopg.connect(server.dsn, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return server.dsn.replace("dbname=postgres", f"dbname={name}")
