"""Distributed collection (opt-in): Celery workers over Redis, a shared PostgreSQL index.

Nothing here is imported by `dossier collect`: celery and psycopg load only for `dossier
worker`, `dossier schedule` and a store opened with a PostgreSQL DSN (`collector.storage.opening`).
"""

__all__: list[str] = []
