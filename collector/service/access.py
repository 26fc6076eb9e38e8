"""Who may call what: `require(READ)` or `require(ADMIN)` as a route dependency.

A request presents `Authorization: Bearer <secret>`. With no token configured (the service then
listens on loopback only) reading needs none, and admin calls are refused: an admin call must
always name who made it.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError, ErrorCode
from .tokens import ADMIN, READ, SCOPES, Tokens

__all__ = ["ADMIN", "PAGE_COOKIE", "READ", "Caller", "page_token_problem", "require"]

_bearer = HTTPBearer(auto_error=False, description="An API token (`dossier serve token add NAME --scope read|admin`).")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Caller:
    """Who a request is from: a token's name and scope (name None: no tokens configured)."""

    def __init__(self, name: str | None, scope: str) -> None:
        self.name, self.scope = name, scope


def require(scope: str) -> Callable[..., Caller]:
    """A dependency that admits a request holding a token of `scope` (admin includes read)."""

    def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Caller:
        tokens: Tokens = request.app.state.tokens
        if not tokens:
            if scope == READ:
                return Caller(None, READ)
            raise _denied(403, ErrorCode.AUTH_ADMIN_REQUIRED, "this call needs an admin token, and none is configured",
                          expected="an admin token (`dossier serve token add NAME --scope admin`)", found="none")
        if credentials is None and scope == READ and request.cookies.get(PAGE_COOKIE):
            # The dashboard's sign-in cookie, for read calls only (its links to raw evidence):
            # an admin call never rides on a cookie a page could make the browser send.
            credentials = HTTPAuthorizationCredentials(scheme="Cookie", credentials=request.cookies[PAGE_COOKIE])
        if credentials is None:
            raise _denied(401, ErrorCode.AUTH_MISSING, "this call needs an API token",
                          expected="an 'Authorization: Bearer <token>' header", found="no bearer token")
        found = tokens.scope_of(credentials.credentials)
        if found is None:
            raise _denied(401, ErrorCode.AUTH_INVALID, "the API token is not one the service knows",
                          expected="a token from `dossier serve token add`", found="an unknown token")
        name, token_scope = found
        if scope not in SCOPES[token_scope]:
            raise _denied(403, ErrorCode.AUTH_SCOPE, f"this call needs a token of scope {scope}",
                          expected=f"scope {scope}", found=f"scope {token_scope}")
        request.state.caller = name
        return Caller(name, token_scope)

    return check


def _denied(status: int, code: str, message: str, *, expected: str, found: str) -> ApiError:
    error = ApiError(status, code, message, expected=expected, found=found)
    error.headers = _CHALLENGE if status == 401 else None  # type: ignore[attr-defined]
    return error


# --- the dashboard's sign-in (collector/service/dashboard.py) --------------------------------------

#: The cookie holding the dashboard's read token (HttpOnly, SameSite=Strict; Secure over TLS).
PAGE_COOKIE = "dossier_token"


def page_token_problem(request: Request, secret: str | None) -> str | None:
    """Why `secret` (a page's token) does not let its holder read, or None when it does (or when
    no token is configured: reading is open on loopback)."""
    tokens: Tokens = request.app.state.tokens
    if not tokens:
        return None
    if not secret:
        return "this page needs a read token, and none was given"
    found = tokens.scope_of(secret)
    if found is None:
        return "the token is not one the service knows"
    if found[1] != READ:
        # A page keeps its token in the browser's cookie: an admin secret does not belong there
        # (it is never accepted for admin calls from a cookie, but a browser is no secret store).
        return (f"expected a read token for the pages, found a token of scope {found[1]}; add one with "
                "`dossier serve token add NAME --scope read`")
    request.state.caller = found[0]
    return None

