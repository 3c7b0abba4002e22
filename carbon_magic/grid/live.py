"""Background fetching and caching shared by the live intensity providers.

A live provider answers ``current()`` at once from what it already has, and fetches in
a daemon thread:

- the first fetch starts when the provider is created;
- a good value is kept for ``cache_s`` seconds (15 min) before the next fetch;
- after a failure the last good value stays in use, with its age in the source text,
  and the fetch is retried (sooner for a timeout, later for a rate limit or a rejected
  token); the failure is logged once and kept in ``status()``;
- with no good value, or one older than ``max_stale_s`` (6 h), ``current()`` returns the
  static fallback's value and ``status()`` says why.

Uncertainty of a live value (``relative_uncertainty``): the provider's base figure
(±10 % for a measured value, ±15 % for an estimate or forecast of the current period),
widened by 5 percentage points per hour of age, at most ±50 %.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from carbon_magic.grid.base import ForecastPoint, Intensity, IntensityProvider
from carbon_magic.grid.http import MAX_TIMEOUT_S, FetchError

log = logging.getLogger("carbon_magic.grid")

CACHE_S = 15 * 60.0
"""How long a good live value is used before fetching again, seconds."""

MAX_STALE_S = 6 * 3600.0
"""Beyond this age (seconds) a live value is dropped for the static table."""

RETRY_S = 60.0
"""First retry delay after a timeout or network error, seconds (doubles, up to cache_s)."""

RATE_LIMIT_RETRY_S = 5 * 60.0
"""Retry delay after HTTP 429 when the server gives no Retry-After, seconds."""

UNCERTAINTY_PER_HOUR = 0.05
MAX_UNCERTAINTY = 0.5

__all__ = [
    "CACHE_S",
    "MAX_STALE_S",
    "LiveProvider",
    "LiveReading",
    "Secret",
    "aged_uncertainty",
    "format_age",
    "malformed",
    "number_field",
    "parse_utc",
]


class Secret:
    """Holds a credential so that it cannot end up in a repr, a log line or a status."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The credential itself; only for the request header."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class LiveReading:
    """What a provider's fetch found: intensity (gCO2e/kWh) for a zone, as of a time."""

    g_per_kwh: float
    zone: str  # the Intensity zone, e.g. "DE", "GB", "GB:SW1"
    place: str  # how the source text names it, e.g. "DE", "London (SW1)"
    measured_at: datetime | None  # UTC
    base_uncertainty: float  # relative, before ageing


# The dirtiest grids stay under about 1,300 gCO2e/kWh (all-lignite hours); anything far
# above is a broken or hostile answer, and would make every figure wrong.
MAX_PLAUSIBLE_G_PER_KWH = 2000.0


def malformed(detail: str) -> FetchError:
    """A ``FetchError`` for an answer of the wrong shape (raise it)."""
    return FetchError("malformed", detail)


def number_field(obj: Any, key: str, *, where: str = "answer") -> float:
    """``obj[key]`` as a plausible grid intensity (gCO2e/kWh): a finite float from 0 to
    MAX_PLAUSIBLE_G_PER_KWH, or raise a malformed ``FetchError`` that says so."""
    if not isinstance(obj, dict):
        raise malformed(f"{where} is not an object")
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise malformed(f"{where} has no numeric {key!r}")
    value = float(value)
    if not (0.0 <= value <= MAX_PLAUSIBLE_G_PER_KWH):  # also rejects NaN
        raise malformed(
            f"{where} has an implausible {key!r}: {value:g} g/kWh (real grids stay between "
            f"0 and {MAX_PLAUSIBLE_G_PER_KWH:g})"
        )
    return value


