"""Apple Silicon energy through ``zeus-apple-silicon`` (IOReport counters, no sudo).

``AppleEnergyMonitor().get_cumulative_energy()`` returns ``AppleEnergyMetrics``: energy
in millijoules since the monitor was created, per part of the SoC: ``cpu_total_mj``,
``dram_mj``, ``gpu_mj``, ``gpu_sram_mj``, ``ane_mj`` (each ``None`` where the chip does
not report it). One monitor serves three sources, one per tracker component: CPU
(``apple:cpu``), RAM (``apple:dram``) and accelerators (``apple:gpu``, GPU and its SRAM;
``apple:ane``, the Neural Engine, whose energy counts as GPU energy but which is not
counted as a GPU: ``measurement.is_gpu_key``). A tick reads the three within
microseconds, so one sample younger than ``SAMPLE_REUSE_S`` serves all three.

The SoC shares one memory and one GPU between every process; process mode charges the
kernel CPU and DRAM by its CPU-time share and the GPU whole (macOS tells no per-process
GPU use), and the status says so.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from carbon_magic.engine.measurement import APPLE_ANE_KEY

from .base import MEASURED, SHARE_BY_CPU_TIME, GpuUse, SensorStatus

SAMPLE_REUSE_S = 0.002

# (device key, component, metric fields summed into it)
_PARTS = (
    ("apple:cpu", "cpu", ("cpu_total_mj",)),
    ("apple:dram", "ram", ("dram_mj",)),
    ("apple:gpu", "gpu", ("gpu_mj", "gpu_sram_mj")),
    (APPLE_ANE_KEY, "gpu", ("ane_mj",)),
)


def is_apple_silicon(platform: str = sys.platform, machine: str | None = None) -> bool:
    """True on macOS on an arm64 Mac."""
    if platform != "darwin":
        return False  # without importing the platform module (start-up time)
    if machine is None:
        import platform as platform_module

        machine = platform_module.machine()
    return platform == "darwin" and machine == "arm64"


class AppleSoc:
    """The shared monitor: cumulative joules per part, wraps and restarts unfolded.

    ``module`` replaces ``zeus_apple_silicon`` (tests pass a stand-in). The constructor
    never raises; ``available`` and ``reason`` say how it went.
    """

    def __init__(
        self, module: Any | None = None, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self.available = False
        self.reason: str | None = None
        self.chip = "Apple Silicon"
        self._last_mj: dict[str, int] = {}
        self._total_j: dict[str, float] = {}
        self._sampled_ns = 0
        if module is None:
            try:
                module = importlib.import_module("zeus_apple_silicon")
            except ImportError:
                self.reason = (
                    "zeus-apple-silicon is not installed (pip install carbon_magic[apple])"
                )
                return
            except Exception as exc:
                self.reason = f"zeus-apple-silicon cannot load: {exc}"
                return
        try:
            self._monitor = module.AppleEnergyMonitor()
            first = self._monitor.get_cumulative_energy()
        except Exception as exc:  # the library raises plain RuntimeErrors
            self.reason = f"zeus-apple-silicon cannot read the energy counters: {exc}"
            return
        for key, _, fields in _PARTS:
            values = [getattr(first, f, None) for f in fields]
            if any(v is not None for v in values):
                self._last_mj[key] = sum(int(v) for v in values if v is not None)
                self._total_j[key] = 0.0
        if "apple:cpu" not in self._last_mj:
            self.reason = "zeus-apple-silicon reports no CPU energy on this chip"
            return
        self._sampled_ns = clock_ns()
        self.available = True

    def expire_sample(self) -> None:
        """Make the next ``read_j`` ask the library again rather than reuse the sample
        taken less than ``SAMPLE_REUSE_S`` ago."""
        with self._lock:
            self._sampled_ns = 0

    def parts(self, component: str) -> list[str]:
        """Device keys this SoC reports for ``component``."""
        return [k for k, c, _ in _PARTS if c == component and k in self._last_mj]

    def read_j(self) -> dict[str, float]:
        """Cumulative joules per part. Raises ``RuntimeError`` on a failing library."""
        with self._lock:
            if not self.available:
                raise RuntimeError(self.reason or "Apple energy counters unavailable")
            now = self._clock_ns()
            if (now - self._sampled_ns) / 1e9 >= SAMPLE_REUSE_S:
                try:
                    metrics = self._monitor.get_cumulative_energy()
                except Exception as exc:
                    raise RuntimeError(f"zeus-apple-silicon read failed: {exc}") from exc
                for key, _, fields in _PARTS:
                    if key not in self._last_mj:
                        continue
                    mj = sum(int(getattr(metrics, f, None) or 0) for f in fields)
                    last = self._last_mj[key]
                    # A counter that went down restarted: count from zero, never negative.
                    self._total_j[key] += (mj - last if mj >= last else mj) / 1000.0
                    self._last_mj[key] = mj
                self._sampled_ns = now
            return dict(self._total_j)


class AppleSource:
    """One component's view of an :class:`AppleSoc` (CPU, RAM or accelerators)."""

    name = "apple"
    method = MEASURED
    vendor = "apple"
    itemised = True
    process_share = SHARE_BY_CPU_TIME

    def __init__(self, soc: AppleSoc, component: str) -> None:
        self.soc = soc
        self.component = component
        self._keys = soc.parts(component) if soc.available else []
        self.available = bool(self._keys)
        self.reason = None if self.available else (soc.reason or f"no Apple {component} counter")

    def read_j(self) -> dict[str, float]:
        """Cumulative joules per part of this component."""
        totals = self.soc.read_j()
        return {key: totals[key] for key in self._keys}

    def range_j(self) -> None:
        """The method's uncertainty applies."""
        return None

    def poll_interval_s(self) -> None:
        """Any interval: the library's counters are 64-bit."""
        return None

    def gpu_names(self) -> dict[str, str]:
        """Names of the accelerator parts."""
        names = {
            "apple:gpu": f"{self.soc.chip} GPU",
            APPLE_ANE_KEY: f"{self.soc.chip} Neural Engine",
        }
        return {k: names[k] for k in self._keys if k in names}

    def use_by(self, pids: Iterable[int]) -> dict[str, GpuUse]:
        """macOS tells no per-process GPU use: every part counts as used, whole."""
        return {
            k: GpuUse(None, False, "no per-process GPU use on macOS: whole GPU") for k in self._keys
        }

    def status(self) -> SensorStatus:
        """What is measured, or why not."""
        if not self.available:
            return SensorStatus(self.name, self.component, False, self.method, self.reason or "")
        parts = ", ".join(k.split(":", 1)[1] for k in self._keys)
        detail = f"{parts} energy (zeus-apple-silicon, IOReport)"
        if self.component == "ram":
            detail += "; the kernel is charged its CPU-time share"
        return SensorStatus(self.name, self.component, True, self.method, detail)

    def close(self) -> None:
        """Nothing to release."""
