"""AMD GPU energy through ROCm's ``amdsmi`` Python module (amdsmi 6.x and 7.x).

Per GPU, the cumulative counter is ``amdsmi_get_energy_count``: ``energy_accumulator``
(called ``power`` before amdsmi 7) times ``counter_resolution`` microjoules. Some GPUs
keep it in 32 bits: a counter that goes down from below 2**32 wrapped there, one that
goes down from above restarted (driver reload) and is counted from zero.
:meth:`AmdSmiSensor.poll_interval_s` asks for reads often enough to see every 32-bit
wrap at ``peak_power_w``.

Where the counter is missing (virtual-machine guests) or stops advancing while the GPU
draws power (seen on MI100 boards), energy is integrated from
``amdsmi_get_power_info`` with the trapezoid rule, and the method is ``modelled``.

Only the GPUs the process can see count: ``ROCR_VISIBLE_DEVICES`` selects among all
GPUs, then ``HIP_VISIBLE_DEVICES`` (or ``CUDA_VISIBLE_DEVICES``, which HIP also honours)
among those, by index in amdsmi's order. Keys are ``amd:<index>``.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .base import MEASURED, MODELLED, SHARE_BY_GPU_USE, GpuUse, SensorStatus

POWER_POLL_INTERVAL_S = 1.0
WRAP_32_BITS = 2**32
# A counter that has not moved for this long while the GPU draws power is stuck (s).
STUCK_AFTER_S = 5.0
STUCK_MIN_POWER_W = 5.0


class _Missing(Exception):
    """Stands in for an amdsmi exception class that a module does not define."""


@dataclass
class _AmdGpu:
    key: str
    index: int
    handle: Any
    name: str
    integrated: bool
    resolution_uj: float = 1.0
    total_j: float = 0.0
    last_count: int = 0
    last_change_ns: int = 0
    last_w: float = 0.0
    last_ns: int = 0


def visible_indices(environ: Mapping[str, str], count: int) -> list[int]:
    """amdsmi indices the process may use, from ``ROCR_VISIBLE_DEVICES`` then
    ``HIP_VISIBLE_DEVICES`` (or ``CUDA_VISIBLE_DEVICES``). Unset means all; as the
    runtime does, a list ends at its first entry that names no device."""
    chosen = list(range(count))
    for names in (("ROCR_VISIBLE_DEVICES",), ("HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")):
        value = next((environ[n] for n in names if n in environ), None)
        if value is None:
            continue
        picked: list[int] = []
        for token in (t.strip() for t in value.split(",")):
            if not token.isdigit() or int(token) >= len(chosen):
                break
            if chosen[int(token)] not in picked:
                picked.append(chosen[int(token)])
        chosen = picked
    return chosen


def _watts(info: Mapping[str, Any]) -> float | None:
    for name in ("current_socket_power", "average_socket_power"):
        value = info.get(name)
        if isinstance(value, (int, float)) and value >= 0:
            return float(value)
    return None


class AmdSmiSensor:
    """Cumulative energy of the visible AMD GPUs, joules, keyed ``amd:<index>``.

    ``amdsmi_module`` replaces ``amdsmi`` (tests pass a stand-in), ``environ`` replaces
    ``os.environ``, ``clock_ns`` the monotonic clock. The constructor never raises: on
    any problem the sensor is ``available=False`` with a one-line ``reason``.
    """

    name = "amdsmi"
    component = "gpu"
    vendor = "amd"
    itemised = True
    process_share = SHARE_BY_GPU_USE

    def __init__(
        self,
        amdsmi_module: ModuleType | Any | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        peak_power_w: float = 1000.0,
    ) -> None:
        self._clock_ns = clock_ns
        self.peak_power_w = peak_power_w
        self._lock = threading.Lock()
        self._gpus: list[_AmdGpu] = []
        self._notes: list[str] = []
        self._initialised = False
        self.method = MEASURED
        self.available = False
        self.reason: str | None = None
        if amdsmi_module is None:
            try:
                amdsmi_module = importlib.import_module("amdsmi")
            except ImportError:
                self.reason = "amdsmi (ROCm's Python module) is not installed"
                return
            except Exception as exc:  # the module loads libamd_smi at import
                self.reason = (
                    f"amdsmi is installed but ROCm's libamd_smi cannot be loaded ({exc!r}): "
                    "no AMD GPU driver stack"
                )
                return
        # The bindings carry no type information: their objects are used as they come.
        self._smi: Any = amdsmi_module
        if not hasattr(amdsmi_module, "amdsmi_get_energy_count") and not hasattr(
            amdsmi_module, "amdsmi_get_power_info"
        ):
            self.reason = "amdsmi is too old (no amdsmi_get_energy_count); ROCm 6 or newer needed"
            return
        error = self._exc("AmdSmiException")
        try:
            flags = getattr(amdsmi_module, "AmdSmiInitFlags", None)
            if flags is not None and hasattr(flags, "INIT_AMD_GPUS"):
                amdsmi_module.amdsmi_init(flags.INIT_AMD_GPUS)
            else:
                amdsmi_module.amdsmi_init()
            self._initialised = True
            handles = list(amdsmi_module.amdsmi_get_processor_handles())
        except error as exc:
            self.reason = f"amdsmi initialisation failed: {exc}"
            self._shutdown()
            return
        env = os.environ if environ is None else environ
        visible = visible_indices(env, len(handles))
        if not visible:
            self.reason = (
                "no AMD GPU to measure"
                if not handles
                else "no AMD GPU visible (HIP/ROCR_VISIBLE_DEVICES hides them all)"
            )
            self._shutdown()
            return
        for index in visible:
            gpu = self._open(index, handles[index])
            if gpu is not None:
                self._gpus.append(gpu)
        if not self._gpus:
            self.reason = "no AMD GPU to measure: " + "; ".join(self._notes)
            self._shutdown()
            return
        self.available = True
        self._update_method()

    def _exc(self, name: str) -> type[BaseException]:
        return getattr(self._smi, name, _Missing)

    def _update_method(self) -> None:
        self.method = MODELLED if any(g.integrated for g in self._gpus) else MEASURED

    def _open(self, index: int, handle: Any) -> _AmdGpu | None:
        smi, error = self._smi, self._exc("AmdSmiException")
        key = f"amd:{index}"
        try:
            name = str(smi.amdsmi_get_gpu_asic_info(handle).get("market_name") or "AMD GPU")
        except (error, AttributeError):
            name = "AMD GPU"
        gpu = _AmdGpu(key, index, handle, name, integrated=False)
        now = self._clock_ns()
        try:
            count, resolution = self._energy_count(handle)
            gpu.last_count, gpu.resolution_uj, gpu.last_change_ns = count, resolution, now
            return gpu
        except (error, AttributeError, KeyError, TypeError, ValueError) as exc:
            energy_error = exc
        watts = self._power_w(handle)
        if watts is None:
            self._notes.append(f"{key}: no energy counter ({energy_error}) nor power")
            return None
        gpu.integrated, gpu.last_w, gpu.last_ns = True, watts, now
        self._notes.append(f"{key}: no energy counter, integrated from power")
        return gpu

    def _energy_count(self, handle: Any) -> tuple[int, float]:
        info = self._smi.amdsmi_get_energy_count(handle)
        # amdsmi 7.x names the counter energy_accumulator; 6.x called it power.
        count = info["energy_accumulator"] if "energy_accumulator" in info else info["power"]
        resolution = float(info["counter_resolution"])
        if resolution <= 0:
            raise ValueError("counter_resolution is 0")
        return int(count), resolution

    def _power_w(self, handle: Any) -> float | None:
        try:
            return _watts(self._smi.amdsmi_get_power_info(handle))
        except (self._exc("AmdSmiException"), AttributeError, TypeError):
            return None

    # -- reading -------------------------------------------------------------------

    def read_j(self) -> dict[str, float]:
        """Cumulative joules per GPU since construction: ``{"amd:0": J, ...}``.

        Thread-safe. Raises ``RuntimeError`` when unavailable or when amdsmi fails.
        """
        with self._lock:
            if not self.available:
                raise RuntimeError(self.reason or "amdsmi sensor unavailable")
            for gpu in self._gpus:
                try:
                    if gpu.integrated:
                        self._integrate(gpu)
                    else:
                        self._count(gpu)
                except (self._exc("AmdSmiException"), KeyError, TypeError, ValueError) as exc:
                    raise RuntimeError(f"amdsmi read failed on {gpu.key}: {exc}") from exc
            return {gpu.key: gpu.total_j for gpu in self._gpus}

    def _count(self, gpu: _AmdGpu) -> None:
        count, _ = self._energy_count(gpu.handle)
        now = self._clock_ns()
        if count == gpu.last_count:
            if (now - gpu.last_change_ns) / 1e9 >= STUCK_AFTER_S:
                watts = self._power_w(gpu.handle)
                if watts is not None and watts >= STUCK_MIN_POWER_W:
                    # Drawing power but the counter does not move: stuck. Integrate from
                    # now on, and count the stuck span at today's power.
                    gpu.total_j += watts * (now - gpu.last_change_ns) / 1e9
                    gpu.integrated, gpu.last_w, gpu.last_ns = True, watts, now
                    self._notes.append(
                        f"{gpu.key}: energy counter stuck at {watts:.0f} W, integrated from power"
                    )
                    self._update_method()
            return
        if count > gpu.last_count:
            delta = count - gpu.last_count
        elif gpu.last_count < WRAP_32_BITS:
            delta = count + WRAP_32_BITS - gpu.last_count  # a 32-bit counter wrapped
        else:
            delta = count  # restarted (driver reload): count from zero
        gpu.total_j += delta * gpu.resolution_uj / 1e6
        gpu.last_count, gpu.last_change_ns = count, now

    def _integrate(self, gpu: _AmdGpu) -> None:
        watts = self._power_w(gpu.handle)
        if watts is None:
            raise ValueError("power unavailable")
        now = self._clock_ns()
        gpu.total_j += (gpu.last_w + watts) / 2 * (now - gpu.last_ns) / 1e9
        gpu.last_w, gpu.last_ns = watts, now

    def range_j(self) -> None:
        """The method's uncertainty applies."""
        return None

    def poll_interval_s(self) -> float | None:
        """1 s when a GPU is integrated from power; else half the time a 32-bit counter
        takes to wrap at ``peak_power_w``; ``None`` when unavailable."""
        if not self.available:
            return None
        if any(g.integrated for g in self._gpus):
            return POWER_POLL_INTERVAL_S
        smallest_uj = min(g.resolution_uj for g in self._gpus) * WRAP_32_BITS
        return smallest_uj / 1e6 / self.peak_power_w / 2

    def gpu_names(self) -> dict[str, str]:
        """Product name per GPU: ``{"amd:0": "AMD Instinct MI300X", ...}``."""
        return {g.key: g.name for g in self._gpus}

    def use_by(self, pids: Iterable[int]) -> dict[str, GpuUse]:
        """GPUs any of ``pids`` runs on (``amdsmi_get_gpu_process_list``). A GPU whose list
        cannot be read counts as used, whole; a shared one is charged whole too (amdsmi
        has no per-process utilisation share), and the use says so."""
        wanted = set(pids)
        used: dict[str, GpuUse] = {}
        with self._lock:
            if not self.available:
                return used
            for gpu in self._gpus:
                try:
                    procs = self._smi.amdsmi_get_gpu_process_list(gpu.handle)
                except (self._exc("AmdSmiException"), AttributeError):
                    used[gpu.key] = GpuUse(None, False, "process list unavailable: whole GPU")
                    continue
                running = {
                    p.get("pid") if isinstance(p, Mapping) else getattr(p, "pid", None)
                    for p in procs
                }
                if running & wanted:
                    shared = not running <= wanted
                    how = (
                        "shared, no per-process share: whole GPU"
                        if shared
                        else "only the kernel's processes"
                    )
                    used[gpu.key] = GpuUse(None, shared, how)
        return used

    def status(self) -> SensorStatus:
        """``detail`` like "2 GPUs: AMD Instinct MI300X (energy counter)", or the reason."""
        if not self.available:
            return SensorStatus(self.name, self.component, False, self.method, self.reason or "")
        names = sorted({g.name for g in self._gpus})
        n = len(self._gpus)
        integrated = sum(g.integrated for g in self._gpus)
        how = f"{integrated} integrated from power" if integrated else "energy counter"
        detail = f"{n} GPU{'s' if n != 1 else ''}: {', '.join(names)} ({how})"
        if self._notes:
            detail += "; " + "; ".join(self._notes)
        return SensorStatus(self.name, self.component, True, self.method, detail)

    def _shutdown(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self._smi.amdsmi_shut_down()
            except self._exc("AmdSmiException"):
                pass  # already shut down: nothing left to release

    def close(self) -> None:
        """Shut amdsmi down (once). Idempotent."""
        with self._lock:
            self._shutdown()
            if self.available:
                self.available = False
                self.reason = "amdsmi sensor closed"
