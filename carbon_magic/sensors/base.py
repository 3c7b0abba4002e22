"""What every energy sensor offers the tracker.

A sensor exposes *cumulative* counters (joules since the sensor was created, per device)
so that any window's energy is a difference of two readings, whatever happened between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MEASURED = "measured"  # a hardware energy counter (RAPL, NVML total energy)
MODELLED = "modelled"  # computed from utilisation counters with a power model
ASSUMED = "assumed"  # a constant per unit (W/GB), nothing of the hardware read

METHODS = (MEASURED, MODELLED, ASSUMED)


@dataclass(frozen=True)
class SensorStatus:
    """How one sensor stands, for ``%carbon status`` and the ledger."""

    name: str  # "rapl", "nvml", "cpu-model", "ram-model"
    component: str  # "cpu", "gpu" or "ram"
    available: bool
    method: str  # one of METHODS
    detail: str  # what it measures ("2 packages + dram") or why it is unavailable


class EnergySensor(Protocol):
    """A source of cumulative energy counters for one component."""

    name: str
    component: str
    method: str
    available: bool
    reason: str | None  # one line saying why it is unavailable (None when available)

    def read_j(self) -> dict[str, float]:
        """Cumulative joules per device since creation (wraparound already handled).

        Thread-safe. Raises only ``OSError``/``RuntimeError`` on a failing device; the
        tracker then disables the sensor with one message.
        """

    def poll_interval_s(self) -> float | None:
        """The longest the tracker may wait between reads without losing energy
        (e.g. to see every RAPL wrap), or ``None`` when any interval is fine."""

    def status(self) -> SensorStatus:
        """Current status for display."""

    def close(self) -> None:
        """Release handles (NVML shutdown). Idempotent."""
