"""Distributed collection's configuration: a YAML file (schemas/distributed.schema.json).

Secrets (the broker URL and the PostgreSQL DSN may hold passwords) come from a file
(`broker_url_file`, `database_dsn_file`) or the environment (`DOSSIER_BROKER_URL`,
`DOSSIER_DATABASE_DSN`), never from the command line; a password written inline in the file is
refused, and neither value is ever logged. Without a configuration nothing here is used:
`dossier collect` stays on one machine with its SQLite index.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CollectorError, StoreError

__all__ = ["CONFIG_ENV", "DistributedConfig", "DistributedConfigError", "database_dsn", "load_config"]

#: The environment variable naming the configuration file (as `--config` does).
CONFIG_ENV = "DOSSIER_DISTRIBUTED_CONFIG"
BROKER_ENV, DSN_ENV = "DOSSIER_BROKER_URL", "DOSSIER_DATABASE_DSN"
#: A configuration or secret file larger than this is not one (bounded read).
MAX_CONFIG_BYTES = 256 * 1024
DEFAULT_QUEUE = "dossier"
#: A device not attempted for more than this many intervals is named by status, metrics and alerts.
STALE_INTERVALS = 2
#: A worker whose heartbeat is older than this many heartbeat periods has stopped.
SILENT_HEARTBEATS = 3
# A user:password@ in a URL, password= in a key/value DSN, or ?password= in a URL's query
# (libpq and redis-py both read it there).
_INLINE_PASSWORD = re.compile(r"://[^/@]*:[^/@]*@|(^|\s|[?&;])password\s*=", re.IGNORECASE)
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class DistributedConfigError(CollectorError):
    """The distributed configuration is missing, unreadable or invalid (exit code 2)."""


@dataclass(frozen=True)
class DistributedConfig:
    """Where the broker, the shared index and the shared files are, and how a fleet is split."""

    broker_url: str = field(repr=False)
    database_dsn: str = field(repr=False)
    store: Path
    trust_store: Path
    inventory: Path
    interval_s: float = 900.0
    chunk_size: int = 25
    #: Inventory group -> queue: a device goes to the queue of its first routed group.
    queues: dict[str, str] = field(default_factory=dict)
    default_queue: str = DEFAULT_QUEUE
    #: Seconds a chunk may stay unacknowledged before Redis hands it to another worker. Longer
    #: than a chunk can take (a redelivery of a live worker's chunk is harmless, the claims skip
    #: its devices, but wasteful); short enough that a dead worker's chunk is taken over soon.
    visibility_timeout_s: float = 600.0
    heartbeat_s: float = 10.0
    concurrency: int = 16
    #: This writer's name (records.d/<writer>.jsonl, its claims and heartbeats).
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    collector_key: Path | None = None
    #: An appraisal policy: each device collected is appraised against it (as `collect --policy`).
    policy: Path | None = None

    def queue_for(self, groups: tuple[str, ...]) -> str:
        """The queue of a device in `groups`."""
        return next((self.queues[group] for group in groups if group in self.queues), self.default_queue)

    @property
    def silent_after_s(self) -> float:
        return self.heartbeat_s * SILENT_HEARTBEATS

    @property
    def stale_after_s(self) -> float:
        return self.interval_s * STALE_INTERVALS


def _read_bounded(path: Path, what: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise DistributedConfigError(f"{what} {path}: expected a readable file, found {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise DistributedConfigError(f"{what} {path}: expected at most {MAX_CONFIG_BYTES} bytes, found more")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DistributedConfigError(f"{what} {path}: expected UTF-8 text, found other bytes") from None


def _secret(document: dict[str, Any], name: str, env: str, where: Path | None) -> str:
    """`name` from `<name>_file`, else $env, else inline (refused when it holds a password)."""
    if document.get(f"{name}_file"):
        base = where.parent if where is not None else Path.cwd()
        value = _read_bounded(base / document[f"{name}_file"], f"{name}_file").strip()
    elif os.environ.get(env):
        value = os.environ[env].strip()
    elif document.get(name):
        value = str(document[name])
        if _INLINE_PASSWORD.search(value):
            raise DistributedConfigError(
                f"{where}: {name}: expected no password written in the configuration, found one; put the "
                f"value in a file named by {name}_file (mode 0600) or in ${env}")
    else:
        raise DistributedConfigError(f"{where or 'the environment'}: expected {name}_file, ${env} or {name}, "
                                     "found none")
    if not value:
        raise DistributedConfigError(f"{where}: {name}: expected a value, found an empty one")
    return value


def load_config(path: Path | None = None, **overrides: Any) -> DistributedConfig:
    """The configuration at `path` (else $DOSSIER_DISTRIBUTED_CONFIG), checked against its schema;
    `overrides` (not None) replace its fields. Raises DistributedConfigError."""
    import jsonschema
    import yaml

    import schemas

    if path is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
    if path is None:
        raise DistributedConfigError(f"expected a distributed configuration (--config or ${CONFIG_ENV}), found none")
    try:
        document = yaml.safe_load(_read_bounded(path, "configuration")) or {}
    except yaml.YAMLError as exc:
        raise DistributedConfigError(f"{path}: expected YAML, found: {exc}") from None
    try:
        jsonschema.validate(document, schemas.load("distributed"))
    except jsonschema.ValidationError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "the document"
        raise DistributedConfigError(f"{path}: {where}: {exc.message}") from None
    base = path.parent
    fields: dict[str, Any] = {
        "broker_url": _secret(document, "broker_url", BROKER_ENV, path),
        "database_dsn": _secret(document, "database_dsn", DSN_ENV, path),
        "store": base / document["store"], "trust_store": base / document["trust_store"],
        "inventory": base / document["inventory"],
    }
    for name in ("interval_s", "chunk_size", "queues", "default_queue", "visibility_timeout_s", "heartbeat_s",
                 "concurrency", "worker_name"):
        if name in document:
            fields[name] = document[name]
    for name in ("collector_key", "policy"):
        if name in document:
            fields[name] = base / document[name]
    fields.update({name: value for name, value in overrides.items() if value is not None})
    for queue in [fields.get("default_queue", DEFAULT_QUEUE), *fields.get("queues", {}).values()]:
        if not _QUEUE_NAME.fullmatch(queue):
            raise DistributedConfigError(f"{path}: expected queue names of letters, digits, '.', '_', '-', found "
                                         f"{queue!r}")
    return DistributedConfig(**fields)


def database_dsn(config_path: Path | None = None) -> str | None:
    """The shared index's DSN when distribution is configured (--config / $DOSSIER_DISTRIBUTED_CONFIG,
    or $DOSSIER_DATABASE_DSN), else None: the local SQLite index."""
    if config_path is not None or os.environ.get(CONFIG_ENV):
        try:
            return load_config(config_path).database_dsn
        except DistributedConfigError as exc:
            raise StoreError(str(exc)) from None
    return os.environ.get(DSN_ENV) or None
