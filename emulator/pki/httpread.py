"""Reading an HTTP answer's body within a size cap and a total deadline (DoS bounds shared by
the trust pool download and the SCEP client): a socket timeout alone bounds each read, not a
server that trickles one byte at a time."""

from __future__ import annotations

import http.client
import socket
import time

__all__ = ["read_capped"]

_READ_CHUNK = 16 * 1024


def read_capped(response: http.client.HTTPResponse, max_bytes: int, deadline: float,
                sock: socket.socket | None = None, per_read_timeout: float = 10.0) -> bytes:
    """Read a response body in chunks: at most `max_bytes` + 1 bytes (the caller sees "more than
    the cap"), and raise TimeoutError once the monotonic clock passes `deadline`. With `sock`,
    each read waits at most until the deadline."""
    chunks: list[bytes] = []
    total = 0
    while total <= max_bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the whole transfer took too long")
        if sock is not None:
            sock.settimeout(min(remaining, per_read_timeout))
        chunk = response.read1(min(_READ_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
