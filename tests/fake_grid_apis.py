"""Local stand-ins for the Electricity Maps and UK Carbon Intensity APIs.

Each fake is a real ``http.server.ThreadingHTTPServer`` on 127.0.0.1 with an ephemeral
port, served from a daemon thread. Use it as a context manager (or ``start``/``stop``);
``url`` is its base URL. What it serves can be changed while it runs:

    with FakeElectricityMaps(token="t0k3n", intensity=320) as api:
        provider = ElectricityMapsProvider("DE", "t0k3n", fallback, base_url=api.url)
        api.intensity = 120          # the next fetch sees 120 g/kWh
        api.fail(429)                # every request now answers 429 ...
        api.clear_failures()         # ... until this
        api.delay_s = 3              # answers are held back 3 s

``requests`` records every request (method, path with query, headers).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_NOT_SET = object()


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]

    @property
    def route(self) -> str:
        """The path without the query string."""
        return urllib.parse.urlsplit(self.path).path


@dataclass
class _Failure:
    status: int
    body: Any
    prefix: str
    times: int | None
    headers: dict[str, str] = field(default_factory=dict)


class FakeGridServer:
    """Base of the fakes: the server thread, request log, delays and injected failures."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.delay_s = 0.0
        self._failures: list[_Failure] = []
        self._release = threading.Event()  # cuts delays short when the fake stops
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Control ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        if self._server is None:
            raise RuntimeError("the fake server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(
        self,
        status: int,
        *,
        path: str = "",
        body: Any = _NOT_SET,
        times: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer ``status`` to requests whose path starts with ``path`` (all by default),
        ``times`` times (forever by default). ``body``: JSON-able, or ``str``/``bytes``
        sent as is (a malformed answer is ``fail(200, body="{not json")``)."""
        if body is _NOT_SET:
            body = {"error": f"fake error {status}"}
        with self.lock:
            self._failures.append(_Failure(status, body, path, times, dict(headers or {})))

    def malformed(self, *, path: str = "", body: Any = "{not json") -> None:
        """Answer 200 with ``body`` (not JSON by default) to requests under ``path``."""
        self.fail(200, path=path, body=body)

    def clear_failures(self) -> None:
        """Answer normally again."""
        with self.lock:
            self._failures.clear()

    def hits(self, prefix: str = "") -> int:
        """How many requests had a path starting with ``prefix``."""
        with self.lock:
            return sum(1 for r in self.requests if r.path.startswith(prefix))

    # Lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeGridServer:
        """Start serving on 127.0.0.1 with an ephemeral port."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._release.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-grid-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests held back by ``delay_s`` are released."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGridServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Serving ---------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        record = Recorded("GET", handler.path, {k.lower(): v for k, v in handler.headers.items()})
        with self.lock:
            self.requests.append(record)
            delay = self.delay_s
            failure = self._take_failure(record.path)
        if delay > 0 and self._release.wait(delay):
            return  # stopping: drop the connection
        if failure is not None:
            status, body, headers = failure.status, failure.body, failure.headers
        else:
            split = urllib.parse.urlsplit(record.path)
            query = dict(urllib.parse.parse_qsl(split.query))
            status, body = self.route(split.path, query, record.headers)
            headers = {}
        self._send(handler, status, body, headers)

    def _take_failure(self, path: str) -> _Failure | None:
        for failure in self._failures:
            if path.startswith(failure.prefix):
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                return failure
        return None

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str]
    ) -> None:
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout test)

    def route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        """(status, body) for a request; subclasses implement their API."""
        return 404, {"error": "not found"}


