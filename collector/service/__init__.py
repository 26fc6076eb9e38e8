"""The HTTP service over the store (`dossier serve`): `create_app(settings)` builds the ASGI app.

Parts: `settings` (ServiceSettings), `queries` (StoreQueries: the read-only views the API and
the dashboard pages share), `access` (tokens and scopes as route dependencies), `api` (the
/api/v1/ router), `routes` (the routers the app includes: add yours there), `loop` (the
collector's loop in the same process), `cli` (the command).
"""

from __future__ import annotations

from .settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """`collector.service.app.create_app` (imported on first use: FastAPI is not light)."""
    from .app import create_app as build

    return build(*args, **kwargs)
