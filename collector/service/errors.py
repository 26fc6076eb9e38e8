"""The service's one exception root, and the JSON shape of every error it answers."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "ServiceError", "error_body"]


class ServiceError(Exception):
    """The service cannot start or run as configured (the message says what to change)."""


class ApiError(Exception):
    """A request the API refuses: HTTP `status`, a stable `code`, and what was expected and found."""

    def __init__(self, status: int, code: str, message: str, *, expected: str | None = None,
                 found: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.expected, self.found = expected, found


def error_body(code: str, message: str, *, expected: str | None = None, found: str | None = None) -> dict[str, Any]:
    """An error as JSON (schemas/api-error.schema.json)."""
    return {"error": {"code": code, "message": message, "expected": expected, "found": found}}
