"""The service's ASGI application: `create_app(settings)` builds it, the routers of
`collector.service.routes.ROUTERS` are included, errors are answered as JSON
(schemas/api-error.schema.json) and never as a bare 500 page.

Routers reach what they need through `request.app.state`: `settings` (ServiceSettings),
`queries` (StoreQueries, the read-only views of the store), `tokens` (Tokens); they protect
themselves with `Depends(require(READ))` or `Depends(require(ADMIN))` from
`collector.service.access`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..inventory import load_inventory
from ..storage.opening import open_store
from .errors import ApiError, ErrorCode, ServiceError, error_body
from .queries import QueryError, StoreQueries, inventory_info
from .schemas import response_schema
from .settings import ServiceSettings, is_loopback
from .tokens import Tokens

__all__ = ["create_app"]

log = logging.getLogger("collector.service")
API_VERSION = "1"


def create_app(settings: ServiceSettings, *, tokens: Tokens | None = None, start_collector: bool = True) -> FastAPI:
    """The service over `settings.store`; raises ServiceError for a store, inventory or tokens
    file it cannot use. With `settings.inventory` and `start_collector`, the collector's loop
    runs in a thread while the app is served (started and stopped with it)."""
    from ..errors import CollectorError
    from .routes import ROUTERS

    tokens = tokens if tokens is not None else Tokens.load(settings.tokens_file)
    settings.check(has_tokens=bool(tokens))
    try:
        # Serving alone reads an existing store; polling too may start a new one.
        store = open_store(settings.store, create=settings.inventory is not None,
                           config=settings.distributed_config)
        inventory = load_inventory(settings.inventory) if settings.inventory is not None else None
    except CollectorError as exc:
        raise ServiceError(str(exc)) from None
    queries = StoreQueries(store, settings.trust_store,
                           inventory=inventory_info(inventory.devices) if inventory is not None else None)
    try:
        queries.trust_store()  # fail closed: without one, nothing stored could be shown as verified
    except QueryError as exc:
        store.close()
        raise ServiceError(exc.message) from None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = None
        if inventory is not None and start_collector:
            from .loop import CollectorLoop

            from .ear_hooks import EarService

            loop = CollectorLoop(settings, inventory, alerts=EarService.of(app).alerts)  # webhooks beside syslog
            loop.start()
        app.state.collector_loop = loop
        if settings.warm_on_start:
            threading.Thread(target=queries.warm, name="dossier-serve-warm", daemon=True).start()
        try:
            yield
        finally:
            if loop is not None:
                loop.stop()
            from .ear_hooks import close_ear_service

            close_ear_service(app)  # the webhook sender may still issue an EAR from the store
            store.close()

    app = FastAPI(title="trust-dossier service", version=API_VERSION, lifespan=lifespan,
                  description="The fleet's trust posture over the envelope store (docs/service.md).",
                  docs_url=None, redoc_url=None)
    app.state.settings, app.state.queries, app.state.tokens = settings, queries, tokens
    app.state.collector_loop = None
    _install_error_handlers(app)
    if settings.check_host and not tokens and is_loopback(settings.host_port[0]):
        app.add_middleware(_LoopbackHostOnly)
    for router in ROUTERS:
        app.include_router(router)
    _document_errors_as_answered(app)
    return app


#: The names a request to a loopback service may give as its Host (with or without a port).
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


class _LoopbackHostOnly:
    """Answers 421 to a request whose Host is not one of `_LOOPBACK_NAMES` (DNS rebinding: a
    page of another site whose name now resolves to 127.0.0.1 names its own site)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if host.rsplit(":", 1)[-1].isdigit() and not host.endswith("]") else host
            if name not in _LOOPBACK_NAMES:
                answer = _error(421, ErrorCode.REQUEST_HOST, "this service answers requests to this machine only",
                                expected="Host: 127.0.0.1, localhost or [::1] (with the port)",
                                found=_short(host) or "no Host")
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _document_errors_as_answered(app: FastAPI) -> None:
    """FastAPI documents a 422 of its own for every operation; this app answers an invalid
    request with 400 and the error schema instead, so the document says so."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    responses.setdefault("400", {"description": "Bad request", "content": {
                        "application/json": {"schema": response_schema("api-error")}}})
            for name in ("HTTPValidationError", "ValidationError"):
                document.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.expected, exc.found, getattr(exc, "headers", None))

    @app.exception_handler(QueryError)
    async def query_error(request: Request, exc: QueryError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.expected, exc.found)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        found = first.get("input")
        return _error(400, ErrorCode.REQUEST_INVALID, f"{where}: {first.get('msg', 'invalid')}",
                      expected=str(first.get("msg", "a valid request")),
                      found=None if found is None else _short(found))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: ErrorCode.PATH_UNKNOWN, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code, ErrorCode.HTTP_ERROR)
        expected = "a path of the API (/openapi.json lists them)" if exc.status_code == 404 else None
        return _error(exc.status_code, code, str(exc.detail), expected, request.url.path if expected else None,
                      exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the caller's mistake: logged with its traceback, answered without it.
        log.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, ErrorCode.SERVICE_INTERNAL, "the service failed to answer; its log says why",
                      expected="an answer", found=type(exc).__name__)


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _error(status: int, code: str, message: str, expected: str | None = None, found: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, expected=expected, found=found), status_code=status,
                        headers=headers)
