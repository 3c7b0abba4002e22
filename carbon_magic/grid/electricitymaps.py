"""Live grid intensity from the Electricity Maps API (v3).

``GET {base}/v3/carbon-intensity/latest?zone=DE`` with the header ``auth-token``, and
``GET {base}/v3/carbon-intensity/forecast?zone=DE`` when the key allows it (a key
without forecast access gets 401/403 there; the provider then uses ``latest`` only).
The token is held in a ``Secret``: it appears in no repr, status, source or error.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from carbon_magic.grid.base import ForecastPoint, IntensityProvider
from carbon_magic.grid.http import FetchError, get_json
from carbon_magic.grid.live import (
    LiveProvider,
    LiveReading,
    Secret,
    malformed,
    number_field,
    parse_utc,
)

DEFAULT_URL = "https://api.electricitymap.org"
MEASURED_UNCERTAINTY = 0.10
ESTIMATED_UNCERTAINTY = 0.15


class ElectricityMapsProvider(LiveProvider):
    """Electricity Maps intensity for one ``zone`` (``"DE"``, ``"US-CAL-CISO"``).

    ``token`` may be empty or ``zone`` ``None``: the provider then serves ``fallback``
    only and its status says what to set. ``live_options`` (cache_s, retry_s, max_stale_s, timeout_s, clock) as for
    ``LiveProvider``.
    Fetching starts in the background at once.
    """

    name = "electricitymaps"
    label = "Electricity Maps"

    def __init__(
        self,
        zone: str | None,
        token: str | None,
        fallback: IntensityProvider,
        *,
        base_url: str = DEFAULT_URL,
        **live_options: Any,
    ) -> None:
        self._zone = zone.strip().upper() if zone and zone.strip() else None
        self._token = Secret((token or "").strip())
        self._base_url = base_url.rstrip("/")
        problem = None
        if not self._token:
            problem = (
                "no API token; set ELECTRICITYMAPS_API_TOKEN "
                "or %carbon config electricitymaps_token=…"
            )
        elif self._zone is None:
            problem = "no zone; set %carbon config zone=DE (or country=DE)"
        super().__init__(fallback, problem=problem, secrets=(self._token.reveal(),), **live_options)
        self._start()

    @property
    def zone(self) -> str | None:
        """The Electricity Maps zone asked for."""
        return self._zone

    def _place(self) -> str:
        return self._zone or ""

    def _get(self, endpoint: str) -> Any:
        query = urllib.parse.urlencode({"zone": self._zone})
        url = f"{self._base_url}/v3/carbon-intensity/{endpoint}?{query}"
        return get_json(
            url, headers={"auth-token": self._token.reveal()}, timeout_s=self._timeout_s
        )

    def _fetch_latest(self) -> LiveReading:
        return parse_latest(self._get("latest"), self._zone or "")

    def _fetch_forecast(self) -> list[ForecastPoint]:
        return parse_forecast(self._get("forecast"))

    def _describe(self, error: FetchError) -> str:
        if error.status == 401:
            return (
                "rejected the API token (HTTP 401); check ELECTRICITYMAPS_API_TOKEN "
                "or %carbon config electricitymaps_token=…"
            )
        if error.status == 403:
            return f"refused zone {self._zone} for this API token (HTTP 403)"
        if error.status in (400, 404):
            return f"does not know zone {self._zone!r} (HTTP {error.status})"
        return super()._describe(error)


def parse_latest(payload: Any, zone: str) -> LiveReading:
    """A ``latest`` answer as a reading; raises a malformed ``FetchError`` on a bad shape."""
    g_per_kwh = number_field(payload, "carbonIntensity", where="latest answer")
    measured_at = parse_utc(payload["datetime"]) if payload.get("datetime") else None
    answered_zone = payload.get("zone") or zone
    if not isinstance(answered_zone, str):
        raise malformed("latest answer has a non-text 'zone'")
    estimated = payload.get("isEstimated") is True
    return LiveReading(
        g_per_kwh=g_per_kwh,
        zone=answered_zone,
        place=answered_zone,
        measured_at=measured_at,
        base_uncertainty=ESTIMATED_UNCERTAINTY if estimated else MEASURED_UNCERTAINTY,
    )


def parse_forecast(payload: Any) -> list[ForecastPoint]:
    """A ``forecast`` answer as points, oldest first; entries without a value are skipped."""
    if not isinstance(payload, dict) or not isinstance(payload.get("forecast"), list):
        raise malformed("forecast answer has no 'forecast' list")
    points = []
    for entry in payload["forecast"]:
        if isinstance(entry, dict) and entry.get("carbonIntensity") is None:
            continue  # a gap in the forecast, not an error
        g_per_kwh = number_field(entry, "carbonIntensity", where="forecast entry")
        points.append(ForecastPoint(at=parse_utc(entry.get("datetime")), g_per_kwh=g_per_kwh))
    return sorted(points, key=lambda point: point.at)
