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

When other processes also run on a GPU the kernel uses, :meth:`AmdSmiSensor.use_by`
splits it by gfx engine time: each process's ``engine_usage["gfx"]`` from
``amdsmi_get_gpu_process_list`` (amdsmi 6.2 and newer; from ``amdsmi_get_gpu_process_info``
before, where the list holds process handles) is its cumulative busy time on the
graphics/compute engine, nanoseconds. The kernel's share is its processes' growth of that
time over every process's since the previous call, and process mode charges it that share
of the energy above idle, as for NVIDIA's SM utilisation. Where there is no previous
sample, a field is missing, nobody's time grew or someone's went back (a restarted
process, a reused pid), the whole device is charged and the use says why.
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
    # gfx engine ns per pid at the previous use_by; None: no complete sample to compare.
    gfx_ns: dict[int, int] | None = None


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


def gfx_time_share(
    previous: Mapping[int, int] | None, current: Mapping[int, int], wanted: set[int]
) -> tuple[float | None, str]:
    """The share (0–1) of a GPU's gfx engine time that the ``wanted`` pids took between
    two samples of every process's cumulative gfx engine time (pid -> ns), and one line
    saying how; the share is ``None`` (charge the whole GPU) without a ``previous``
    sample, when nobody's time grew, or when someone's went back (a restarted process or
    a reused pid). A pid new since ``previous`` counts from zero; one gone since is left
    out."""
    if previous is None:
        return None, "shared, first sample of gfx engine time: whole GPU"
    mine = total = 0
    for pid, ns in current.items():
        grown = ns - previous.get(pid, 0)
        if grown < 0:
            return None, "shared, gfx engine time went back (process restarted?): whole GPU"
        total += grown
        if pid in wanted:
            mine += grown
    if total <= 0:
        return None, "shared, no gfx engine time since the last sample: whole GPU"
    return mine / total, "shared: split by gfx engine time"


def _gfx_ns(info: Mapping[str, Any]) -> int | None:
    """A process entry's cumulative gfx engine time, ns; None where it is missing."""
    usage = info.get("engine_usage")
    value = usage.get("gfx") if isinstance(usage, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return int(value)


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
        """How ``pids`` use each GPU they run on (``amdsmi_get_gpu_process_list``).

        A GPU whose list cannot be read counts as used, whole. One shared with other
        processes gets the kernel's share of gfx engine time since the previous call
        (:func:`gfx_time_share`), or ``None`` (charge the whole GPU) where that cannot be
        told, and the use says which. Every call keeps each GPU's sample for the next.
        """
        wanted = set(pids)
        used: dict[str, GpuUse] = {}
        with self._lock:
            if not self.available:
                return used
            for gpu in self._gpus:
                try:
                    entries = self._processes(gpu.handle)
                except (self._exc("AmdSmiException"), AttributeError, TypeError):
                    gpu.gfx_ns = None
                    used[gpu.key] = GpuUse(None, False, "process list unavailable: whole GPU")
                    continue
                previous = gpu.gfx_ns
                current: dict[int, int] | None = {}
                for pid, ns in entries:
                    if pid is None or ns is None or current is None:
                        current = None
                    else:
                        current[pid] = current.get(pid, 0) + ns
                gpu.gfx_ns = current
                running = {pid for pid, _ in entries}
                if not running & wanted:
                    continue
                if running <= wanted:
                    used[gpu.key] = GpuUse(None, False, "only the kernel's processes")
                elif current is None:
                    how = "shared, no per-process gfx engine time: whole GPU"
                    used[gpu.key] = GpuUse(None, True, how)
                else:
                    share, how = gfx_time_share(previous, current, wanted)
                    used[gpu.key] = GpuUse(share, True, how)
        return used

    def _processes(self, handle: Any) -> list[tuple[int | None, int | None]]:
        """(pid, cumulative gfx engine ns) of each process on a GPU; either is None
        where amdsmi does not give it. amdsmi 6.2 and newer list dicts; older versions
        list process handles, each read with ``amdsmi_get_gpu_process_info``."""
        entries: list[tuple[int | None, int | None]] = []
        for proc in self._smi.amdsmi_get_gpu_process_list(handle):
            info: Any = proc
            if not isinstance(proc, Mapping) and hasattr(self._smi, "amdsmi_get_gpu_process_info"):
                try:
                    info = self._smi.amdsmi_get_gpu_process_info(handle, proc)
                except self._exc("AmdSmiException"):
                    info = None  # gone since the list was read, or unreadable
            if isinstance(info, Mapping):
                pid = info.get("pid")
                entries.append((pid if isinstance(pid, int) else None, _gfx_ns(info)))
            else:
                pid = getattr(info, "pid", None)
                entries.append((pid if isinstance(pid, int) else None, None))
        return entries

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
