"""Live grid intensity for Great Britain from the UK Carbon Intensity API (no key).

National: ``GET {base}/intensity`` and the forecast ``GET {base}/intensity/{from}/fw48h``.
Regional, by outward postcode: ``GET {base}/regional/postcode/{outward}`` and
``GET {base}/regional/intensity/{from}/fw48h/postcode/{outward}``; ``from`` is the
current half hour in UTC, e.g. ``2026-11-29T06:00Z``. Data: CC BY 4.0, National Energy
System Operator (carbonintensity.org.uk).
"""

from __future__ import annotations

import re
import urllib.parse
from datetime import datetime, timezone
from typing import Any

from carbon_magic.grid.base import ForecastPoint, IntensityProvider
from carbon_magic.grid.http import get_json
from carbon_magic.grid.live import (
    LiveProvider,
    LiveReading,
    malformed,
    number_field,
    parse_utc,
)

DEFAULT_URL = "https://api.carbonintensity.org.uk"
ACTUAL_UNCERTAINTY = 0.10
FORECAST_UNCERTAINTY = 0.15

_OUTWARD = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")


def outward_code(postcode: str) -> str:
    """The outward part of a UK postcode: ``"sw1a 1aa"`` → ``"SW1A"``, ``"M1"`` → ``"M1"``.

    Raises ``ValueError`` when ``postcode`` is not a UK postcode or outward code.
    """
    text = " ".join(str(postcode).upper().split())
    outward = text.split(" ")[0] if " " in text else text
    if " " not in text and len(outward) > 4:
        outward = outward[:-3]  # a full postcode written without its space
    if not _OUTWARD.match(outward):
        raise ValueError(
            f"postcode must be a UK postcode or its outward part, e.g. SW1, M1, EH8 "
            f"(got {postcode!r})"
        )
    return outward


def half_hour_utc(now: datetime | None = None) -> str:
    """The start of the current half hour in UTC as the API wants it: ``2026-11-29T06:00Z``."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    floored = now.replace(minute=now.minute - now.minute % 30, second=0, microsecond=0)
    return floored.strftime("%Y-%m-%dT%H:%MZ")


class UKGridProvider(LiveProvider):
    """UK Carbon Intensity for Great Britain, or for the region of ``postcode``.

    A ``postcode`` that is not a UK outward code makes the provider serve ``fallback``
    only, with the reason in its status. ``live_options`` (cache_s, retry_s, max_stale_s, timeout_s, clock) as for
    ``LiveProvider``.
    Fetching starts in the background at once.
    """

    name = "ukgrid"
    label = "UK Carbon Intensity"

    def __init__(
        self,
        postcode: str | None,
        fallback: IntensityProvider,
        *,
        base_url: str = DEFAULT_URL,
        **live_options: Any,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._outward: str | None = None
        problem = None
        if postcode is not None and str(postcode).strip():
            try:
                self._outward = outward_code(postcode)
            except ValueError as error:
                problem = str(error)
        super().__init__(fallback, problem=problem, **live_options)
        self._start()

    @property
    def outward(self) -> str | None:
        """The outward postcode asked for, ``None`` for national figures."""
        return self._outward

    def _place(self) -> str:
        return self._outward or "GB"

    def _get(self, path: str) -> Any:
        return get_json(self._base_url + path, timeout_s=self._timeout_s)

    def _fetch_latest(self) -> LiveReading:
        if self._outward is None:
            return parse_national(self._get("/intensity"))
        path = f"/regional/postcode/{urllib.parse.quote(self._outward)}"
        return parse_regional(self._get(path), self._outward)

    def _fetch_forecast(self) -> list[ForecastPoint]:
        start = half_hour_utc()
        if self._outward is None:
            payload = self._get(f"/intensity/{start}/fw48h")
            return parse_periods(_data(payload), where="forecast")
        path = f"/regional/intensity/{start}/fw48h/postcode/{urllib.parse.quote(self._outward)}"
        region = _region(self._get(path))
        return parse_periods(region.get("data"), where="regional forecast")


def _data(payload: Any) -> Any:
    if not isinstance(payload, dict) or "data" not in payload:
        raise malformed("answer has no 'data'")
    return payload["data"]


def _region(payload: Any) -> dict[str, Any]:
    # /regional/postcode answers a one-element list, the regional forecast an object.
    data = _data(payload)
    if isinstance(data, list):
        if not data:
            raise malformed("answer has no region")
        data = data[0]
    if not isinstance(data, dict):
        raise malformed("region is not an object")
    return data


def _period_value(period: Any, where: str) -> tuple[float, bool]:
    """(gCO2e/kWh, is_actual): the measured ``actual`` where present, else ``forecast``."""
    if not isinstance(period, dict):
        raise malformed(f"{where} period is not an object")
    intensity = period.get("intensity")
    if isinstance(intensity, dict) and intensity.get("actual") is not None:
        return number_field(intensity, "actual", where=f"{where} intensity"), True
    return number_field(intensity, "forecast", where=f"{where} intensity"), False


def _first_period(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise malformed(f"{where} has no periods")
    return data[0]


def parse_national(payload: Any) -> LiveReading:
    """A ``/intensity`` answer as a reading for zone ``GB``."""
    period = _first_period(_data(payload), "national answer")
    g_per_kwh, actual = _period_value(period, "national")
    return LiveReading(
        g_per_kwh=g_per_kwh,
        zone="GB",
        place="GB",
        measured_at=parse_utc(period.get("from")),
        base_uncertainty=ACTUAL_UNCERTAINTY if actual else FORECAST_UNCERTAINTY,
    )


def parse_regional(payload: Any, outward: str) -> LiveReading:
    """A ``/regional/postcode/{outward}`` answer as a reading for zone ``GB:{outward}``."""
    region = _region(payload)
    period = _first_period(region.get("data"), "regional answer")
    g_per_kwh, actual = _period_value(period, "regional")
    name = region.get("shortname")
    place = f"{name} ({outward})" if isinstance(name, str) and name else outward
    return LiveReading(
        g_per_kwh=g_per_kwh,
        zone=f"GB:{outward}",
        place=place,
        measured_at=parse_utc(period.get("from")),
        base_uncertainty=ACTUAL_UNCERTAINTY if actual else FORECAST_UNCERTAINTY,
    )


def parse_periods(data: Any, *, where: str = "forecast") -> list[ForecastPoint]:
    """A list of ``{"from", "intensity": {"forecast", …}}`` periods as points, oldest first."""
    if not isinstance(data, list):
        raise malformed(f"{where} has no list of periods")
    points = []
    for period in data:
        g_per_kwh, _ = _period_value(period, where)
        points.append(ForecastPoint(at=parse_utc(period.get("from")), g_per_kwh=g_per_kwh))
    return sorted(points, key=lambda point: point.at)
