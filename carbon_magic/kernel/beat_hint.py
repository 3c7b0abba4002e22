"""The carbon-aware hint of a tracker (the grid now against its provider's forecast),
as the panel shows it and the heartbeats carry it to the Carbon sidebar.

The hint depends on the grid intensity and the forecast, which change slowly: the
tracker refreshes the intensity every ``SLOW_REFRESH_S`` seconds and the live providers
fetch a forecast far less often, with the intensity. :class:`HintCache` therefore
computes it at most once every ``SLOW_REFRESH_S`` seconds, and at once when the
provider's answer changes (a new fetch brings a new intensity and forecast) or the
provider is replaced (``%carbon config intensity=...``), not on every heartbeat.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from carbon_magic.engine.tracker import SLOW_REFRESH_S

if TYPE_CHECKING:
    from datetime import datetime

    from carbon_magic.engine.tracker import Tracker

__all__ = ["HintCache", "tracker_hint"]


def tracker_hint(tracker: Tracker) -> str | None:
    """The tracker's carbon-aware hint text, or None: no provider yet (not started), no
    forecast, or any fault reading them (a hint is never worth an exception)."""
    try:
        from carbon_magic.grid.hints import carbon_aware_hint

        provider = tracker.intensity_provider
        if provider is None:
            return None  # not started: no forecast yet
        hint = carbon_aware_hint(tracker.intensity(), provider.forecast())
        return hint.text if hint else None
    except Exception:
        return None


class HintCache:
    """``tracker_hint(tracker)``, recomputed at most every ``refresh_s`` seconds (of
    ``clock``, monotonic), or when the tracker's intensity provider or its intensity
    changes. Thread-safe; ``text()`` never raises."""

    def __init__(
        self,
        tracker: Tracker,
        refresh_s: float = SLOW_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._provider: object = None
        # The intensity the text was made from: gCO2e/kWh and the time it is for (a live
        # value's source and uncertainty age with every reading; they are not compared).
        self._reading: tuple[float, datetime | None] | None = None
        self._due = float("-inf")  # clock() time of the next computation
        self._text: str | None = None

    def text(self) -> str | None:
        """The hint text now (None without a forecast)."""
        with self._lock:
            try:
                provider = self.tracker.intensity_provider
                intensity = self.tracker.intensity() if provider is not None else None
                reading = (intensity.g_per_kwh, intensity.measured_at) if intensity else None
                now = self._clock()
            except Exception:
                return None
            same = provider is self._provider and reading == self._reading
            if same and now < self._due:
                return self._text
            self._provider, self._reading = provider, reading
            self._due = now + self.refresh_s
            self._text = tracker_hint(self.tracker)
            return self._text
