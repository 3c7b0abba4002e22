"""Reading every sensor at one instant, and taking a failing one out.

The tracker reads all sources' cumulative counters, the machine's busy CPU time and
the kernel tree's CPU time at each tick and window edge (``SensorReader.read``). A
source that raises is disabled once, with one message; CPU and RAM fall back to their
models. Nothing here raises into the tracker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from carbon_magic.engine.tick_attribution import CounterReading, RawCounters
from carbon_magic.sensors.base import EnergySource, GpuUse, SensorStatus

if TYPE_CHECKING:
    from carbon_magic.sensors import Sensors


class SensorReader:
    """Reads ``sensors`` for the tracker; ``notice(message)`` reports a fault once,
    ``clock_ns()`` is the monotonic clock in ns (a test seam)."""

    def __init__(
        self, sensors: Sensors, notice: Callable[[str], None], clock_ns: Callable[[], int]
    ) -> None:
        self.sensors = sensors
        self._notice = notice
        self._clock_ns = clock_ns
        self.disabled: list[SensorStatus] = []  # sources taken out, with why

    def read(self, previous: RawCounters | None, with_memory: bool = False) -> RawCounters:
        """Every counter now. Resident memory is read only ``with_memory`` (or on the
        first reading), else ``previous``'s is reused; a failing busy-time counter
        keeps ``previous``'s value."""
        counters: dict[str, CounterReading] = {}
        sensors = self.sensors
        for source in sensors.sources():
            try:
                joules = source.read_j()
                ranges = source.range_j()
            except Exception as error:  # a sensor must never stop the tracker
                self.disable(source, error)
                continue
            for key, value in joules.items():
                counters[key] = (source, value, ranges.get(key) if ranges else None)
        process_tree = sensors.process_tree
        try:
            busy_s = sensors.system_cpu.busy_s()
        except OSError as error:
            self._notice(f"cannot read CPU counters ({error}); the kernel's CPU share is 0")
            busy_s = previous.system_busy_s if previous is not None else 0.0
        # Memory is a level, not a counter: sampled on ticks only, and the last value is
        # reused at window edges (saving a /proc read on every cell).
        rss_b = (
            process_tree.rss_bytes() if with_memory or previous is None else previous.process_rss_b
        )
        return RawCounters(self._clock_ns(), counters, busy_s, process_tree.cpu_s(), rss_b)

    def disable(self, source: EnergySource, error: BaseException) -> None:
        """Take a failing source out, with one message; CPU and RAM fall back to models."""
        instead = self.sensors.disable(source)
        if instead is None:
            return
        label = "RAPL" if source.name == "rapl" else source.name
        self._notice(f"{label} failed and was disabled, {instead}: {error}")
        self.disabled.append(
            SensorStatus(source.name, source.component, False, source.method, f"failed: {error}")
        )
        try:
            source.close()
        except Exception:  # a broken source may fail to close too
            pass

    def gpu_use(self) -> dict[str, GpuUse | None] | None:
        """How the kernel's processes use each GPU now (``None`` per device: whole,
        share unknown; a device not listed is unused), or ``None`` without GPUs. A GPU
        source that cannot tell counts all its devices as used."""
        gpus = list(self.sensors.gpus)
        if not gpus:
            return None
        pids = self.sensors.process_tree.pids()
        use: dict[str, GpuUse | None] = {}
        for gpu in gpus:
            try:
                use.update(gpu.use_by(pids))
            except Exception as error:
                self._notice(f"cannot tell which GPUs the kernel uses ({error}); counting all")
                use.update(dict.fromkeys(gpu.read_j(), None))
        return use