def parse_utc(text: Any) -> datetime:
    """An ISO 8601 time (``2026-11-29T06:00Z``, ``…:00.000Z``, ``…+01:00``) as aware UTC.

    Raises a malformed ``FetchError`` when ``text`` is not such a time.
    """
    if not isinstance(text, str):
        raise malformed(f"time {text!r} is not text")
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise malformed(f"time {text!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)  # the APIs speak UTC
    return parsed.astimezone(timezone.utc)


def format_age(age_s: float) -> str:
    """``190`` → ``"3 min old"``; under a minute → ``"<1 min old"``; hours past 90 min."""
    if age_s < 60:
        return "<1 min old"
    if age_s < 90 * 60:
        return f"{int(age_s // 60)} min old"
    return f"{age_s / 3600:.1f} h old"


def aged_uncertainty(base: float, age_s: float) -> float:
    """Relative uncertainty of a value ``age_s`` seconds old whose fresh figure is ``base``."""
    return min(MAX_UNCERTAINTY, base + UNCERTAINTY_PER_HOUR * max(0.0, age_s) / 3600.0)


class LiveProvider:
    """Base of the live providers: the worker thread, cache, errors and fallback.

    Subclasses set ``name`` and ``label`` and implement ``_fetch_latest`` (and
    ``_fetch_forecast`` when the API has one). Both run in the worker thread and raise
    ``FetchError`` on any failure.

    ``fallback`` answers while no live value is usable; it is closed with this provider.
    ``cache_s``, ``retry_s`` and ``max_stale_s`` are seconds; ``timeout_s`` (≤ 2 s)
    bounds each request; ``clock`` must tick like ``time.monotonic`` (tests may shift
    it). ``problem`` marks a provider that cannot fetch at all (missing token or zone):
    it only serves the fallback and says why.
    """

    name = "live"
    label = "live grid API"

    def __init__(
        self,
        fallback: IntensityProvider,
        *,
        cache_s: float = CACHE_S,
        retry_s: float = RETRY_S,
        max_stale_s: float = MAX_STALE_S,
        timeout_s: float = MAX_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        problem: str | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._fallback = fallback
        self._cache_s = float(cache_s)
        self._retry_s = float(retry_s)
        self._max_stale_s = float(max_stale_s)
        self._timeout_s = min(float(timeout_s), MAX_TIMEOUT_S)
        self._clock = clock
        self._secrets = tuple(Secret(s) for s in secrets if s)
        self._cond = threading.Condition()
        self._closed = False
        self._problem = problem
        self._reading: LiveReading | None = None
        self._fetched_at: float | None = None  # clock() of the last good fetch
        self._forecast: list[ForecastPoint] = []
        self._forecast_enabled = True
        self._forecast_note: str | None = None
        self._error: str | None = None  # last fetch failure, user-facing text
        self._failures = 0
        self._logged: set[str] = set()
        self._next_fetch_at = self._clock()
        self._requested = 0  # bumped by refresh()
        self._done = 0  # the request number the last finished attempt had seen
        self._attempts = 0
        self._fetching = False
        self._thread: threading.Thread | None = None
        self._on_value: Callable[[], None] | None = None

    # Subclass hooks -------------------------------------------------------------------

    def _fetch_latest(self) -> LiveReading:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fetch_forecast(self) -> list[ForecastPoint] | None:
        """Forecast points, or ``None`` when this provider has no forecast."""
        return None

    def _place(self) -> str:
        """How status and log lines name the zone before any fetch succeeded."""
        return ""

    def _describe(self, error: FetchError) -> str:
        """What went wrong, one clause without the provider's name (no secrets)."""
        if error.kind == "timeout":
            return f"did not answer within {self._timeout_s:g} s"
        if error.kind == "network":
            return f"could not be reached ({error.detail})"
        if error.kind == "malformed":
            return f"sent an answer that could not be read ({error.detail})"
        if error.status == 401:
            return "refused the request as unauthorised (HTTP 401)"
        if error.status == 429:
            return "rate limit reached (HTTP 429)"
        return f"answered HTTP {error.status}"

    def _title(self) -> str:
        """``"Electricity Maps DE"``: the provider and zone, for status and log lines."""
        return f"{self.label} {self._place()}".strip()

    # Lifecycle ------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the worker (subclasses call this at the end of ``__init__``)."""
        if self._problem is not None:
            self._log_once("problem", self._problem)
            return
        self._thread = threading.Thread(
            target=self._run, name=f"carbon_magic-grid-{self.name}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the worker (it exits after any request in flight) and the fallback.

        Idempotent; ``current()`` keeps answering afterwards.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        try:
            self._fallback.close()
        except Exception:  # closing must not fail the caller
            pass

    @property
    def fallback(self) -> IntensityProvider:
        """The provider answering until a fetch succeeds (and after ``close``)."""
        return self._fallback

    @property
    def fetching(self) -> bool:
        """Whether the background fetch thread runs (False after ``close``)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def refresh(self, wait_s: float = 0.0) -> bool:
        """Ask for a fetch now; wait up to ``wait_s`` seconds for it to finish.

        Returns ``True`` when that fetch has finished (succeeded or failed) within
        ``wait_s``; with the default ``0`` it returns at once (``False``).
        """
        with self._cond:
            if self._closed or self._thread is None:
                return False
            self._requested += 1
            target = self._requested
            self._cond.notify_all()
            if wait_s <= 0:
                return False
            return self._cond.wait_for(lambda: self._done >= target, timeout=wait_s)

    def on_new_value(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback()`` (from the worker thread) after each good fetch, once
        ``current()`` answers with it; ``None`` stops the calls. A callback that raises
        is ignored."""
        with self._cond:
            self._on_value = callback

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds until the first fetch attempt has finished.

        ``True`` when it has (whatever its outcome), when there is nothing to fetch, or
        when the provider is closed.
        """
        with self._cond:
            if self._thread is None:
                return True
            return self._cond.wait_for(lambda: self._attempts > 0 or self._closed, timeout=timeout)

    # The worker -----------------------------------------------------------------------

    def _due(self) -> bool:
        return self._requested > self._done or self._clock() >= self._next_fetch_at

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._due():
                    # Wake at least once a minute so a shifted or suspended clock
                    # cannot keep a stale value forever; current() also nudges.
                    delay = min(60.0, max(0.0, self._next_fetch_at - self._clock()))
                    self._cond.wait(timeout=delay)
                if self._closed:
                    return
                request = self._requested
                self._fetching = True
            try:
                self._attempt()
            finally:
                with self._cond:
                    self._fetching = False
                    self._done = max(self._done, request)
                    self._attempts += 1
                    self._cond.notify_all()

    def _attempt(self) -> None:
        try:
            reading = self._fetch_latest()
        except FetchError as error:
            self._failed(error)
            return
        except Exception as error:  # a bug must not kill the thread or reach a cell
            self._failed(FetchError("malformed", f"{type(error).__name__}: {error}"))
            return
        forecast, note = self._try_forecast()
        now = self._clock()
        with self._cond:
            self._reading = reading
            self._fetched_at = now
            self._error = None
            self._failures = 0
            self._next_fetch_at = now + self._cache_s
            if forecast is not None:
                self._forecast = forecast
            self._forecast_note = note
            callback = self._on_value
        if callback is not None:
            try:
                callback()
            except Exception:  # the tracker's business: never stop the worker
                pass

    def _try_forecast(self) -> tuple[list[ForecastPoint] | None, str | None]:
        """(new points or None to keep the old ones, a note for the status)."""
        if not self._forecast_enabled:
            return None, self._forecast_note
        try:
            points = self._fetch_forecast()
        except FetchError as error:
            if error.status in (401, 403):
                # The key does not include forecasts: use latest only, quietly.
                self._forecast_enabled = False
                return [], "no forecast with this API key"
            return None, f"forecast not updated: {self._scrub(self._describe(error))}"
        except Exception as error:
            return None, f"forecast not updated: {type(error).__name__}"
        if points is None:
            self._forecast_enabled = False
            return [], None
        return sorted(points, key=lambda point: point.at), None

    def _failed(self, error: FetchError) -> None:
        message = self._scrub(self._describe(error))
        with self._cond:
            self._failures += 1
            if error.status == 401 or (error.status == 403 and self._reading is None):
                delay = self._cache_s  # retrying sooner cannot fix a token
            elif error.status == 429:
                delay = error.retry_after_s or min(self._cache_s, RATE_LIMIT_RETRY_S)
            else:
                delay = min(self._cache_s, self._retry_s * 2 ** (self._failures - 1))
            self._next_fetch_at = self._clock() + delay
            self._error = f"{message}; retry in {_short_duration(delay)}"
        self._log_once(error.kind + str(error.status or ""), message)

    def _log_once(self, key: str, message: str) -> None:
        with self._cond:
            if key in self._logged:
                return
            self._logged.add(key)
        log.warning("carbon_magic: %s: %s", self._title(), self._scrub(message))

    def _scrub(self, text: str) -> str:
        from carbon_magic.redact import mask_values

        return mask_values(text, (secret.reveal() for secret in self._secrets))

    # Answers --------------------------------------------------------------------------

    def _usable(self) -> tuple[LiveReading | None, float]:
        """The reading to use now and its age (seconds), after nudging a due fetch."""
        with self._cond:
            reading, fetched_at = self._reading, self._fetched_at
            now = self._clock()
            if not self._closed and not self._fetching and now >= self._next_fetch_at:
                self._cond.notify_all()
        if reading is None or fetched_at is None:
            return None, 0.0
        age = max(0.0, now - fetched_at)
        if age > self._max_stale_s:
            return None, age
        return reading, age

    def current(self) -> Intensity:
        """The last good live value (with its age), else the fallback's. Never blocks."""
        try:
            reading, age = self._usable()
            if reading is None:
                return self._fallback.current()
            return Intensity(
                g_per_kwh=reading.g_per_kwh,
                provider=self.name,
                zone=reading.zone,
                source=f"{self.label} {reading.place}, live, {format_age(age)}",
                relative_uncertainty=aged_uncertainty(reading.base_uncertainty, age),
                measured_at=reading.measured_at,
                # In time.monotonic terms, so Intensity.age_s() agrees with our clock.
                fetched_monotonic=time.monotonic() - age,
            )
        except Exception:  # never raise into the tracker
            return self._fallback.current()

    def forecast(self) -> list[ForecastPoint]:
        """Forecast points from the last good fetch, oldest first (empty if none)."""
        with self._cond:
            return list(self._forecast)

    def status(self) -> str:
        """One line: value, source and age, or why the static fallback is in use."""
        reading, age = self._usable()
        with self._cond:
            error, note, problem = self._error, self._forecast_note, self._problem
            attempts, fetched_at = self._attempts, self._fetched_at
            closed = self._closed
            points = len(self._forecast)
        if reading is not None:
            parts = [
                f"{self.label} {reading.place}: {reading.g_per_kwh:.0f} g/kWh, live, "
                f"{format_age(age)}"
            ]
            if error:
                parts.append(f"last fetch failed: {error}")
            if note:
                parts.append(note)
            elif points:
                parts.append(f"forecast {points} points")
        else:
            if problem:
                why = problem
            elif fetched_at is not None:
                why = f"last live value is {format_age(age)}"
                if error:
                    why += f"; {error}"
            elif error:
                why = error
            elif attempts == 0 and not closed:
                why = "first fetch in progress"
            else:
                why = "no live value"
            try:
                fallback = self._fallback.current().source
            except Exception:
                fallback = "static table"
            parts = [f"{self._title()}: {why}", f"using {fallback}"]
        if closed:
            parts.append("stopped")
        return self._scrub("; ".join(parts))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._place() or self.name}>"


def _short_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
