"""The routers `create_app` includes, one line each: a part of the service adds its router here
(its paths, its dependencies), and nothing else in the app changes."""

from __future__ import annotations

from fastapi import APIRouter

from .api import router as api_router
from .dashboard import router as dashboard_router
from .ear_hooks import router as ear_router
from .trust_api import router as trust_router

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    api_router,  # /api/v1/ (collector/service/api.py)
    dashboard_router,  # /dashboard (collector/service/dashboard.py)
    ear_router,  # /.well-known/jwks.json, /api/v1/devices/{name}/ear, /api/v1/admin/webhooks[/settings] (ear_hooks.py)
    trust_router,  # /api/v1/trust, /api/v1/admin/trust/{device} (collector/service/trust_api.py)
]
