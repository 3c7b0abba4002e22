"""A tiny JSON-over-HTTP GET for the grid APIs, on the standard library only.

Everything that can go wrong becomes one ``FetchError`` whose message is safe to show:
it never contains request headers (where API tokens travel).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from carbon_magic._version import __version__

MAX_TIMEOUT_S = 2.0
"""No request waits longer than this, seconds: a grid value is never worth a stall."""

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Answers larger than this are refused as malformed (a 48 h forecast is ~50 kB)."""

_CHUNK_BYTES = 64 * 1024
_SAFE_REDIRECT_HEADERS = {"accept", "user-agent"}


class FetchError(Exception):
    """A failed fetch, sorted into what a user can act on.

    ``kind`` is ``"timeout"``, ``"network"``, ``"http"`` (see ``status``) or
    ``"malformed"`` (the answer was not the JSON we expect). ``retry_after_s`` is the
    server's ``Retry-After`` in seconds when it sent one. ``detail`` is short and
    never contains request headers.
    """

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after_s = retry_after_s


class _NoTokenLeakRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry credentials to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old_host = urllib.parse.urlsplit(req.full_url).netloc.lower()
            new_host = urllib.parse.urlsplit(new.full_url).netloc.lower()
            if old_host != new_host:
                for name in list(new.headers):
                    if name.lower() not in _SAFE_REDIRECT_HEADERS:
                        del new.headers[name]
        return new


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare for APIs; the caller's backoff applies


class _Deadline:
    """One overall deadline for a request: when it passes, every socket the request
    opened is shut down, which wakes a read blocked on a server trickling bytes (each
    byte arriving within the socket timeout would otherwise keep it waiting)."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


def _deadline_handlers(deadline: _Deadline) -> list[urllib.request.BaseHandler]:
    """HTTP and HTTPS handlers whose connections report their sockets to ``deadline``."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def __init__(self, context: ssl.SSLContext | None = None) -> None:
            super().__init__(context=context)
            self.context = context  # None: the library's default verification

        def https_open(self, req: Any) -> Any:
            return self.do_open(SecureConnection, req, context=self.context)

    return [Handler(), SecureHandler()]


def get_json(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = MAX_TIMEOUT_S,
) -> Any:
    """GET ``url`` and return its decoded JSON body.

    ``timeout_s`` (seconds, capped at ``MAX_TIMEOUT_S``) is one deadline for the whole
    request: connecting, the status line and headers, and the body, however slowly a
    server trickles them. Name resolution is done by the operating system and is not
    bounded, so call this from a background thread only.

    Raises ``FetchError``: ``timeout``, ``network``, ``http`` (non-2xx, with
    ``status``) or ``malformed`` (not JSON, or too large).
    """
    timeout_s = max(0.001, min(float(timeout_s), MAX_TIMEOUT_S))
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, method="GET")
    request.add_header("Accept", "application/json")
    request.add_header("User-Agent", f"carbon_magic/{__version__}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    watchdog = _Deadline(timeout_s)
    handlers: list[urllib.request.BaseHandler] = [
        _NoTokenLeakRedirect(),
        *_deadline_handlers(watchdog),
    ]
    if _is_loopback(url):
        # A local service is never reached through a proxy.
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = _read_body(response, deadline, timeout_s)
    except FetchError:
        raise
    except Exception as error:
        if watchdog.expired:
            raise FetchError("timeout", f"no complete answer within {timeout_s:g} s") from None
        mapped = _fetch_error(error, timeout_s)
        if mapped is None:
            raise
        raise mapped from None
    finally:
        watchdog.cancel()
    if watchdog.expired:  # a body cut short at the deadline may still parse
        raise FetchError("timeout", f"no complete answer within {timeout_s:g} s")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FetchError("malformed", "the answer is not JSON") from None


def _fetch_error(error: Exception, timeout_s: float) -> FetchError | None:
    """The FetchError for what urllib or http.client raised; None for anything else."""
    if isinstance(error, urllib.error.HTTPError):
        retry = _retry_after(error.headers)
        error.close()
        return FetchError("http", f"HTTP {error.code}", status=error.code, retry_after_s=retry)
    if isinstance(error, urllib.error.URLError):
        if isinstance(error.reason, TimeoutError):
            return FetchError("timeout", f"no answer within {timeout_s:g} s")
        return FetchError("network", str(error.reason))
    if isinstance(error, TimeoutError):
        return FetchError("timeout", f"no answer within {timeout_s:g} s")
    if isinstance(error, (OSError, ValueError, http.client.HTTPException)):
        # ValueError: a URL urllib cannot use (bad scheme, bad port); HTTPException:
        # a broken answer (bad status line, connection cut mid-body).
        return FetchError("network", str(error) or type(error).__name__)
    return None


def _read_body(response: Any, deadline: float, timeout_s: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise FetchError("timeout", f"no complete answer within {timeout_s:g} s")
        chunk = response.read(_CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise FetchError("malformed", f"the answer is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
