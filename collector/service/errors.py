"""The service's one exception root, and the JSON shape of every error it answers."""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["ApiError", "ErrorCode", "ServiceError", "error_body"]


class ErrorCode(enum.StrEnum):
    """Every `code` an API error can carry (schemas/api-error.schema.json lists the same).
    Clients match on them: add codes, never rename one."""

    AUTH_ADMIN_REQUIRED = "auth.admin_required"
    AUTH_INVALID = "auth.invalid"
    AUTH_MISSING = "auth.missing"
    AUTH_SCOPE = "auth.scope"
    DEVICE_UNKNOWN = "device.unknown"
    EAR_NO_KEY = "ear.no_key"
    EAR_NO_OUTPUT = "ear.no_output"
    ENVELOPE_UNKNOWN = "envelope.unknown"
    FILTER_STATE = "filter.state"
    HTTP_ERROR = "http.error"
    METHOD_NOT_ALLOWED = "method.not_allowed"
    PATH_UNKNOWN = "path.unknown"
    QUERY_AS_OF = "query.as_of"
    QUERY_AT = "query.at"
    QUERY_NONCE = "query.nonce"
    QUERY_UNKNOWN = "query.unknown"
    REQUEST_HOST = "request.host"
    REQUEST_INVALID = "request.invalid"
    SEARCH_QUERY = "search.query"
    SERVICE_INTERNAL = "service.internal"
    STORE_UNAVAILABLE = "store.unavailable"
    STORE_UNREADABLE = "store.unreadable"
    TRUSTSTORE_UNAVAILABLE = "truststore.unavailable"
    TRUST_BODY_INVALID = "trust.body_invalid"
    TRUST_CERTIFICATE_INVALID = "trust.certificate_invalid"
    TRUST_FINGERPRINT_MISMATCH = "trust.fingerprint_mismatch"
    TRUST_NOT_ENROLLED = "trust.not_enrolled"
    TRUST_NOT_SAVED = "trust.not_saved"
    TRUST_REPLACE_REQUIRED = "trust.replace_required"
    UPLOAD_EMPTY = "upload.empty"
    UPLOAD_TOO_LARGE = "upload.too_large"
    UPLOAD_UNUSABLE = "upload.unusable"
    WEBHOOKS_INVALID = "webhooks.invalid"
    WEBHOOKS_NOT_EDITABLE = "webhooks.not_editable"
    WEBHOOKS_NOT_SAVED = "webhooks.not_saved"


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
