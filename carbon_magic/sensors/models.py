"""Sources for machines without energy counters: the CPU load→power curve and RAM W/GB.

Both are cumulative like the hardware counters, so the tracker treats every source the
same way. The CPU source applies the curve to each read's CPU-time delta (every tick
and every window edge is a read), and keeps the curve's own range as cumulative low and
high counters, so a window's CPU range is the model's, not a flat spread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from carbon_magic.sensors.base import (
    ASSUMED,
    MODELLED,
    SHARE_BY_CPU_TIME,
    SHARE_BY_MEMORY,
    SensorStatus,
)

BYTES_PER_GB = 1e9

CPU_MODEL_KEY = "cpu-model"
RAM_MODEL_KEY = "ram-model"


class ModelledCpu:
    """CPU energy from a ``CpuPowerModel`` over a cumulative busy-CPU-seconds counter.

    ``power`` is a ``cpu_power.CpuPowerModel``; ``counter`` offers ``busy_s()`` (busy CPU
    seconds of all visible CPUs, cumulative) and ``source`` (where they come from);
    ``clock_ns`` replaces ``time.monotonic_ns`` in tests. A counter that cannot be read
    counts as idle for that read, and the status says so.
    """

    name = "cpu-model"
    component = "cpu"
    method = MODELLED
    available = True
    reason: str | None = None
    itemised = False
    process_share = SHARE_BY_CPU_TIME

    def __init__(
        self, power: Any, counter: Any, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self.power = power
        self.counter = counter
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._last_ns = clock_ns()
        self._last_busy_s = self._busy_s()
        self._central_j = self._low_j = self._high_j = 0.0

    def _busy_s(self) -> float | None:
        try:
            return self.counter.busy_s()
        except OSError as error:
            self._problem = f"cannot read CPU counters ({error}): idle power only"
            return None

    def read_j(self) -> dict[str, float]:
        """Cumulative modelled joules since creation: ``{"cpu-model": J}``. Thread-safe."""
        with self._lock:
            now_ns, busy_s = self._clock_ns(), self._busy_s()
            delta_busy = 0.0
            if busy_s is not None and self._last_busy_s is not None:
                delta_busy = busy_s - self._last_busy_s
            energy = self.power.energy_j((now_ns - self._last_ns) / 1e9, delta_busy)
            self._central_j += energy.central_j
            self._low_j += energy.low_j
            self._high_j += energy.high_j
            self._last_ns = now_ns
            if busy_s is not None:
                self._last_busy_s = busy_s
            return {CPU_MODEL_KEY: self._central_j}

    def range_j(self) -> dict[str, tuple[float, float]]:
        """Cumulative (low, high) joules as of the last read: the model's own range."""
        with self._lock:
            return {CPU_MODEL_KEY: (self._low_j, self._high_j)}

    def poll_interval_s(self) -> None:
        """Any interval: the energy comes from counters."""
        return None

    def status(self) -> SensorStatus:
        """The curve's idle/max watts, where they come from, and the CPU-time source."""
        power = self.power
        detail = (
            f"{power.idle_w:.1f}–{power.max_w:.1f} W for {power.n_cpus:g} CPUs, "
            f"{power.method} ({power.source}), "
            f"utilisation from {getattr(self.counter, 'source', '?')}"
        )
        if self._problem:
            detail += f"; {self._problem}"
        return SensorStatus(self.name, self.component, True, self.method, detail)

    def close(self) -> None:
        """Nothing to release (the counter belongs to the caller)."""


class ModelledRam:
    """RAM energy at a constant watts per GB of installed memory (method ``assumed``).

    Process mode charges the kernel its resident share of installed memory.
    ``w_per_gb`` is called at every read, so a changed setting applies from then on.
    """

    name = "ram-model"
    component = "ram"
    method = ASSUMED
    available = True
    reason: str | None = None
    itemised = False
    process_share = SHARE_BY_MEMORY

    def __init__(
        self,
        total_bytes: int,
        w_per_gb: Callable[[], float],
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.total_bytes = total_bytes
        self._w_per_gb = w_per_gb
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._last_ns = clock_ns()
        self._total_j = 0.0

    @staticmethod
    def power_w(w_per_gb: float, memory_bytes: float) -> float:
        """Power of ``memory_bytes`` of RAM at ``w_per_gb``, watts."""
        return w_per_gb * memory_bytes / BYTES_PER_GB

    def read_j(self) -> dict[str, float]:
        """Cumulative joules of all installed memory since creation: ``{"ram-model": J}``."""
        with self._lock:
            now_ns = self._clock_ns()
            watts = self.power_w(self._w_per_gb(), self.total_bytes)
            self._total_j += watts * (now_ns - self._last_ns) / 1e9
            self._last_ns = now_ns
            return {RAM_MODEL_KEY: self._total_j}

    def range_j(self) -> None:
        """The ``assumed`` method's uncertainty applies."""
        return None

    def poll_interval_s(self) -> None:
        """Any interval."""
        return None

    def status(self) -> SensorStatus:
        """The W/GB figure and the installed memory."""
        detail = (
            f"{self._w_per_gb():g} W/GB × {self.total_bytes / BYTES_PER_GB:.1f} GB installed"
            " (no DRAM energy counter)"
        )
        return SensorStatus(self.name, self.component, True, self.method, detail)

    def close(self) -> None:
        """Nothing to release."""
