"""HTTP requests with a deadline for the whole answer and no redirects, for what fetches from or
posts to a URL someone else runs (a JWKS, a webhook receiver).

    deadline = Deadline(10.0)
    try:
        with no_redirect_opener(deadline).open(request, timeout=10.0) as answer: ...
    finally:
        deadline.cancel()
    if deadline.passed: ...   # what was read was cut short

A socket timeout bounds each read, not the answer: a server dripping a byte per read holds the
caller for hours. The deadline shuts the request's connections down when it passes, so every
blocked read returns at once. A redirect is the server's configuration error: not followed
(an https URL sent on to plain http would hand what is fetched to whoever is on the path).
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

__all__ = ["Deadline", "RedirectRefused", "no_redirect_opener"]


class RedirectRefused(urllib.error.HTTPError):
    """The server answered with a redirect, which is not followed."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise RedirectRefused(req.full_url, code, f"redirected to {newurl[:200]} (not followed)", headers, fp)


class Deadline:
    """Shuts down the connections given to `watch` when `seconds` pass (`passed` then True)."""

    def __init__(self, seconds: float) -> None:
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.passed = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.passed:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.passed = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once; its owner closes it
    except OSError:
        pass  # already closed: nothing left to cut off


def no_redirect_opener(deadline: Deadline) -> urllib.request.OpenerDirector:
    """An opener that follows no redirect (RedirectRefused) and whose HTTP and HTTPS
    connections `deadline` cuts off."""

    class Http(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class Https(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(Http, req)

    class HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(Https, req, context=self._context)

    return urllib.request.build_opener(_NoRedirects(), HttpHandler(), HttpsHandler())
