"""The tracker: one per process, a light background thread, windows from counters.

Accounting is done by *advancing* cumulative, attributed totals from raw counter
differences (RAPL/NVML joules, busy CPU seconds, the kernel tree's CPU seconds). The
background thread advances every ``interval``; ``begin``/``end`` of a window advance
too, so a window's figures are exact differences of counters read at its edges. A
late or starved background thread (a Python cell holding the GIL) only makes the
live display coarser; it never changes a window's energy.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from carbon_magic import accounting
from carbon_magic.grid.base import Intensity
from carbon_magic.measurement import COMPONENTS, Measurement
from carbon_magic.sensors.base import ASSUMED, MEASURED, MODELLED, SensorStatus
from carbon_magic.settings import Settings
from carbon_magic.timeline import Timeline

log = logging.getLogger("carbon_magic")

MODES = ("process", "machine")
# How often the slowly changing inputs are read again: the kernel's descendants, the
# GPUs they use, resident memory (a level, not a counter) and the grid intensity.
# Reading them on every tick would cost most of an idle tick.
SLOW_REFRESH_S = 5.0
_INTENSITY_SETTINGS = {
    "country",
    "cloud_region",
    "intensity",
    "zone",
    "postcode",
    "electricitymaps_token",
    "electricitymaps_url",
    "ukgrid_url",
}
_SENSOR_SETTINGS = {"powercap_root", "rapl_psys", "cpu_idle_w", "cpu_max_w"}


@dataclass
class Totals:
    """Attributed cumulative figures for one attribution mode since the tracker started."""

    energy_j: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    facility_j: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    devices_j: dict[str, float] = field(default_factory=dict)
    # Operational emissions per component at the intensity's central, low and high value.
    emissions_g: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    emissions_low_g: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0)
    )
    emissions_high_g: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0)
    )
    embodied_g: float = 0.0

    def copy(self) -> Totals:
        return Totals(
            dict(self.energy_j),
            dict(self.facility_j),
            dict(self.devices_j),
            dict(self.emissions_g),
            dict(self.emissions_low_g),
            dict(self.emissions_high_g),
            self.embodied_g,
        )

    def minus(self, earlier: Totals) -> Totals:
        def diff(now: dict[str, float], then: dict[str, float]) -> dict[str, float]:
            return {key: value - then.get(key, 0.0) for key, value in now.items()}

        return Totals(
            diff(self.energy_j, earlier.energy_j),
            diff(self.facility_j, earlier.facility_j),
            diff(self.devices_j, earlier.devices_j),
            diff(self.emissions_g, earlier.emissions_g),
            diff(self.emissions_low_g, earlier.emissions_low_g),
            diff(self.emissions_high_g, earlier.emissions_high_g),
            self.embodied_g - earlier.embodied_g,
        )


@dataclass(frozen=True)
class _Raw:
    """Raw counters read at one instant."""

    t_ns: int
    rapl_j: dict[str, float]
    gpu_j: dict[str, float]
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

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._wake_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[LiveReading], None]] = []
        self._tasks: list[Callable[[], None]] = []
        self.notices: list[str] = []
        self.timeline = Timeline()
        self._configured = False
        self._running = False
        self._totals: dict[str, Totals] | None = None
        self._raw: _Raw | None = None
        self._pue_now = 1.0
        # (monotonic ns, g/kWh) whenever the intensity changed: windows report the span.
        self._intensity_changes: deque[tuple[int, float]] = deque(maxlen=1000)
        self.started_at: datetime | None = None
        self.settings.on_change(self._settings_changed)

    # ----------------------------------------------------------------- set-up

    def _setup(self) -> None:
        """Detect sensors and models (once, and again when sensor settings change)."""
        from carbon_magic import cpu_power
        from carbon_magic.sensors.cputime import (
            CpuModel,
            ProcessTreeCounter,
            SystemCpuCounter,
            total_memory_bytes,
        )
        from carbon_magic.sensors.memory import RamModel

        settings = self.settings
        previous = getattr(self, "system_cpu", None)
        if previous is not None:
            previous.close()  # re-detecting after a settings change
        self.n_cpus = cpu_power.visible_cpu_count()
        allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        # A cgroup quota below the CPUs we may run on: a container, whose own usage
        # counter describes it better than the host's /proc/stat.
        quota_limited = allowed is not None and self.n_cpus < allowed
        self.system_cpu = SystemCpuCounter(limited=quota_limited)
        self.process_tree = ProcessTreeCounter()
        self.cpu_model_name = cpu_power.read_cpu_model_name()
        provider = settings.cloud_region.split(":")[0] if settings.cloud_region else None
        self.cpu_power = cpu_power.cpu_power_model(
            self.cpu_model_name,
            self.n_cpus,
            cpu_power.is_virtual_machine(),
            cloud_provider=provider,
            idle_override_w=settings.cpu_idle_w,
            max_override_w=settings.cpu_max_w,
            threads_per_package=cpu_power.read_threads_per_package(),
        )
        self.cpu_model = CpuModel(self.cpu_power, self.system_cpu.source)
        self.ram_model = RamModel(total_memory_bytes())
        self.rapl = self._make_rapl()
        self.nvml = self._make_nvml()
        self.gpu_devices_in_use: set[str] = set(self.nvml.read_j()) if self.nvml else set()
        self._configured = True

    def _make_rapl(self) -> Any:
        from carbon_magic.sensors.rapl import RaplSensor

        try:
            sensor = RaplSensor(root=self.settings.powercap_root, use_psys=self.settings.rapl_psys)
        except Exception as error:  # a sensor must never stop the tracker
            self._notice(f"RAPL disabled: {error}")
            return None
        self._rapl_status = sensor.status()
        return sensor if sensor.available else None

    def _make_nvml(self) -> Any:
        from carbon_magic.sensors.nvml import NvmlSensor, nvidia_driver_present

        if not nvidia_driver_present():
            self._nvml_status = SensorStatus(
                "nvml", "gpu", False, MEASURED, "no NVIDIA driver on this system: no GPU measured"
            )
            return None
        try:
            sensor = NvmlSensor()
        except Exception as error:
            self._notice(f"NVML disabled: {error}")
            return None
        self._nvml_status = sensor.status()
        return sensor if sensor.available else None

    def _make_intensity_provider(self) -> Any:
        try:
            from carbon_magic.grid import make_provider

            return make_provider(self.settings)
        except Exception as error:
            from carbon_magic.grid.static import StaticProvider

            self._notice(f"live grid intensity unavailable: {error}")
            return StaticProvider(self.settings)

    def _notice(self, message: str) -> None:
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
        """Stop and release sensors (NVML, kept-open files)."""
        self.stop()
        for sensor in (getattr(self, "nvml", None), getattr(self, "system_cpu", None)):
            if sensor is not None:
                sensor.close()

    def add_listener(self, listener: Callable[[LiveReading], None]) -> None:
        """Call ``listener(reading)`` from the tracker thread after every tick.

        A listener that raises is reported once and removed; it never stops the tracker.
        """
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[LiveReading], None]) -> None:
        """Undo ``add_listener`` (no error when absent)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def wake(self) -> None:
        """Make the background thread tick now."""
        self._wake_event.set()

    def call_soon(self, task: Callable[[], None]) -> None:
        """Run ``task()`` in the tracker thread before its next tick (errors are
        reported once and ignored). Runs at once when the tracker is stopped."""
        if not self._running:
            task()
            return
        with self._lock:
            self._tasks.append(task)

    # ------------------------------------------------------------- the thread

    def _sleep_s(self) -> float:
        interval = self.settings.interval
        for sensor in (self.rapl, self.nvml):
            if sensor is not None:
                limit = sensor.poll_interval_s()
                if limit is not None:
                    interval = min(interval, limit)
        return interval

    def _run(self) -> None:
        while not self._stop_event.is_set():
            self._wake_event.wait(self._sleep_s())
            self._wake_event.clear()
            if self._stop_event.is_set():
                break
            self._run_tasks()
            try:
                reading = self._tick(with_reading=bool(self._listeners))
            except Exception as error:  # never let the thread die
                self._notice(f"tracker tick failed: {error!r}")
                continue
            if reading is None:
                continue
            for listener in list(self._listeners):
                try:
                    listener(reading)
                except Exception as error:
                    self._notice(f"live listener failed and was removed: {error!r}")
                    self.remove_listener(listener)

    def _run_tasks(self) -> None:
        with self._lock:
            tasks, self._tasks = self._tasks, []
        for task in tasks:
            try:
                task()
            except Exception as error:
                self._notice(f"background task failed: {error!r}")

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
            self.process_tree.refresh_children()
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
        if self.nvml is None:
            return
        try:
            self.gpu_devices_in_use = self.nvml.devices_used_by(self.process_tree.pids())
        except Exception as error:
            self._notice(f"cannot tell which GPUs the kernel uses ({error}); counting all")
            self.gpu_devices_in_use = set(self.nvml.read_j())

    # ------------------------------------------------------------ accounting

    def _read_raw(self, with_memory: bool = False) -> _Raw:
        rapl_j: dict[str, float] = {}
        if self.rapl is not None:
            try:
                rapl_j = self.rapl.read_j()
            except Exception as error:
                self._notice(f"RAPL failed and was disabled, using the CPU model: {error}")
                self.rapl = None
        gpu_j: dict[str, float] = {}
        if self.nvml is not None:
            try:
                gpu_j = self.nvml.read_j()
            except Exception as error:
                self._notice(f"NVML failed and was disabled: {error}")
                self.nvml = None
        try:
            busy_s = self.system_cpu.busy_s()
        except OSError as error:
            self._notice(f"cannot read CPU counters ({error}); CPU energy will be idle power only")
            busy_s = 0.0
        # Memory is a level, not a counter: sampled on ticks only, and the last value is
        # reused at window edges (saving a /proc read on every cell).
        rss_b = (
            self.process_tree.rss_bytes()
            if with_memory or self._raw is None
            else self._raw.process_rss_b
        )
        return _Raw(time.monotonic_ns(), rapl_j, gpu_j, busy_s, self.process_tree.cpu_s(), rss_b)

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
        if raw.rapl_j:
            cpu_devices = {k: v - previous.rapl_j.get(k, v) for k, v in raw.rapl_j.items()}
            cpu_machine_j = sum(cpu_devices.values())
        else:
            cpu_devices = {}
            cpu_machine_j = self.cpu_power.energy_j(
                dt_s, raw.system_busy_s - previous.system_busy_s
            ).central_j
        gpu_devices = {k: v - previous.gpu_j.get(k, v) for k, v in raw.gpu_j.items()}
        w_per_gb = settings.ram_w_per_gb
        ram_machine_j = self.ram_model.power_w(w_per_gb, self.ram_model.total_bytes) * dt_s
        ram_process_j = self.ram_model.power_w(w_per_gb, raw.process_rss_b) * dt_s

        used = self.gpu_devices_in_use
        n_gpus = len(gpu_devices)
        embodied = settings.embodied
        server_rate, gpu_rate = accounting.embodied_rate_g_per_s(
            settings.embodied_server_kg, settings.embodied_gpu_kg, 1, settings.lifetime_years
        )
        attributed = {
            "machine": (
                {"cpu": cpu_machine_j, "gpu": sum(gpu_devices.values()), "ram": ram_machine_j},
                {**cpu_devices, **gpu_devices},
                server_rate + gpu_rate * n_gpus,
            ),
            "process": (
                {
                    "cpu": cpu_machine_j * share,
                    "gpu": sum(j for k, j in gpu_devices.items() if k in used),
                    "ram": ram_process_j,
                },
                {
                    **{k: j * share for k, j in cpu_devices.items()},
                    **{k: j for k, j in gpu_devices.items() if k in used},
                },
                server_rate * share + gpu_rate * len(used & set(gpu_devices)),
            ),
        }
        intensity: Intensity = self._intensity_now
        low_i, high_i = intensity.range_g_per_kwh
        pue = self._pue_now
        for mode, (energy, devices, embodied_rate) in attributed.items():
            totals = self._totals[mode]
            for component, joules in energy.items():
                facility = accounting.facility_energy_j(joules, pue)
                totals.energy_j[component] += joules
                totals.facility_j[component] += facility
                totals.emissions_g[component] += accounting.emissions_g(
                    facility, intensity.g_per_kwh
                )
                totals.emissions_low_g[component] += accounting.emissions_g(facility, low_i)
                totals.emissions_high_g[component] += accounting.emissions_g(facility, high_i)
            for device, joules in devices.items():
                totals.devices_j[device] = totals.devices_j.get(device, 0.0) + joules
            if embodied:
                totals.embodied_g += embodied_rate * dt_s

    def _measurement_between(
        self, start: Totals, end: Totals, mode: str, duration_s: float
    ) -> Measurement:
        delta = end.minus(start)
        methods = self.methods()
        energy_j = {name: delta.energy_j.get(name, 0.0) for name in COMPONENTS}
        facility_j = sum(delta.facility_j.values())
        facility_low, facility_high = accounting.energy_range_j(delta.facility_j, methods)
        emissions = sum(delta.emissions_g.values())
        low, high = accounting.emissions_range_g(
            {c: (delta.emissions_low_g[c], delta.emissions_high_g[c]) for c in COMPONENTS},
            methods,
        )
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
        window.closed = True
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
        names = ["cpu"]
        if self.nvml is not None:
            names.append("gpu")
        names.append("ram")
        return names

    def methods(self) -> dict[str, str]:
        """How each component's energy is obtained: measured, modelled or assumed."""
        methods = {"cpu": MEASURED if self.rapl is not None else MODELLED}
        if self.nvml is not None:
            methods["gpu"] = self.nvml.method
        methods["ram"] = ASSUMED
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
        """Totals since start (or the last reset), in the current mode, as of the last read."""
        mode = self.settings.mode
        with self._lock:
            if self._totals is None:
                return Measurement(name="session", mode=mode, methods={})
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
        statuses = []
        rapl_status = getattr(self, "_rapl_status", None)
        if rapl_status is not None:
            statuses.append(rapl_status)
        if self.rapl is None:
            statuses.append(self.cpu_model.status())
        nvml_status = getattr(self, "_nvml_status", None)
        if nvml_status is not None:
            statuses.append(nvml_status)
        statuses.append(self.ram_model.status(self.settings.ram_w_per_gb))
        return statuses

    def hardware(self) -> dict[str, Any]:
        """A short hardware summary for the ledger and reports."""
        return {
            "host": socket.gethostname(),
            "cpu_model": self.cpu_model_name,
            "n_cpus": self.n_cpus,
            "ram_gb": round(self.ram_model.total_bytes / 1e9, 1),
            "gpus": self.nvml.gpu_names() if self.nvml is not None else {},
            "cpu_power": {
                "idle_w": self.cpu_power.idle_w,
                "max_w": self.cpu_power.max_w,
                "source": self.cpu_power.source,
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
            if keys & _INTENSITY_SETTINGS and self._running:
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
