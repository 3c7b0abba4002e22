"""The tracker's running accounts: the last raw counters, the cumulative attributed
totals per mode, the session's base, and the live power between ticks.

``advance`` reads the counters and adds the attributed differences to every mode's
totals; ``close_power_segment`` turns the energy since the last segment into the live
power (watts) and a timeline entry. Not thread-safe by itself: the tracker calls it
under its lock.

Units: joules, watts, nanoseconds of ``time.monotonic_ns``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from carbon_magic.engine.intensity_feed import IntensityFeed
from carbon_magic.engine.measurement import Measurement
from carbon_magic.engine.sensor_reading import SensorReader
from carbon_magic.engine.tick_attribution import RawCounters, TickAttributor
from carbon_magic.engine.timeline import Timeline
from carbon_magic.engine.totals import Totals, accumulate, measurement_between
from carbon_magic.sensors.base import GpuUse
from carbon_magic.settings import Settings
from carbon_magic.vocabulary import MODES


class CounterAccounts:
    """Cumulative totals advanced from counter differences, and the live power."""

    def __init__(
        self,
        settings: Settings,
        feed: IntensityFeed,
        reading: Callable[[], SensorReader],
        timeline: Timeline,
    ) -> None:
        """``reading()``: the sensor reader in use (the tracker detects it lazily)."""
        self._settings = settings
        self._feed = feed
        self._reading = reading
        self.timeline = timeline
        # Set by the first ``open`` and kept across stop and start.
        self.totals: dict[str, Totals] = {}
        self.session_base: dict[str, Totals] = {}
        self.raw: RawCounters | None = None
        self.started_ns = 0
        self._attributor = TickAttributor()
        self._segment_start_ns = 0
        self._segment_start_energy_j: dict[str, float] = {}
        self.last_watts: dict[str, float] = {}

    @property
    def opened(self) -> bool:
        """True once the totals exist (the tracker's first start)."""
        return bool(self.totals)

    def open(self, components: list[str]) -> None:
        """Start the accounts from the counters now, every total at zero."""
        raw = self.raw = self.read_raw(with_memory=True)
        self.started_ns = raw.t_ns
        self.totals = {mode: Totals() for mode in MODES}
        self.session_base = {mode: Totals() for mode in MODES}
        self._segment_start_energy_j = dict(self.totals[self._settings.mode].energy_j)
        self._segment_start_ns = raw.t_ns
        self.last_watts = dict.fromkeys(components, 0.0)

    def resume(self) -> None:
        """Count from the counters now: the time since the last reading is not measured."""
        self.raw = self.read_raw()
        self._segment_start_ns = self.raw.t_ns

    def rebase_session(self) -> None:
        """The session counts from the totals now (``%carbon reset``)."""
        self.session_base = {mode: totals.copy() for mode, totals in self.totals.items()}
        self.started_ns = self.now_raw().t_ns

    def forget_gpu_use(self) -> None:
        """GPU use by the kernel's processes is learnt again (new sensors)."""
        self._attributor = TickAttributor()

    def set_gpu_use(self, use: dict[str, GpuUse | None]) -> None:
        """Which GPUs the kernel's processes use now, and how much."""
        self._attributor.set_gpu_use(use)

    def read_raw(self, with_memory: bool = False) -> RawCounters:
        """Every counter now (resident memory too when ``with_memory``)."""
        return self._reading().read(self.raw, with_memory)

    def now_raw(self) -> RawCounters:
        """The last raw reading (there is one once the tracker has started)."""
        if self.raw is None:
            self.raw = self.read_raw(with_memory=True)
        return self.raw

    def advance(self, with_memory: bool = False) -> None:
        """Read counters now and add the attributed differences to both modes' totals."""
        previous, raw = self.now_raw(), self.read_raw(with_memory)
        self.raw = raw
        attributed = self._attributor.attribute(
            previous, raw, self._reading().sensors.total_memory_bytes, self._settings
        )
        if attributed is not None:
            accumulate(
                self.totals, attributed, self._feed.now, self._feed.pue, self._settings.embodied
            )

    def close_power_segment(self, components: list[str]) -> None:
        """The mean power since the last segment ended becomes the live power (and a
        timeline entry); a new segment starts now. Ticks end segments, and so do window
        edges, so that a cell's first beat shows the cell's power and the first beat
        after it the idle power, never an average across the edge. Call after
        ``advance``."""
        raw = self.now_raw()
        totals = self.totals[self._settings.mode]
        dt_s = (raw.t_ns - self._segment_start_ns) / 1e9
        if dt_s > 0:
            self.last_watts = {
                name: (totals.energy_j[name] - self._segment_start_energy_j.get(name, 0.0)) / dt_s
                for name in components
            }
            self.timeline.add(time.time(), dt_s, self.last_watts)
        self._segment_start_energy_j = dict(totals.energy_j)
        self._segment_start_ns = raw.t_ns

    def measurement_between(
        self,
        start: Totals,
        end: Totals,
        mode: str,
        duration_s: float,
        name: str,
        started_at: datetime | None,
        methods: dict[str, str],
    ) -> Measurement:
        """The ``Measurement`` between two snapshots of the totals, at the intensity and
        PUE in use now."""
        return measurement_between(
            start,
            end,
            name=name,
            started_at=started_at,
            mode=mode,
            duration_s=duration_s,
            methods=methods,
            intensity=self._feed.now,
            pue=self._feed.pue,
        )
