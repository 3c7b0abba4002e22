"""The tracker: one per process, a light background thread, windows from counters.

Accounting is done by *advancing* cumulative, attributed totals from raw counter
differences (RAPL/NVML joules, busy CPU seconds, the kernel tree's CPU seconds). The
background thread advances every ``interval``; ``begin``/``end`` of a window advance
too, so a window's figures are exact differences of counters read at its edges. A
late or starved background thread (a Python cell holding the GIL) only makes the
live display coarser; it never changes a window's energy.

Devices come from ``sensors.detect(settings)`` behind one protocol, so the tracker never
names a vendor. Here is the state the thread and the windows share; the parts are:

- ``sensor_reading``: every counter at one instant, failing sources taken out;
- ``counter_accounts``: the raw counters, the totals they advance and the live power;
- ``tick_attribution``: a tick's counter differences charged to each mode;
- ``intensity_feed``: the grid intensity and PUE each tick is converted at;
- ``totals``: the cumulative totals, and the ``Measurement`` between two of them;
- ``wake``: when the thread ticks (only when someone looks) and who hears it;
- ``windows``: the ``Window`` and ``LiveReading`` handed out;
- ``accounting``: the pure arithmetic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from carbon_magic.engine.counter_accounts import CounterAccounts
from carbon_magic.engine.intensity_feed import IntensityFeed
from carbon_magic.engine.measurement import Measurement
from carbon_magic.engine.sensor_reading import SensorReader
from carbon_magic.engine.timeline import Timeline
from carbon_magic.engine.totals import Totals
from carbon_magic.engine.wake import WakeSchedule
from carbon_magic.engine.windows import LiveReading, Window, fill
from carbon_magic.grid import provider_settings
from carbon_magic.grid.base import Intensity, IntensityProvider
from carbon_magic.sensors.base import SensorStatus
from carbon_magic.settings import Settings

if TYPE_CHECKING:
    from carbon_magic.cpu_model.power import CpuPowerModel
    from carbon_magic.sensors import Sensors

__all__ = ["SLOW_REFRESH_S", "Tracker", "get_tracker"]

log = logging.getLogger("carbon_magic")

# How often the slowly changing inputs are read again: the kernel's descendants, the
# GPUs they use, resident memory (a level, not a counter) and the grid intensity.
# Reading them on every tick would cost most of an idle tick.
SLOW_REFRESH_S = 5.0
# Settings a change of which calls for detecting the sensors again.
SENSOR_SETTINGS = frozenset({"powercap_root", "rapl_psys", "cpu_idle_w", "cpu_max_w", "gpus"})


class Tracker:
    """Measures energy and emissions of the process (and its children) or the machine.

    Thread-safe. Start it once per process (``get_tracker()``); ``start``/``stop`` are
    idempotent. Faults inside never reach callers: a failing sensor is disabled with one
    message (kept in ``notices`` and logged).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        sensors_factory: Callable[[Settings], Sensors] | None = None,
    ) -> None:
        """``sensors_factory(settings) -> sensors.Sensors`` replaces ``sensors.detect``
        (tests inject sources built over fake hardware)."""
        self.settings = settings or Settings()
        self._sensors_factory = sensors_factory
        self._lock = threading.RLock()
        self._schedule = WakeSchedule()
        self._schedule.on_fork_child = self._forked
        self.notices: list[str] = []
        self.timeline = Timeline()
        self._reader: SensorReader | None = None
        self._running = False
        self._next_slow_refresh = 0.0
        self._feed = IntensityFeed(self.settings, self.notice, self.wake)
        self._accounts = CounterAccounts(self.settings, self._feed, self._reading, self.timeline)
        self.started_at: datetime | None = None
        self.settings.on_change(self._settings_changed)

    # ----------------------------------------------------------------- set-up

    def _setup(self) -> SensorReader:
        """Detect sensors and models (once, and again when sensor settings change)."""
        if self._reader is not None:
            self._reader.sensors.close()  # re-detecting after a settings change
        if self._sensors_factory is not None:
            sensors = self._sensors_factory(self.settings)
        else:
            from carbon_magic.sensors import detect

            sensors = detect(self.settings)
        self._reader = SensorReader(sensors, self.notice, time.monotonic_ns)
        self._accounts.forget_gpu_use()  # learnt again (refreshed slowly)
        return self._reader

    def _reading(self) -> SensorReader:
        """The reader over the sensors in use (detected on first use)."""
        with self._lock:
            return self._reader if self._reader is not None else self._setup()

    @property
    def sensors(self) -> Sensors:
        """The ``sensors.Sensors`` in use (detected on first use)."""
        return self._reading().sensors

    @property
    def cpu_power(self) -> CpuPowerModel:
        """The CPU's load→power model (``cpu_power.CpuPowerModel``)."""
        return self.sensors.cpu_power

    def notice(self, message: str) -> None:
        """Report a problem once: kept in ``notices`` (status, doctor) and logged."""
        if message not in self.notices:
            self.notices.append(message)
            log.warning("carbon_magic: %s", message)

    # -------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        """True while the background thread runs."""
        return self._running

    def start(self) -> Tracker:
        """Start measuring (idempotent). Returns self."""
        with self._lock:
            if self._running:
                return self
            self._reading()  # sensors detected on first start
            self._feed.start()
            if not self._accounts.opened:
                self._accounts.open(self.components())
                self.started_at = datetime.now(timezone.utc)
                self._next_slow_refresh = 0.0
            else:
                self._accounts.resume()  # the stopped period is not measured
            self._running = True
            self._schedule.start_thread(self._run)
        return self

    def _forked(self) -> None:
        """In a forked child: no thread came along, so the tracker is stopped there."""
        self._running = False

    def stop(self) -> None:
        """Stop the background thread (idempotent). Totals and timeline are kept."""
        with self._lock:
            if not self._running:
                return
            self._accounts.advance()
            self._running = False
        self._schedule.join_thread(timeout_s=5)
        self._feed.close()

    def reset(self) -> None:
        """Zero the session totals and the timeline. Open windows are unaffected: the
        cumulative totals keep running and the session is counted from a new base."""
        with self._lock:
            if not self._accounts.opened:
                return
            if self._running:
                self._accounts.advance()
            self._accounts.rebase_session()
            self.started_at = datetime.now(timezone.utc)
            self.timeline.clear()

    def close(self) -> None:
        """Stop and release sensors (vendor libraries, kept-open files)."""
        self.stop()
        if self._reader is not None:
            self._reader.sensors.close()

    def add_listener(self, listener: Callable[[LiveReading], None], watching: bool = True) -> None:
        """Call ``listener(reading)`` from the tracker thread after every tick.

        A ``watching`` listener (a live view) keeps the thread ticking every
        ``interval``; one that only needs the idle heartbeat (``watching=False``, e.g.
        the ledger heartbeat) lets it sleep ``IDLE_TICK_S`` while no window is open. A
        listener that raises is reported once and removed; it never stops the tracker.
        """
        self._schedule.add_listener(listener, watching)

    def remove_listener(self, listener: Callable[[LiveReading], None]) -> None:
        """Undo ``add_listener`` (no error when absent)."""
        self._schedule.remove_listener(listener)

    def wake(self) -> None:
        """Make the background thread tick now."""
        self._schedule.wake()

    def longest_sleep_s(self) -> float:
        """The longest the background thread sleeps between ticks while no one watches
        (seconds): ``IDLE_TICK_S``, or ``interval`` when that is longer."""
        return self._schedule.idle_sleep_s(self.settings.interval)

    def call_soon(self, task: Callable[[], None]) -> None:
        """Run ``task()`` in the tracker thread before its next tick (errors are
        reported once and ignored). Runs at once when the tracker is stopped."""
        if not self._running:
            task()
            return
        self._schedule.call_soon(task)

    # ------------------------------------------------------------- the thread

    @property
    def thread(self) -> threading.Thread | None:
        """The background thread (None before the first start)."""
        return self._schedule.thread

    def next_sleep_s(self) -> float:
        """Seconds the background thread sleeps before its next tick, as things are now:
        ``interval`` while watched, the idle heartbeat otherwise (``wake.WakeSchedule``)."""
        return self._schedule.sleep_s(self.settings.interval, self.sensors.sources())

    def _run(self) -> None:
        self._schedule.run(self.next_sleep_s, self._tick_listened, self.notice)

    def _tick_listened(self, listening: bool) -> LiveReading | None:
        return self.tick_now(with_reading=listening)

    def tick_now(self, with_reading: bool = True, slow: bool | None = None) -> LiveReading | None:
        """One tick, here and now, as the background thread ticks: advance and record the
        power since the last tick. Every ``SLOW_REFRESH_S`` (or when ``slow`` is True)
        also re-read the slowly changing inputs (True: now, False: not now). The live
        reading is built only ``with_reading`` (someone listens); None otherwise."""
        now = time.monotonic()
        if slow is None:
            slow = now >= self._next_slow_refresh
        intensity = self._feed.now
        if slow:
            self._next_slow_refresh = now + SLOW_REFRESH_S
            self.sensors.process_tree.refresh_children()
            self._refresh_gpu_use()
            intensity = self._feed.latest()
        elif self._feed.has_news:  # a live value just arrived: account at it from now
            intensity = self._feed.latest()
        with self._lock:
            self._accounts.advance(with_memory=slow)  # so far at the previous intensity
            self._feed.switch(intensity, self._accounts.now_raw().t_ns)
            self._accounts.close_power_segment(self.components())
            if not with_reading:
                return None
            session = self._session_so_far()
        return LiveReading(datetime.now(timezone.utc), dict(self._accounts.last_watts), session)

    def _refresh_gpu_use(self) -> None:
        use = self._reading().gpu_use()
        if use is not None:
            with self._lock:
                self._accounts.set_gpu_use(use)

    def _measurement_between(
        self,
        start: Totals,
        end: Totals,
        mode: str,
        duration_s: float,
        name: str,
        started_at: datetime | None,
    ) -> Measurement:
        return self._accounts.measurement_between(
            start, end, mode, duration_s, name, started_at, self.methods()
        )

    def _session_so_far(self) -> Measurement:
        """The session's figures at the last reading, in the current mode (lock held)."""
        mode, accounts = self.settings.mode, self._accounts
        return self._measurement_between(
            accounts.session_base[mode],
            accounts.totals[mode],
            mode,
            (accounts.now_raw().t_ns - accounts.started_ns) / 1e9,
            "session",
            self.started_at,
        )

    # ---------------------------------------------------------------- windows

    def begin(self, name: str = "block") -> Window:
        """Open a window now. Windows may nest and overlap. Starts the tracker if needed."""
        if not self._running:
            self.start()
        accounts = self._accounts
        with self._lock:
            accounts.advance()
            if self._feed.has_news:  # a window starts at the provider's latest value
                self._feed.switch(self._feed.latest(), accounts.now_raw().t_ns)
            accounts.close_power_segment(self.components())
            window = Window(
                name=name,
                mode=self.settings.mode,
                started_ns=accounts.now_raw().t_ns,
                started_at=datetime.now(timezone.utc),
                totals_at_start=accounts.totals[self.settings.mode].copy(),
                measurement=Measurement(name=name),
                intensity_at_start_g_per_kwh=self._feed.now.g_per_kwh,
            )
            was_idle = self._schedule.window_opened()
        if was_idle:
            self._schedule.reschedule()  # watched from now on: tick at the interval
        return window

    @property
    def open_windows(self) -> int:
        """How many windows are open now (each keeps the thread ticking every interval)."""
        return self._schedule.open_windows

    def peek(self, window: Window) -> Measurement:
        """The window's figures so far, from the last tick (no counters read)."""
        with self._lock:
            measurement = self._measurement_between(
                window.totals_at_start,
                self._accounts.totals[window.mode],
                window.mode,
                (time.monotonic_ns() - window.started_ns) / 1e9,
                window.name,
                window.started_at,
            )
        return measurement

    def end(self, window: Window) -> Measurement:
        """Close ``window`` now and return its ``Measurement`` (the same object each time)."""
        if window.closed:
            return window.measurement
        with self._lock:
            if self._running:
                self._accounts.advance()
                self._accounts.close_power_segment(self.components())
            result = self._measurement_between(
                window.totals_at_start,
                self._accounts.totals[window.mode],
                window.mode,
                (self._accounts.now_raw().t_ns - window.started_ns) / 1e9,
                window.name,
                window.started_at,
            )
            note = self._feed.variation_note(window)
        if note is not None:
            result.intensity_source += note
        result.ended_at = datetime.now(timezone.utc)
        target = fill(window.measurement, result)
        with self._lock:
            if not window.closed:
                window.closed = True
                self._schedule.window_closed(self.settings.interval)
        # The thread's next tick comes soon (``window_closed``: half a second, at most an
        # interval): its reading, which the heartbeat after the cell shows, is the idle
        # power since.
        return target

    @contextmanager
    def measure(self, name: str = "block") -> Iterator[Measurement]:
        """``with tracker.measure("fit") as m:`` — ``m`` is filled when the block ends."""
        window = self.begin(name)
        try:
            yield window.measurement
        except BaseException:
            window.measurement.status = "error"
            raise
        finally:
            self.end(window)

    # ----------------------------------------------------------------- reading

    def components(self) -> list[str]:
        """The components measured on this machine (``gpu`` only when GPUs are seen)."""
        return self.sensors.components()

    def methods(self) -> dict[str, str]:
        """How each component's energy is obtained: measured, modelled or assumed."""
        return self.sensors.methods()

    def pue(self) -> tuple[float, str]:
        """(PUE, where it comes from)."""
        return self._feed.read_pue()

    @property
    def intensity_provider(self) -> IntensityProvider | None:
        """The grid intensity provider in use (``None`` before the first start)."""
        return self._feed.provider

    @intensity_provider.setter
    def intensity_provider(self, provider: IntensityProvider | None) -> None:
        self._feed.provider = provider

    def intensity(self) -> Intensity:
        """The grid intensity now, as the provider has it (never waits on the network).

        Accounting switches to a new value when a live provider fetches it (the thread
        is woken), or at the next slow tick."""
        return self._feed.current()

    def live_watts(self) -> dict[str, float]:
        """Attributed power per component over the last tick, watts."""
        with self._lock:
            return dict(self._accounts.last_watts)

    def session(self) -> Measurement:
        """Totals since start (or the last reset), in the current mode, read now.

        The counters are read at the call (a fraction of a millisecond), so the figures
        are current even while the idle thread sleeps between heartbeats."""
        with self._lock:
            if not self._accounts.opened:
                return Measurement(name="session", mode=self.settings.mode, methods={})
            if self._running:
                self._accounts.advance()
            return self._session_so_far()

    def sensor_statuses(self) -> list[SensorStatus]:
        """Every sensor: what it measures and how, or why it is unavailable."""
        reader = self._reading()
        return reader.sensors.statuses() + list(reader.disabled)

    def hardware(self) -> dict[str, object]:
        """A short hardware summary for the ledger and reports (``Sensors.hardware``).

        ``gpus`` maps device keys, which carry the vendor (``nvidia:0``, ``amd:0``,
        ``apple:gpu``), to product names."""
        return self.sensors.hardware()

    # ----------------------------------------------------------------- settings

    def _settings_changed(self, changed: dict[str, object]) -> None:
        keys = set(changed)
        with self._lock:
            if keys & SENSOR_SETTINGS and self._reader is not None:
                if self._running:
                    self._accounts.advance()
                self._setup()
                self._accounts.raw = self._accounts.read_raw()
            if keys & provider_settings() and self._running:
                self._feed.rebuild()
        if keys & {"pue", "cloud_region"}:
            with self._lock:
                if self._running:
                    self._accounts.advance()  # energy so far at the old PUE
                self._feed.pue = self._feed.read_pue()[0]
        if "interval" in keys:
            self.wake()


_tracker: Tracker | None = None
_tracker_lock = threading.Lock()


def get_tracker() -> Tracker:
    """The process's one tracker, created (not started) on first use."""
    global _tracker
    with _tracker_lock:
        if _tracker is None:
            _tracker = Tracker()
        return _tracker
