"""NVIDIA GPU energy through NVML (the ``pynvml`` module of ``nvidia-ml-py``).

Per GPU, the cumulative counter is ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules
since the driver loaded; Volta and newer). Older GPUs lack it; for them the sensor
integrates ``nvmlDeviceGetPowerUsage`` (milliwatts) with the trapezoid rule between
reads. That energy depends on how often :meth:`NvmlSensor.read_j` is called, so
:meth:`NvmlSensor.poll_interval_s` then asks for a read every second, and the sensor's
method is ``modelled`` instead of ``measured`` as soon as one GPU is integrated.

Only the GPUs the kernel can see count: ``CUDA_VISIBLE_DEVICES`` is honoured (indices,
``GPU-<uuid>`` or ``MIG-<uuid>``; empty means none, unset means all). Indices are taken as
NVML (PCI bus) order, which is CUDA's order when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``. A MIG
instance makes its whole physical GPU count, because the energy counter is per GPU.

Device keys carry the vendor: ``nvidia:<NVML index>`` (ledgers written before vendors
were told apart hold ``gpu<index>``; readers show both).

When other processes also run on a GPU the kernel uses, :meth:`NvmlSensor.use_by` gives
the kernel's share of the GPU's SM utilisation (``nvmlDeviceGetProcessUtilization``), so
that process mode charges it that share of the energy above idle (Kepler's choice);
where NVML cannot tell, the whole device is charged and the use says so.

``pynvml`` is imported only when a sensor is created, so importing this module is cheap.
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

# How often power-integrated GPUs must be read (seconds); NVML power is a ~1 s average.
POWER_POLL_INTERVAL_S = 1.0
# An energy counter that has not moved for this long while the GPU draws at least
# STUCK_MIN_POWER_W is stuck: the GPU is integrated from power from then on.
STUCK_AFTER_S = 5.0
STUCK_MIN_POWER_W = 5.0


class _Missing(Exception):
    """Stands in for an NVML exception class that a module does not define."""


@dataclass
class _Gpu:
    """One visible GPU and its running total."""

    key: str  # "nvidia:0", by NVML index
    index: int
    handle: Any
    name: str
    uuid: str
    integrated: bool  # True: energy integrated from power, False: energy counter
    total_j: float = 0.0
    last_mj: int = 0  # energy counter at the previous read (mJ)
    last_w: float = 0.0  # power at the previous read (W)
    last_ns: int = 0  # when last_w was read (monotonic ns)
    last_sample_us: int = 0  # newest process-utilisation sample seen (µs timestamp)
    last_change_ns: int = 0  # when the energy counter last moved (monotonic ns)


def _text(value: str | bytes) -> str:
    # Older pynvml versions return bytes for names and UUIDs.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_visible_devices(
    value: str | None,
    uuids: list[str],
    resolve_mig: Callable[[str], int | None] | None = None,
) -> list[int] | None:
    """NVML indices that ``CUDA_VISIBLE_DEVICES`` leaves visible, in its order.

    ``uuids[i]`` is the UUID of NVML device ``i`` ("GPU-..."). ``None`` means the variable
    is unset: all GPUs are visible. As CUDA does, the list ends at the first entry that
    names no device (so ``""`` and ``-1`` hide every GPU). A ``GPU-`` UUID may be a unique
    prefix. ``MIG-`` entries go through ``resolve_mig`` (MIG UUID -> index of the parent
    GPU, ``None`` if unknown). Duplicates are kept once.
    """
    if value is None:
        return None
    chosen: list[int] = []
    for token in (t.strip() for t in value.split(",")):
        index: int | None = None
        if token.startswith("GPU-"):
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(token)]
            index = matches[0] if len(matches) == 1 else None
        elif token.startswith("MIG-"):
            index = resolve_mig(token) if resolve_mig else None
        elif token.isdigit() and int(token) < len(uuids):
            index = int(token)
        if index is None:
            break
        if index not in chosen:
            chosen.append(index)
    return chosen


class NvmlSensor:
    """Cumulative energy of the visible NVIDIA GPUs, in joules, keyed ``nvidia:<NVML index>``.

    ``nvml_module`` replaces ``pynvml`` (tests pass a fake); ``environ`` replaces
    ``os.environ`` (for ``CUDA_VISIBLE_DEVICES``); ``clock_ns`` replaces
    ``time.monotonic_ns`` for power integration.

    The constructor never raises and never logs: without the library, the driver or a
    usable GPU the sensor is ``available=False`` with a one-line ``reason``.
    """

    name = "nvml"
    component = "gpu"
    vendor = "nvidia"
    itemised = True
    process_share = SHARE_BY_GPU_USE

    def __init__(
        self,
        nvml_module: ModuleType | Any | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._gpus: list[_Gpu] = []
        self._skipped: list[str] = []  # "nvidia:1: <why>" for GPUs that cannot be measured
        self._notes: list[str] = []  # GPUs measured another way than at the start
        self._initialised = False
        self.method = MEASURED
        self.available = False
        self.reason: str | None = None

        if nvml_module is None:
            try:
                nvml_module = importlib.import_module("pynvml")
            except ImportError:
                self.reason = "nvidia-ml-py (module pynvml) is not installed"
                return
        # The bindings carry no type information: their objects are used as they come.
        self._nvml: Any = nvml_module
        error = getattr(nvml_module, "NVMLError", _Missing)
        try:
            nvml_module.nvmlInit()
        except error as exc:
            self.reason = self._init_failure(exc)
            return
        self._initialised = True
        try:
            self._discover(os.environ if environ is None else environ)
        except error as exc:
            self.reason = f"NVML cannot list GPUs: {exc}"
        if not self._gpus and self.reason is None:
            self.reason = "no NVIDIA GPU to measure" + (
                ": " + "; ".join(self._skipped) if self._skipped else ""
            )
        if self.reason is not None:
            self._shutdown()  # nothing to measure: release NVML at once
            return
        self.available = True
        if any(g.integrated for g in self._gpus):
            self.method = MODELLED

    # -- construction ----------------------------------------------------------------

    def _exc(self, name: str) -> type[BaseException]:
        return getattr(self._nvml, name, _Missing)

    def _init_failure(self, exc: BaseException) -> str:
        if isinstance(exc, self._exc("NVMLError_LibraryNotFound")):
            return "NVIDIA driver library (libnvidia-ml) not found: no NVIDIA GPU"
        if isinstance(exc, self._exc("NVMLError_DriverNotLoaded")):
            return "NVIDIA driver not loaded: no NVIDIA GPU"
        return f"NVML initialisation failed: {exc}"

    def _discover(self, environ: Mapping[str, str]) -> None:
        nvml = self._nvml
        error = self._exc("NVMLError")
        handles: list[Any] = []
        uuids: list[str] = []
        unusable: dict[int, str] = {}
        for index in range(int(nvml.nvmlDeviceGetCount())):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            except error as exc:  # e.g. a GPU this container may not use
                handle, uuid = None, ""
                unusable[index] = f"nvidia:{index}: {exc}"
            handles.append(handle)
            uuids.append(uuid)
        visible = parse_visible_devices(
            environ.get("CUDA_VISIBLE_DEVICES"),
            uuids,
            lambda mig: self._mig_parent(mig, len(uuids)),
        )
        if visible is not None and not visible:
            self.reason = "no NVIDIA GPU visible (CUDA_VISIBLE_DEVICES hides them all)"
            return
        for index in range(len(handles)) if visible is None else visible:
            if index in unusable:
                self._skipped.append(unusable[index])
                continue
            gpu = self._open_gpu(index, handles[index], uuids[index])
            if gpu is not None:
                self._gpus.append(gpu)

    def _mig_parent(self, mig_uuid: str, count: int) -> int | None:
        """NVML index of the GPU holding a MIG instance, or ``None``."""
        nvml = self._nvml
        try:
            mig = nvml.nvmlDeviceGetHandleByUUID(mig_uuid)
            parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
            index = int(nvml.nvmlDeviceGetIndex(parent))
        except (self._exc("NVMLError"), AttributeError):
            return None
        return index if 0 <= index < count else None

    def _open_gpu(self, index: int, handle: Any, uuid: str) -> _Gpu | None:
        """Take the baseline of one GPU, or note why it cannot be measured."""
        nvml = self._nvml
        error = self._exc("NVMLError")
        key = f"nvidia:{index}"
        try:
            name = _text(nvml.nvmlDeviceGetName(handle))
        except error:
            name = "NVIDIA GPU"
        gpu = _Gpu(key=key, index=index, handle=handle, name=name, uuid=uuid, integrated=False)
        try:
            gpu.last_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            gpu.last_change_ns = self._clock_ns()
            return gpu
        except error as exc:
            # Pre-Volta GPUs answer NotSupported; anything else also falls back to power.
            energy_error = exc
        try:
            gpu.last_w = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        except error as exc:
            self._skipped.append(f"{key}: no energy counter ({energy_error}) nor power ({exc})")
            return None
        gpu.last_ns = self._clock_ns()
        gpu.integrated = True
        return gpu

    # -- reading -------------------------------------------------------------------

    def read_j(self) -> dict[str, float]:
        """Cumulative joules per GPU since construction: ``{"nvidia:0": J, ...}``.

        Keys use the NVML index of each visible GPU (``CUDA_VISIBLE_DEVICES=2`` gives
        ``nvidia:2``). Power-integrated GPUs gain the trapezoid of the previous and current
        power over the time between reads. Thread-safe. Raises ``RuntimeError`` when
        unavailable, closed, or when NVML fails on a GPU (a lost GPU, say).
        """
        with self._lock:
            if not self.available:
                raise RuntimeError(self.reason or "NVML sensor unavailable")
            error = self._exc("NVMLError")
            nvml = self._nvml
            for gpu in self._gpus:
                try:
                    if gpu.integrated:
                        watts = nvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0
                        now_ns = self._clock_ns()
                        gpu.total_j += (gpu.last_w + watts) / 2 * (now_ns - gpu.last_ns) / 1e9
                        gpu.last_w, gpu.last_ns = watts, now_ns
                    else:
                        self._read_counter(gpu)
                except error as exc:
                    raise RuntimeError(f"NVML read failed on {gpu.key}: {exc}") from exc
            return {gpu.key: gpu.total_j for gpu in self._gpus}

    def _read_counter(self, gpu: _Gpu) -> None:
        nvml = self._nvml
        mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
        now_ns = self._clock_ns()
        if mj == gpu.last_mj:
            if (now_ns - gpu.last_change_ns) / 1e9 >= STUCK_AFTER_S:
                watts = nvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0
                if watts >= STUCK_MIN_POWER_W:
                    # Drawing power but the counter does not move: integrate from now
                    # on, and count the stuck span at today's power.
                    gpu.total_j += watts * (now_ns - gpu.last_change_ns) / 1e9
                    gpu.integrated, gpu.last_w, gpu.last_ns = True, watts, now_ns
                    self._notes.append(f"{gpu.key}: energy counter stuck, integrated from power")
                    self.method = MODELLED
            return
        # The counter only restarts when the driver reloads; then count from zero
        # rather than going negative.
        gpu.total_j += (mj - gpu.last_mj if mj >= gpu.last_mj else mj) / 1000.0
        gpu.last_mj, gpu.last_change_ns = mj, now_ns

    def range_j(self) -> None:
        """The method's uncertainty applies."""
        return None

    def poll_interval_s(self) -> float | None:
        """1.0 s when a GPU's energy is integrated from power, else ``None`` (any is fine)."""
        if self.available and any(g.integrated for g in self._gpus):
            return POWER_POLL_INTERVAL_S
        return None

    @property
    def count(self) -> int:
        """How many GPUs are measured."""
        return len(self._gpus)

    def gpu_names(self) -> dict[str, str]:
        """Product name per measured GPU: ``{"nvidia:0": "NVIDIA H200", ...}``."""
        return {gpu.key: gpu.name for gpu in self._gpus}

    def devices_used_by(self, pids: Iterable[int]) -> set[str]:
        """Keys of the measured GPUs on which any of ``pids`` runs (see :meth:`use_by`)."""
        return set(self.use_by(pids))

    def use_by(self, pids: Iterable[int]) -> dict[str, GpuUse]:
        """How ``pids`` use each measured GPU they run on (compute or graphics).

        A GPU whose process list NVML cannot give (``NotSupported``, no permission, ...) is
        counted as used, whole, since it might be. A GPU shared with other processes gets
        the kernel's share of SM utilisation since the previous call, or ``None`` (charge
        the whole device) where NVML has no per-process utilisation. NVML reports PIDs of
        the host PID namespace: inside a container without it, the kernel's PIDs may not
        match.
        """
        wanted = set(pids)
        used: dict[str, GpuUse] = {}
        with self._lock:
            if not self.available:
                return used
            error = self._exc("NVMLError")
            for gpu in self._gpus:
                try:
                    procs = list(self._nvml.nvmlDeviceGetComputeRunningProcesses(gpu.handle))
                    procs += self._nvml.nvmlDeviceGetGraphicsRunningProcesses(gpu.handle)
                except error:
                    used[gpu.key] = GpuUse(None, False, "process list unavailable: whole GPU")
                    continue
                running = {getattr(p, "pid", None) for p in procs}
                if not running & wanted:
                    continue
                if running <= wanted:
                    used[gpu.key] = GpuUse(None, False, "only the kernel's processes")
                    continue
                used[gpu.key] = self._shared_use(gpu, wanted)
        return used

    def _shared_use(self, gpu: _Gpu, wanted: set[int]) -> GpuUse:
        """The kernel's SM-utilisation share on a GPU other processes also use."""
        try:
            samples = self._nvml.nvmlDeviceGetProcessUtilization(gpu.handle, gpu.last_sample_us)
        except (self._exc("NVMLError"), AttributeError) as exc:
            return GpuUse(
                None, True, f"shared, per-process utilisation unavailable ({exc}): whole GPU"
            )
        mine = total = 0.0
        for sample in samples:
            sm = float(getattr(sample, "smUtil", 0) or 0)
            total += sm
            if getattr(sample, "pid", None) in wanted:
                mine += sm
            gpu.last_sample_us = max(gpu.last_sample_us, int(getattr(sample, "timeStamp", 0)))
        if total <= 0:
            return GpuUse(0.0, True, "shared, the kernel's processes idle on it")
        return GpuUse(mine / total, True, "shared: the kernel's share of SM utilisation")

    def status(self) -> SensorStatus:
        """``detail`` like "1 GPU: NVIDIA H200 (energy counter)", or the reason."""
        if self.available:
            names = sorted({g.name for g in self._gpus})
            n = len(self._gpus)
            how = (
                "energy counter"
                if self.method == MEASURED
                else f"{sum(g.integrated for g in self._gpus)} integrated from power"
            )
            detail = f"{n} GPU{'s' if n != 1 else ''}: {', '.join(names)} ({how})"
            if self._skipped:
                detail += "; skipped " + "; ".join(self._skipped)
            if self._notes:
                detail += "; " + "; ".join(self._notes)
        else:
            detail = self.reason or "unavailable"
        return SensorStatus(self.name, self.component, self.available, self.method, detail)

    def _shutdown(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self._nvml.nvmlShutdown()
            except self._exc("NVMLError"):
                pass  # already shut down elsewhere; nothing left to release

    def close(self) -> None:
        """Shut NVML down (once). Idempotent; the sensor is unavailable afterwards."""
        with self._lock:
            self._shutdown()
            if self.available:
                self.available = False
                self.reason = "NVML sensor closed"


# Where an NVIDIA driver shows itself: Linux device nodes and proc entry, and WSL2's
# driver library folder. Checking these few paths first spares every machine without
# a GPU the import of pynvml and the loading attempt of libnvidia-ml (tens of ms).
_DRIVER_MARKERS = ("dev/nvidiactl", "proc/driver/nvidia/version", "usr/lib/wsl/lib")


def nvidia_driver_present(root: str = "/", environ: Mapping[str, str] | None = None) -> bool:
    """True when this system shows any sign of an NVIDIA driver (cheap: a few stats).

    On Windows the driver installs ``nvml.dll`` in ``%SystemRoot%\\System32``."""
    if any(os.path.exists(os.path.join(root, marker)) for marker in _DRIVER_MARKERS):
        return True
    system_root = (os.environ if environ is None else environ).get("SystemRoot")
    if not system_root:
        return False
    return os.path.exists(os.path.join(system_root, "System32", "nvml.dll"))
