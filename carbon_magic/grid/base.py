"""What a grid carbon-intensity provider gives the tracker."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Intensity:
    """A grid carbon intensity and where it came from.

    ``relative_uncertainty`` is the half-width of the range as a fraction (0.3 means
    value ± 30 %); ``low``/``high`` may be set explicitly for asymmetric ranges.
    """

    g_per_kwh: float
    provider: str  # "static", "electricitymaps", "ukgrid", "world-average"
    zone: str  # "FR", "aws:eu-west-3", "GB", "WORLD"
    source: str  # human text: provider, zone, year or age, dataset
    relative_uncertainty: float
    year: int | None = None
    measured_at: datetime | None = None  # UTC time the value is for (live providers)
    fetched_monotonic: float | None = field(default=None, compare=False)
    low_g_per_kwh: float | None = None
    high_g_per_kwh: float | None = None

    @property
    def range_g_per_kwh(self) -> tuple[float, float]:
        """(low, high) gCO2e/kWh."""
        low = self.low_g_per_kwh
        high = self.high_g_per_kwh
        if low is None:
            low = self.g_per_kwh * (1 - self.relative_uncertainty)
        if high is None:
            high = self.g_per_kwh * (1 + self.relative_uncertainty)
        return (max(0.0, low), high)

    def age_s(self) -> float | None:
        """Seconds since a live value was fetched, ``None`` for static values."""
        if self.fetched_monotonic is None:
            return None
        return max(0.0, time.monotonic() - self.fetched_monotonic)


@dataclass(frozen=True)
class ForecastPoint:
    """One forecast value: intensity expected from ``at`` (UTC)."""

    at: datetime
    g_per_kwh: float


class IntensityProvider(Protocol):
    """Answers at once from what it has; any fetching happens in the background."""

    name: str

    def current(self) -> Intensity:
        """The intensity to use now. Never blocks on the network, never raises."""

    def forecast(self) -> list[ForecastPoint]:
        """Known forecast points, oldest first; empty when none is available."""

    def status(self) -> str:
        """One line for ``%carbon status`` (source, age, last error if any)."""

    def close(self) -> None:
        """Stop background work. Idempotent."""
