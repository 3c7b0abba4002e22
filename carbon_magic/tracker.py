"""The tracker: one per process, a light background thread, windows from counters.

Accounting is done by *advancing* cumulative, attributed totals from raw counter
differences (RAPL/NVML joules, busy CPU seconds, the kernel tree's CPU seconds). The
background thread advances every ``interval``; ``begin``/``end`` of a window advance
too, so a window's figures are exact differences of counters read at its edges. A
late or starved background thread (a Python cell holding the GIL) only makes the
live display coarser; it never changes a window's energy.

Devices come from ``sensors.detect(settings)``: a CPU source, a RAM source and GPU
sources behind one protocol, so the tracker never names a vendor. The arithmetic of
attribution lives in ``accounting`` (pure functions); here are only the counters.

The thread wakes only when someone looks: every ``interval`` while a window is open
(a cell runs: live panel, budget, status bar), else every ``IDLE_TICK_S`` (heartbeats
for the status bar), and always before any counter could wrap.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from carbon_magic import accounting
from carbon_magic.grid import provider_settings
from carbon_magic.grid.base import Intensity
from carbon_magic.measurement import COMPONENTS, Measurement
from carbon_magic.sensors.base import MEASURED, MODELLED, SHARE_BY_CPU_TIME, SensorStatus
from carbon_magic.settings import Settings
from carbon_magic.timeline import Timeline

log = logging.getLogger("carbon_magic")

MODES = ("process", "machine")
# How often the slowly changing inputs are read again: the kernel's descendants, the
# GPUs they use, resident memory (a level, not a counter) and the grid intensity.
# Reading them on every tick would cost most of an idle tick.
SLOW_REFRESH_S = 5.0
# How long the thread sleeps when no window is open (seconds): the idle heartbeat. A
# sensor that must be read sooner (a counter about to wrap) shortens it. A tick costs
# about half a millisecond of CPU after a sleep, so 8 s keeps the idle cost near
# 0.007 % of a core, while heartbeats stay well inside the server's staleness limit
# (3 × 5 s).
IDLE_TICK_S = 8.0
# Ticks shorter than this do not update a GPU's idle-power estimate (noise).
MIN_IDLE_SAMPLE_S = 0.2
_SENSOR_SETTINGS = {"powercap_root", "rapl_psys", "cpu_idle_w", "cpu_max_w", "gpus"}


def _zeros() -> dict[str, float]:
    return dict.fromkeys(COMPONENTS, 0.0)


@dataclass
class Totals:
    """Attributed cumulative figures for one attribution mode since the tracker started.

    Facility energy (after PUE) and emissions carry their low and high ends, accumulated
    tick by tick from each source's own range (models) or its method's uncertainty.
    """

    energy_j: dict[str, float] = field(default_factory=_zeros)
    facility_j: dict[str, float] = field(default_factory=_zeros)
    facility_low_j: dict[str, float] = field(default_factory=_zeros)
    facility_high_j: dict[str, float] = field(default_factory=_zeros)
    devices_j: dict[str, float] = field(default_factory=dict)
    emissions_g: dict[str, float] = field(default_factory=_zeros)
    emissions_low_g: dict[str, float] = field(default_factory=_zeros)
    emissions_high_g: dict[str, float] = field(default_factory=_zeros)
    embodied_g: float = 0.0

    _DICTS = (
        "energy_j",
        "facility_j",
        "facility_low_j",
        "facility_high_j",
        "devices_j",
        "emissions_g",
        "emissions_low_g",
        "emissions_high_g",
    )

    def copy(self) -> Totals:
        return Totals(
            **{name: dict(getattr(self, name)) for name in self._DICTS},
            embodied_g=self.embodied_g,
        )

    def minus(self, earlier: Totals) -> Totals:
        def diff(now: dict[str, float], then: dict[str, float]) -> dict[str, float]:
            return {key: value - then.get(key, 0.0) for key, value in now.items()}

        return Totals(
            **{name: diff(getattr(self, name), getattr(earlier, name)) for name in self._DICTS},
            embodied_g=self.embodied_g - earlier.embodied_g,
        )


@dataclass(frozen=True)
class _Raw:
    """Raw counters read at one instant.

    ``counters`` maps a device key to (its source, cumulative joules, cumulative
    (low, high) joules or None).
    """

    t_ns: int
    counters: dict[str, tuple[Any, float, tuple[float, float] | None]]
    system_busy_s: float
    process_cpu_s: float
    process_rss_b: int


@dataclass
class Window:
    """An open measurement window (see ``Tracker.begin``)."""

    name: str
    mode: str
    started_ns: int
    started_at: datetime
    totals_at_start: Totals
    measurement: Measurement
    intensity_at_start_g_per_kwh: float = 0.0
    closed: bool = False


@dataclass(frozen=True)
class LiveReading:
    """What the live view shows after a tick."""

    at: datetime
    watts: dict[str, float]
    session: Measurement  # totals since the tracker started, in the current mode


class Tracker:
    """Measures energy and emissions of the process (and its children) or the machine.

    Thread-safe. Start it once per process (``get_tracker()``); ``start``/``stop`` are
    idempotent. Faults inside never reach callers: a failing sensor is disabled with one
    message (kept in ``notices`` and logged).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        sensors_factory: Callable[[Settings], Any] | None = None,
    ) -> None:
        """``sensors_factory(settings) -> sensors.Sensors`` replaces ``sensors.detect``
        (tests inject sources built over fake hardware)."""
        self.settings = settings or Settings()
        self._sensors_factory = sensors_factory
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._wake_event = threading.Event()
        self._tick_now = False
        # A window that just closed keeps the interval cadence for one more tick.
        self._active_until = 0.0
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[LiveReading], None]] = []
        self._watchers: list[Callable[[LiveReading], None]] = []
        self._tasks: list[Callable[[], None]] = []
        self.notices: list[str] = []
        self.timeline = Timeline()
        self._configured = False
        self._running = False
        self._open_windows = 0
        self._totals: dict[str, Totals] | None = None
        self._raw: _Raw | None = None
        self._pue_now = 1.0
        # (monotonic ns, g/kWh) whenever the intensity changed: windows report the span.
        self._intensity_changes: deque[tuple[int, float]] = deque(maxlen=1000)
        self._disabled: list[SensorStatus] = []
        self.started_at: datetime | None = None
        self.settings.on_change(self._settings_changed)

    # ----------------------------------------------------------------- set-up

    def _setup(self) -> None:
        """Detect sensors and models (once, and again when sensor settings change)."""
        previous = getattr(self, "_sensors", None)
        if previous is not None:
            previous.close()  # re-detecting after a settings change
        if self._sensors_factory is not None:
            sensors = self._sensors_factory(self.settings)
        else:
            from carbon_magic.sensors import detect

            sensors = detect(self.settings)
        self._sensors = sensors
        self.cpu_power = sensors.cpu_power
        self.cpu_model_name = sensors.cpu_model_name
        self.n_cpus = sensors.n_cpus
        self._disabled = []
        # GPU use by the kernel's processes: device key -> GpuUse (refreshed slowly);
        # until the first refresh, every GPU counts as used, whole.
        self._gpu_use: dict[str, Any] = {}
        self._gpu_use_known = False
        self._gpu_idle_w: dict[str, float] = {}
        self._configured = True

    @property
    def sensors(self) -> Any:
        """The ``sensors.Sensors`` in use (detected on first use)."""
        with self._lock:
            if not self._configured:
                self._setup()
            return self._sensors

    def _disable(self, source: Any, error: BaseException) -> None:
        """Take a failing source out, with one message; CPU and RAM fall back to models."""
        sensors = self.sensors
        if source is sensors.cpu:
            sensors.cpu = sensors.cpu_model
            instead = "using the CPU model"
        elif source is sensors.ram:
            sensors.ram = sensors.ram_model
            instead = "using the W/GB model"
        elif source in sensors.gpus:
            sensors.gpus.remove(source)
            instead = "its GPUs are no longer measured"
        else:
            return
        label = "RAPL" if source.name == "rapl" else source.name
        self.notice(f"{label} failed and was disabled, {instead}: {error}")
        self._disabled.append(
            SensorStatus(source.name, source.component, False, source.method, f"failed: {error}")
        )
        try:
            source.close()
        except Exception:  # a broken source may fail to close too
            pass

    def _make_intensity_provider(self) -> Any:
        try:
            from carbon_magic.grid import make_provider

            return make_provider(self.settings)
        except Exception as error:
            from carbon_magic.grid.static import StaticProvider

            self.notice(f"live grid intensity unavailable: {error}")
            return StaticProvider(self.settings)

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
            if not self._configured:
                self._setup()
            self.intensity_provider = self._make_intensity_provider()
            self._intensity_now = self.intensity_provider.current()
            self._pue_now = self.pue()[0]
            if self._totals is None:
                self._init_totals()
            else:
                # Resume: the stopped period is not measured.
                self._raw = self._read_raw()
                self._last_tick_ns = self._raw.t_ns
            self._stop_event.clear()
            self._running = True
            self._thread = threading.Thread(
                target=self._run, name="carbon_magic-tracker", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread (idempotent). Totals and timeline are kept."""
        with self._lock:
            if not self._running:
                return
            self._advance()
            self._running = False
            self._stop_event.set()
            self._wake_event.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        provider = getattr(self, "intensity_provider", None)
        if provider is not None:
            provider.close()

    def reset(self) -> None:
        """Zero the session totals and the timeline. Open windows are unaffected: the
        cumulative totals keep running and the session is counted from a new base."""
        with self._lock:
            if self._totals is None:
                return
            if self._running:
                self._advance()
            self._session_base = {mode: totals.copy() for mode, totals in self._totals.items()}
            self.started_at = datetime.now(timezone.utc)
            self._started_ns = self._raw.t_ns
            self.timeline.clear()

    def _init_totals(self) -> None:
        self._raw = self._read_raw(with_memory=True)
        self.started_at = datetime.now(timezone.utc)
        self._started_ns = self._raw.t_ns
        self._totals = {mode: Totals() for mode in MODES}
        self._session_base = {mode: Totals() for mode in MODES}
        self._last_tick_energy_j = dict(self._totals[self.settings.mode].energy_j)
        self._last_tick_ns = self._raw.t_ns
        self._last_watts: dict[str, float] = dict.fromkeys(self.components(), 0.0)
        self._next_slow_refresh = 0.0

    def close(self) -> None:
        """Stop and release sensors (vendor libraries, kept-open files)."""
        self.stop()
        sensors = getattr(self, "_sensors", None)
        if sensors is not None:
            sensors.close()

    def add_listener(self, listener: Callable[[LiveReading], None], watching: bool = True) -> None:
        """Call ``listener(reading)`` from the tracker thread after every tick.

        A ``watching`` listener (a live view) keeps the thread ticking every
        ``interval``; one that only needs the idle heartbeat (``watching=False``, e.g.
        the ledger heartbeat) lets it sleep ``IDLE_TICK_S`` while no window is open. A
        listener that raises is reported once and removed; it never stops the tracker.
        """
        with self._lock:
            self._listeners.append(listener)
            if watching:
                self._watchers.append(listener)
        self._reschedule()

    def remove_listener(self, listener: Callable[[LiveReading], None]) -> None:
        """Undo ``add_listener`` (no error when absent)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
            if listener in self._watchers:
                self._watchers.remove(listener)

    def wake(self) -> None:
        """Make the background thread tick now."""
        self._tick_now = True
        self._wake_event.set()

    def _reschedule(self) -> None:
        """Let the thread recompute when to tick (a window opened or closed, a listener
        came): it ticks within ``interval`` from now, not at once, so a short cell
        costs no extra tick while it runs."""
        self._wake_event.set()

    def call_soon(self, task: Callable[[], None]) -> None:
        """Run ``task()`` in the tracker thread before its next tick (errors are
        reported once and ignored). Runs at once when the tracker is stopped."""
        if not self._running:
            task()
            return
        with self._lock:
            self._tasks.append(task)
        self._reschedule()

    # ------------------------------------------------------------- the thread

    def _watched(self) -> bool:
        """Whether someone looks: an open window, a live listener, a pending task, or a
        window closed less than half an interval ago."""
        return bool(
            self._open_windows > 0
            or self._watchers
            or self._tasks
            or time.monotonic() < self._active_until
        )

    def _sleep_s(self) -> float:
        """Seconds until the next tick: the interval while a window is open, the idle
        heartbeat otherwise, and never longer than a source allows (counter wraps)."""
        if self._watched():
            interval = self.settings.interval
        else:
            interval = max(IDLE_TICK_S, self.settings.interval)
        for source in self.sensors.sources():
            limit = source.poll_interval_s()
            if limit is not None:
                interval = min(interval, limit)
        return interval

    def _run(self) -> None:
        deadline = time.monotonic() + self._sleep_s()
        while not self._stop_event.is_set():
            woken = self._wake_event.wait(max(0.0, deadline - time.monotonic()))
            self._wake_event.clear()
            if self._stop_event.is_set():
                break
            if woken and not self._tick_now:
                # Rescheduled: tick no later than the new cadence allows from now.
                deadline = min(deadline, time.monotonic() + self._sleep_s())
                continue
            self._tick_now = False
            deadline = time.monotonic() + self._sleep_s()
            self._run_tasks()
            try:
                reading = self._tick(with_reading=bool(self._listeners))
            except Exception as error:  # never let the thread die
                self.notice(f"tracker tick failed: {error!r}")
                continue
            if reading is None:
                continue
            for listener in list(self._listeners):
                try:
                    listener(reading)
                except Exception as error:
                    self.notice(f"live listener failed and was removed: {error!r}")
                    self.remove_listener(listener)

    def _run_tasks(self) -> None:
        with self._lock:
            tasks, self._tasks = self._tasks, []
        for task in tasks:
            try:
                task()
            except Exception as error:
                self.notice(f"background task failed: {error!r}")

    def _tick(self, with_reading: bool = True, slow: bool | None = None) -> LiveReading | None:
        """Advance and record the power since the last tick. Every ``SLOW_REFRESH_S``
        (or when ``slow`` is True) also re-read the slowly changing inputs. The live
        reading is built only when someone listens."""
        now = time.monotonic()
        if slow is None:
            slow = now >= self._next_slow_refresh
        intensity = self._intensity_now
        if slow:
            self._next_slow_refresh = now + SLOW_REFRESH_S
            self.sensors.process_tree.refresh_children()
            self._refresh_gpu_use()
            intensity = self.intensity_provider.current()
        with self._lock:
            self._advance(with_memory=slow)  # energy so far counts at the previous intensity
            if intensity.g_per_kwh != self._intensity_now.g_per_kwh:
                self._intensity_changes.append((self._raw.t_ns, intensity.g_per_kwh))
            self._intensity_now = intensity
            mode = self.settings.mode
            totals = self._totals[mode]
            dt_s = (self._raw.t_ns - self._last_tick_ns) / 1e9
            if dt_s > 0:
                self._last_watts = {
                    name: (totals.energy_j[name] - self._last_tick_energy_j[name]) / dt_s
                    for name in self.components()
                }
                self.timeline.add(time.time(), dt_s, self._last_watts)
            self._last_tick_energy_j = dict(totals.energy_j)
            self._last_tick_ns = self._raw.t_ns
            if not with_reading:
                return None
            session = self._measurement_between(
                self._session_base[mode], totals, mode, (self._raw.t_ns - self._started_ns) / 1e9
            )
        session.name = "session"
        session.started_at = self.started_at
        return LiveReading(datetime.now(timezone.utc), dict(self._last_watts), session)

    def _refresh_gpu_use(self) -> None:
        gpus = list(self.sensors.gpus)
        if not gpus:
            return
        pids = self.sensors.process_tree.pids()
        use: dict[str, Any] = {}
        for gpu in gpus:
            try:
                use.update(gpu.use_by(pids))
            except Exception as error:
                self.notice(f"cannot tell which GPUs the kernel uses ({error}); counting all")
                use.update(dict.fromkeys(gpu.read_j(), None))
        with self._lock:
            self._gpu_use = use
            self._gpu_use_known = True

    # ------------------------------------------------------------ accounting

    def _read_raw(self, with_memory: bool = False) -> _Raw:
        counters: dict[str, tuple[Any, float, tuple[float, float] | None]] = {}
        sensors = self._sensors
        for source in sensors.sources():
            try:
                joules = source.read_j()
                ranges = source.range_j()
            except Exception as error:  # a sensor must never stop the tracker
                self._disable(source, error)
                continue
            for key, value in joules.items():
                counters[key] = (source, value, ranges.get(key) if ranges else None)
        process_tree = sensors.process_tree
        try:
            busy_s = sensors.system_cpu.busy_s()
        except OSError as error:
            self.notice(f"cannot read CPU counters ({error}); the kernel's CPU share is 0")
            busy_s = self._raw.system_busy_s if self._raw is not None else 0.0
        # Memory is a level, not a counter: sampled on ticks only, and the last value is
        # reused at window edges (saving a /proc read on every cell).
        rss_b = (
            process_tree.rss_bytes()
            if with_memory or self._raw is None
            else self._raw.process_rss_b
        )
        return _Raw(time.monotonic_ns(), counters, busy_s, process_tree.cpu_s(), rss_b)

    def _gpu_fraction(self, key: str, energy_j: float, dt_s: float) -> float:
        """Process mode's fraction of one GPU's tick energy (see accounting)."""
        if not self._gpu_use_known:
            return 1.0
        use = self._gpu_use.get(key, False)
        if use is False:
            return 0.0
        # Idle power: the lowest power seen on this GPU on earlier ticks (0 before any).
        idle_w = self._gpu_idle_w.get(key, 0.0)
        if dt_s >= MIN_IDLE_SAMPLE_S:
            power = energy_j / dt_s
            self._gpu_idle_w[key] = min(self._gpu_idle_w.get(key, power), power)
        sm_share = use.sm_share if use is not None else None
        return accounting.gpu_process_fraction(energy_j, dt_s, True, sm_share, idle_w)

    def _advance(self, with_memory: bool = False) -> None:
        """Read counters now and add the attributed differences to both modes' totals."""
        previous, raw = self._raw, self._read_raw(with_memory)
        self._raw = raw
        dt_s = (raw.t_ns - previous.t_ns) / 1e9
        if dt_s <= 0:
            return
        settings = self.settings
        share = accounting.cpu_share(
            raw.process_cpu_s - previous.process_cpu_s, raw.system_busy_s - previous.system_busy_s
        )
        memory = accounting.memory_share(raw.process_rss_b, self._sensors.total_memory_bytes)
        ticks: list[accounting.DeviceTick] = []
        gpu_keys: list[str] = []
        for key, (source, joules, bounds) in raw.counters.items():
            before = previous.counters.get(key)
            if before is None:
                continue  # a source that appeared since (a fallback): this is its baseline
            delta_j = joules - before[1]
            if bounds is not None and before[2] is not None:
                low, high = bounds[0] - before[2][0], bounds[1] - before[2][1]
                energy = accounting.EnergyRange(delta_j, low, high)
            else:
                energy = accounting.method_range(delta_j, source.method)
            if source.component == "gpu":
                gpu_keys.append(key)
                fraction = self._gpu_fraction(key, delta_j, dt_s)
            elif source.process_share == SHARE_BY_CPU_TIME:
                fraction = share
            else:
                fraction = memory
            ticks.append(
                accounting.DeviceTick(
                    source.component, key if source.itemised else None, energy, fraction
                )
            )
        server_rate, gpu_rate = self._embodied_rates()
        used = sum(1 for key in gpu_keys if self._gpu_fraction_used(key))
        embodied = accounting.embodied_tick_g(
            dt_s, server_rate, gpu_rate, len(gpu_keys), used, share
        )
        attributed = accounting.attribute_tick(ticks, embodied, COMPONENTS)
        self._accumulate(attributed, settings.embodied)

    def _accumulate(self, attributed: dict[str, accounting.Attribution], embodied: bool) -> None:
        """Add one tick's attributed energy to both modes' totals, with PUE and the
        intensity (central, low, high). This runs at every window edge: the
        conversions are written out here rather than called per component."""
        intensity: Intensity = self._intensity_now
        pue = self._pue_now
        low_i, high_i = intensity.range_g_per_kwh
        # grams per joule of IT energy: PUE × intensity / (J per kWh)
        g_per_j = accounting.emissions_g(accounting.facility_energy_j(1.0, pue), 1.0)
        central_g, low_g, high_g = g_per_j * intensity.g_per_kwh, g_per_j * low_i, g_per_j * high_i
        for mode, charge in attributed.items():
            totals = self._totals[mode]
            for component, energy in charge.energy.items():
                central, low, high = energy.central_j, energy.low_j, energy.high_j
                if not (central or low or high):
                    continue
                totals.energy_j[component] += central
                totals.facility_j[component] += central * pue
                totals.facility_low_j[component] += low * pue
                totals.facility_high_j[component] += high * pue
                totals.emissions_g[component] += central * central_g
                totals.emissions_low_g[component] += low * low_g
                totals.emissions_high_g[component] += high * high_g
            for device, joules in charge.devices_j.items():
                totals.devices_j[device] = totals.devices_j.get(device, 0.0) + joules
            if embodied:
                totals.embodied_g += charge.embodied_g

    def _embodied_rates(self) -> tuple[float, float]:
        """(server, per-GPU) embodied g/s, recomputed only when their settings change."""
        settings = self.settings
        inputs = (settings.embodied_server_kg, settings.embodied_gpu_kg, settings.lifetime_years)
        cached = getattr(self, "_embodied_cache", None)
        if cached is None or cached[0] != inputs:
            rates = accounting.embodied_rate_g_per_s(inputs[0], inputs[1], 1, inputs[2])
            self._embodied_cache = cached = (inputs, rates)
        return cached[1]

    def _gpu_fraction_used(self, key: str) -> bool:
        return not self._gpu_use_known or self._gpu_use.get(key, False) is not False

    def _measurement_between(
        self, start: Totals, end: Totals, mode: str, duration_s: float
    ) -> Measurement:
        delta = end.minus(start)
        methods = self.methods()
        energy_j = {name: delta.energy_j.get(name, 0.0) for name in COMPONENTS}
        facility_j = sum(delta.facility_j.values())
        facility_low = sum(delta.facility_low_j.values())
        facility_high = sum(delta.facility_high_j.values())
        emissions = sum(delta.emissions_g.values())
        low = sum(delta.emissions_low_g.values())
        high = sum(delta.emissions_high_g.values())
        intensity = self._intensity_now
        facility_kwh = accounting.joules_to_kwh(facility_j)
        effective = emissions / facility_kwh if facility_kwh > 0 else intensity.g_per_kwh
        return Measurement(
            name="",
            duration_s=duration_s,
            energy_j=energy_j,
            energy_kwh=facility_kwh,
            energy_range_kwh=(
                accounting.joules_to_kwh(facility_low),
                accounting.joules_to_kwh(facility_high),
            ),
            emissions_g=emissions,
            emissions_range_g=(low, high),
            embodied_g=delta.embodied_g,
            intensity_g_per_kwh=effective,
            intensity_source=intensity.source,
            pue=self._pue_now,
            methods=methods,
            devices={k: v for k, v in delta.devices_j.items() if v or k in start.devices_j},
            mode=mode,
        )

    # ---------------------------------------------------------------- windows

    def begin(self, name: str = "block") -> Window:
        """Open a window now. Windows may nest and overlap. Starts the tracker if needed."""
        if not self._running:
            self.start()
        with self._lock:
            self._advance()
            window = Window(
                name=name,
                mode=self.settings.mode,
                started_ns=self._raw.t_ns,
                started_at=datetime.now(timezone.utc),
                totals_at_start=self._totals[self.settings.mode].copy(),
                measurement=Measurement(name=name),
                intensity_at_start_g_per_kwh=self._intensity_now.g_per_kwh,
            )
            was_idle = not self._watched()
            self._open_windows += 1
        if was_idle:
            self._reschedule()  # watched from now on: tick at the interval
        return window

    def peek(self, window: Window) -> Measurement:
        """The window's figures so far, from the last tick (no counters read)."""
        with self._lock:
            measurement = self._measurement_between(
                window.totals_at_start,
                self._totals[window.mode],
                window.mode,
                (time.monotonic_ns() - window.started_ns) / 1e9,
            )
        measurement.name = window.name
        measurement.started_at = window.started_at
        return measurement

    def end(self, window: Window) -> Measurement:
        """Close ``window`` now and return its ``Measurement`` (the same object each time)."""
        if window.closed:
            return window.measurement
        with self._lock:
            if self._running:
                self._advance()
            result = self._measurement_between(
                window.totals_at_start,
                self._totals[window.mode],
                window.mode,
                (self._raw.t_ns - window.started_ns) / 1e9,
            )
            seen = [window.intensity_at_start_g_per_kwh] + [
                value for t_ns, value in self._intensity_changes if t_ns > window.started_ns
            ]
        if min(seen) != max(seen):
            result.intensity_source += (
                f"; varied {min(seen):.0f}–{max(seen):.0f} g/kWh during the window, integrated"
            )
        result.name = window.name
        result.started_at = window.started_at
        result.ended_at = datetime.now(timezone.utc)
        # Fill the object handed out by ``measure`` so ``m`` is complete after the block.
        target = window.measurement
        for key, value in vars(result).items():
            if key not in ("execution_count", "cell_id", "status", "source"):
                setattr(target, key, value)
        with self._lock:
            if not window.closed:
                window.closed = True
                self._open_windows = max(0, self._open_windows - 1)
                self._active_until = time.monotonic() + self.settings.interval / 2
        # No wake-up needed: the thread's next tick is at most an interval away, and
        # that tick (which heartbeats show) finds the window closed.
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
        return ["cpu", "gpu", "ram"] if self.sensors.gpus else ["cpu", "ram"]

    def methods(self) -> dict[str, str]:
        """How each component's energy is obtained: measured, modelled or assumed."""
        sensors = self.sensors
        methods = {"cpu": sensors.cpu.method}
        if sensors.gpus:
            kinds = {gpu.method for gpu in sensors.gpus}
            methods["gpu"] = MEASURED if kinds == {MEASURED} else MODELLED
        methods["ram"] = sensors.ram.method
        return methods

    def pue(self) -> tuple[float, str]:
        """(PUE, where it comes from)."""
        from carbon_magic.grid.static import default_pue

        return default_pue(self.settings)

    def intensity(self) -> Intensity:
        """The grid intensity now, as the provider has it (never waits on the network).

        Accounting switches to a new value at the next tick."""
        provider = getattr(self, "intensity_provider", None)
        if provider is None:
            from carbon_magic.grid.static import StaticProvider

            return StaticProvider(self.settings).current()
        try:
            return provider.current()
        except Exception:
            return self._intensity_now

    def live_watts(self) -> dict[str, float]:
        """Attributed power per component over the last tick, watts."""
        with self._lock:
            return dict(self._last_watts)

    def session(self) -> Measurement:
        """Totals since start (or the last reset), in the current mode, read now.

        The counters are read at the call (a fraction of a millisecond), so the figures
        are current even while the idle thread sleeps between heartbeats."""
        mode = self.settings.mode
        with self._lock:
            if self._totals is None:
                return Measurement(name="session", mode=mode, methods={})
            if self._running:
                self._advance()
            measurement = self._measurement_between(
                self._session_base[mode],
                self._totals[mode],
                mode,
                (self._raw.t_ns - self._started_ns) / 1e9,
            )
        measurement.name = "session"
        measurement.started_at = self.started_at
        return measurement

    def sensor_statuses(self) -> list[SensorStatus]:
        """Every sensor: what it measures and how, or why it is unavailable."""
        return self.sensors.statuses() + list(self._disabled)

    def hardware(self) -> dict[str, Any]:
        """A short hardware summary for the ledger and reports.

        ``gpus`` maps device keys, which carry the vendor (``nvidia:0``, ``amd:0``,
        ``apple:gpu``), to product names."""
        sensors = self.sensors
        return {
            "host": socket.gethostname(),
            "platform": sys.platform,
            "cpu_model": sensors.cpu_model_name,
            "n_cpus": sensors.n_cpus,
            "ram_gb": round(sensors.total_memory_bytes / 1e9, 1),
            "gpus": sensors.gpu_names(),
            "cpu_power": {
                "idle_w": sensors.cpu_power.idle_w,
                "max_w": sensors.cpu_power.max_w,
                "source": sensors.cpu_power.source,
            },
        }

    # ----------------------------------------------------------------- settings

    def _settings_changed(self, changed: dict[str, Any]) -> None:
        keys = set(changed)
        with self._lock:
            if keys & _SENSOR_SETTINGS and self._configured:
                if self._running:
                    self._advance()
                self._setup()
                self._raw = self._read_raw()
            if keys & provider_settings() and self._running:
                old = self.intensity_provider
                self.intensity_provider = self._make_intensity_provider()
                self._intensity_now = self.intensity_provider.current()
                old.close()
        if keys & {"pue", "cloud_region"}:
            with self._lock:
                if self._running:
                    self._advance()  # energy so far at the old PUE
                self._pue_now = self.pue()[0]
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
