"""The one exception of the NETCONF agent: what to answer as `<rpc-error>`."""

from __future__ import annotations

__all__ = ["RpcError"]


class RpcError(Exception):
    """An `<rpc-error>` to answer: RFC 6241 error-tag, message, and error-info children."""

    def __init__(self, tag: str, message: str, *, error_type: str = "application",
                 info: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message
        self.error_type = error_type
        self.info = info or {}