def _iso(moment: datetime, *, millis: bool = False) -> str:
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def _hour(now: datetime | None = None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now.replace(minute=0, second=0, microsecond=0)


def _half_hour(now: datetime | None = None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now.replace(minute=now.minute - now.minute % 30, second=0, microsecond=0)


class FakeElectricityMaps(FakeGridServer):
    """Electricity Maps v3: ``/v3/carbon-intensity/latest`` and ``/forecast``.

    Requests without the header ``auth-token: {token}`` get 401. ``intensity`` is the
    latest value (gCO2e/kWh) for any zone asked; ``forecast`` the hourly values from the
    current hour on (an empty list serves an empty forecast); ``forecast_allowed=False``
    answers the forecast with 403, like a key without forecast access.
    """

    def __init__(
        self,
        *,
        token: str = "test-token",
        intensity: float = 320.0,
        forecast: list[float] | None = None,
        forecast_allowed: bool = True,
        estimated: bool = True,
    ) -> None:
        super().__init__()
        self.token = token
        self.intensity = intensity
        self.forecast = list(forecast) if forecast is not None else [320.0, 250.0, 120.0, 200.0]
        self.forecast_allowed = forecast_allowed
        self.estimated = estimated

    def route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        if headers.get("auth-token") != self.token:
            return 401, {"message": "Unauthorized: invalid auth-token"}
        zone = query.get("zone")
        if not zone:
            return 400, {"error": "zone is required"}
        hour = _hour()
        with self.lock:
            intensity, forecast = self.intensity, list(self.forecast)
            allowed, estimated = self.forecast_allowed, self.estimated
        if path == "/v3/carbon-intensity/latest":
            return 200, {
                "zone": zone,
                "carbonIntensity": intensity,
                "datetime": _iso(hour, millis=True),
                "updatedAt": _iso(datetime.now(timezone.utc), millis=True),
                "createdAt": _iso(hour, millis=True),
                "emissionFactorType": "lifecycle",
                "isEstimated": estimated,
                "estimationMethod": "TIME_SLICER_AVERAGE" if estimated else None,
            }
        if path == "/v3/carbon-intensity/forecast":
            if not allowed:
                return 403, {"message": "Forbidden: forecast not included in your plan"}
            return 200, {
                "zone": zone,
                "forecast": [
                    {"carbonIntensity": value, "datetime": _iso(hour + timedelta(hours=i))}
                    for i, value in enumerate(forecast)
                ],
                "updatedAt": _iso(datetime.now(timezone.utc), millis=True),
            }
        return 404, {"error": "not found"}


_REGIONS = {"SW1": (13, "UKPN London", "London"), "EH8": (1, "SSE North", "North Scotland")}
_FW48H = re.compile(r"^/intensity/([^/]+)/fw48h$")
_REGIONAL_FW48H = re.compile(r"^/regional/intensity/([^/]+)/fw48h/postcode/([^/]+)$")


class FakeUKGrid(FakeGridServer):
    """UK Carbon Intensity API: national, regional by outward postcode, and 48 h forecasts.

    ``intensity`` is the national value, ``regional`` maps outward codes to their values
    (unknown codes get 400, as the real API answers); ``forecast`` holds the half-hourly
    values from the requested ``from`` on, for both forecasts. ``forecast_from`` records
    the ``from`` of each forecast request.
    """

    def __init__(
        self,
        *,
        intensity: float = 200.0,
        regional: dict[str, float] | None = None,
        forecast: list[float] | None = None,
        actual: bool = True,
    ) -> None:
        super().__init__()
        self.intensity = intensity
        self.regional = dict(regional) if regional is not None else {"SW1": 180.0, "EH8": 30.0}
        self.forecast = list(forecast) if forecast is not None else [200.0, 150.0, 90.0, 140.0]
        self.actual = actual
        self.forecast_from: list[str] = []

    @staticmethod
    def _period(start: datetime, value: float, actual: float | None) -> dict[str, Any]:
        index = "low" if value < 150 else "moderate" if value < 250 else "high"
        return {
            "from": _iso(start),
            "to": _iso(start + timedelta(minutes=30)),
            "intensity": {"forecast": value, "actual": actual, "index": index},
        }

    def _forecast_periods(self, start_text: str, regional: bool) -> list[dict[str, Any]]:
        start = datetime.strptime(start_text, "%Y-%m-%dT%H:%MZ").replace(tzinfo=timezone.utc)
        with self.lock:
            values = list(self.forecast)
            self.forecast_from.append(start_text)
        periods = []
        for i, value in enumerate(values):
            period = self._period(start + timedelta(minutes=30 * i), value, None)
            if regional:
                del period["intensity"]["actual"]
                period["generationmix"] = [{"fuel": "wind", "perc": 40.0}]
            periods.append(period)
        return periods

    def _region(self, outward: str) -> dict[str, Any] | None:
        with self.lock:
            value = self.regional.get(outward)
        if value is None:
            return None
        regionid, dno, short = _REGIONS.get(outward, (99, "Somewhere DNO", "Somewhere"))
        return {"regionid": regionid, "dnoregion": dno, "shortname": short, "postcode": outward}

    def route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        now = _half_hour()
        if path == "/intensity":
            with self.lock:
                value, actual = self.intensity, self.actual
            return 200, {"data": [self._period(now, value, value if actual else None)]}
        if path.startswith("/regional/postcode/"):
            outward = path.rsplit("/", 1)[1]
            region = self._region(outward)
            if region is None:
                return 400, {"error": {"code": "400 Bad Request", "message": "Invalid postcode"}}
            with self.lock:
                value = self.regional[outward]
            period = self._period(now, value, None)
            del period["intensity"]["actual"]
            period["generationmix"] = [{"fuel": "gas", "perc": 30.0}]
            return 200, {"data": [{**region, "data": [period]}]}
        match = _FW48H.match(path)
        if match:
            return 200, {"data": self._forecast_periods(match.group(1), regional=False)}
        match = _REGIONAL_FW48H.match(path)
        if match:
            region = self._region(match.group(2))
            if region is None:
                return 400, {"error": {"code": "400 Bad Request", "message": "Invalid postcode"}}
            periods = self._forecast_periods(match.group(1), regional=True)
            return 200, {"data": {**region, "data": periods}}
        return 404, {"error": "not found"}


class TricklingServer:
    """A raw TCP server on 127.0.0.1 that answers every connection with ``prefix`` and
    then ``trickle``, one byte every ``every_s`` seconds, staying well inside any socket
    timeout (so only an overall deadline stops a client). ``url`` is its base URL."""

    def __init__(self, prefix: bytes, trickle: bytes, every_s: float = 0.1) -> None:
        import socket

        self.prefix, self.trickle, self.every_s = prefix, trickle, every_s
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, name="trickle", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: Any) -> None:
        with conn:
            try:
                conn.recv(65536)  # the request
                conn.sendall(self.prefix)
                for byte in self.trickle:
                    if self._stop.wait(self.every_s):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return  # the client gave up

    def __enter__(self) -> TricklingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._listener.close()
