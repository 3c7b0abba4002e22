"""Memory power: a constant watts-per-GB model (method ``assumed``)."""

from __future__ import annotations

from carbon_magic.sensors.base import ASSUMED, SensorStatus

BYTES_PER_GB = 1e9


class RamModel:
    """RAM power as ``w_per_gb`` × gigabytes: installed memory (machine mode) or the
    kernel tree's resident memory (process mode)."""

    name = "ram-model"
    component = "ram"
    method = ASSUMED
    available = True
    reason: str | None = None

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes

    @staticmethod
    def power_w(w_per_gb: float, memory_bytes: float) -> float:
        """Power of ``memory_bytes`` of RAM at ``w_per_gb``, watts."""
        return w_per_gb * memory_bytes / BYTES_PER_GB

    def status(self, w_per_gb: float) -> SensorStatus:
        """Status line: the W/GB figure and the installed memory."""
        detail = f"{w_per_gb:g} W/GB × {self.total_bytes / BYTES_PER_GB:.1f} GB installed"
        return SensorStatus(self.name, self.component, True, self.method, detail)
