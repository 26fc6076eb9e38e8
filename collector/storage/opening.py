"""The one way commands open a store: local files with SQLite, or the shared PostgreSQL index.

Distribution is opt-in: with no configuration (`--config`, $DOSSIER_DISTRIBUTED_CONFIG or
$DOSSIER_DATABASE_DSN) this is `Store.open`, exactly as on one machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from .interface import EnvelopeStore

__all__ = ["open_store"]


def open_store(root: str | os.PathLike[str], *, create: bool = True, config: Path | None = None,
               dsn: str | None = None) -> EnvelopeStore:
    """The store at `root`: with a PostgreSQL DSN (given, or from the distributed configuration
    or the environment) the shared index over the files at `root`, else the local store.
    Raises StoreError."""
    if dsn is None:
        from ..distributed.config import database_dsn

        dsn = database_dsn(config)
    if dsn is None:
        from ..store import Store

        return Store.open(root, create=create)
    from .postgres import PostgresStore

    return PostgresStore.open_shared(root, dsn, create=create)
