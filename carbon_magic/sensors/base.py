"""What every energy sensor offers the tracker.

A sensor exposes *cumulative* counters (joules since the sensor was created, per device)
so that any window's energy is a difference of two readings, whatever happened between.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

MEASURED = "measured"  # a hardware energy counter (RAPL, NVML total energy)
MODELLED = "modelled"  # computed from utilisation counters with a power model
ASSUMED = "assumed"  # a constant per unit (W/GB), nothing of the hardware read

METHODS = (MEASURED, MODELLED, ASSUMED)


@dataclass(frozen=True)
class SensorStatus:
    """How one sensor stands, for ``%carbon status`` and the ledger."""

    name: str  # "rapl", "nvml", "amdsmi", "apple", "cpu-model", "ram-model"
    component: str  # "cpu", "gpu" or "ram"
    available: bool
    method: str  # one of METHODS
    detail: str  # what it measures ("2 packages + dram") or why it is unavailable


@dataclass(frozen=True)
class GpuUse:
    """How the kernel's processes use one GPU, for process-mode attribution.

    ``sm_share`` is the kernel's share (0–1) of the GPU's work when other processes also
    run on it (NVIDIA: SM utilisation; AMD: gfx engine time); ``None`` means the whole
    device is charged. ``how`` is one line for the method detail.
    """

    sm_share: float | None
    shared: bool
    how: str


# How process mode shares a source's energy with the kernel.
SHARE_BY_CPU_TIME = "cpu-time"  # the kernel tree's share of busy CPU time
SHARE_BY_MEMORY = "memory"  # the kernel tree's share of installed memory (resident)
SHARE_BY_GPU_USE = "gpu-use"  # the devices (or SM share) the kernel's processes use


class EnergySource(Protocol):
    """A source of cumulative energy counters for one component (CPU or RAM).

    ``process_share`` is ``SHARE_BY_CPU_TIME`` or ``SHARE_BY_MEMORY`` (GPU sources:
    ``SHARE_BY_GPU_USE``); ``itemised`` says whether its device keys name devices of
    their own (a model's do not), for the per-device breakdown.
    """

    name: str
    component: str
    method: str
    available: bool
    reason: str | None  # one line saying why it is unavailable (None when available)
    itemised: bool
    process_share: str

    def read_j(self) -> dict[str, float]:
        """Cumulative joules per device key since creation (wraparound already handled).

        Thread-safe. Raises only ``OSError``/``RuntimeError`` on a failing device; the
        tracker then disables the source with one message.
        """

    def range_j(self) -> dict[str, tuple[float, float]] | None:
        """Cumulative (low, high) joules per key as of the last ``read_j``, for sources
        whose model carries its own range; ``None`` for measured counters (the
        method's uncertainty applies)."""

    def poll_interval_s(self) -> float | None:
        """The longest the tracker may wait between reads without losing energy
        (e.g. to see every counter wrap), or ``None`` when any interval is fine."""

    def status(self) -> SensorStatus:
        """Current status for display."""

    def close(self) -> None:
        """Release handles. Idempotent."""


class GpuSource(EnergySource, Protocol):
    """An accelerator source: counters per GPU (``nvidia:0``, ``amd:1``, ``apple:gpu``)."""

    vendor: str

    def gpu_names(self) -> dict[str, str]:
        """Product name per device key."""

    def use_by(self, pids: Iterable[int]) -> dict[str, GpuUse]:
        """The devices any of ``pids`` runs on and how (devices not listed are unused)."""


class SystemCpu(Protocol):
    """The machine's cumulative busy CPU time (``/proc/stat``, a cgroup, psutil)."""

    def busy_s(self) -> float:
        """Busy CPU seconds, all CPUs, since boot (or the counter's start).

        Raises ``OSError`` when the counter cannot be read."""

    def close(self) -> None:
        """Release kept-open files. Idempotent."""


class ProcessTree(Protocol):
    """The kernel's process tree: its CPU time, resident memory and pids."""

    def cpu_s(self, include_children: bool = True) -> float:
        """Cumulative CPU seconds of the kernel and (by default) its descendants."""

    def rss_bytes(self) -> int:
        """Resident memory of the tree now, bytes (a level, not a counter)."""

    def refresh_children(self) -> None:
        """Find the kernel's descendants again (costly: called rarely)."""

    def pids(self) -> set[int]:
        """The tree's process ids as of the last refresh."""


# The protocol the first sensors were written against (kept for its name).
EnergySensor = EnergySource


class Unavailable:
    """The null source for absent hardware: no counters, one line saying why."""

    available = False
    vendor = ""
    itemised = False
    process_share = SHARE_BY_CPU_TIME  # never applied: there are no counters to share

    def __init__(self, name: str, component: str, method: str, reason: str) -> None:
        self.name = name
        self.component = component
        self.method = method
        self.reason: str | None = reason

    def read_j(self) -> dict[str, float]:
        """No counters: always empty."""
        return {}

    def range_j(self) -> None:
        """No range of its own."""
        return None

    def poll_interval_s(self) -> None:
        """Never needs reading."""
        return None

    def status(self) -> SensorStatus:
        """Unavailable, with the reason."""
        return SensorStatus(self.name, self.component, False, self.method, self.reason or "")

    def gpu_names(self) -> dict[str, str]:
        """No devices."""
        return {}

    def use_by(self, pids: Iterable[int]) -> dict[str, GpuUse]:
        """No devices."""
        return {}

    def close(self) -> None:
        """Nothing to release."""
