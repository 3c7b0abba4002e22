"""Every device behind one seam: ``detect(settings) -> Sensors``.

A ``Sensors`` holds one CPU source, one RAM source and a list of GPU sources, each a
cumulative-counter source (``base.EnergySource``/``base.GpuSource``). What is chosen:

- CPU: Apple Silicon counters, else RAPL packages (or psys), else the load→power curve
  over CPU time (``/proc`` on Linux, psutil on macOS and Windows).
- RAM: Apple DRAM, else RAPL DRAM zones, else W/GB of installed memory. With RAPL psys
  counted, DRAM is inside the CPU figure and RAM says so.
- GPUs: per the ``gpus`` setting, NVIDIA (NVML), AMD (amdsmi) and Apple.

Nothing is ``None``: the models are always there to fall back on, and sensors that were
looked for but not used keep their one-line reason in ``Sensors.unused``. Importing this
package is cheap; vendor modules load inside ``detect``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from carbon_magic.setting_parsers import gpu_list
from carbon_magic.vocabulary import GPU_VENDORS

from .base import (
    MEASURED,
    MODELLED,
    SHARE_BY_CPU_TIME,
    EnergySource,
    GpuSource,
    ProcessTree,
    SensorStatus,
    SystemCpu,
    Unavailable,
)

if TYPE_CHECKING:
    from carbon_magic.cpu_model.power import CpuPowerModel
    from carbon_magic.settings import Settings

log = logging.getLogger("carbon_magic")


# Where the amdgpu/ROCm driver shows itself: its kernel fusion driver node and module.
# Checked here so that machines without one never import the AMD module.
_AMD_DRIVER_MARKERS = ("dev/kfd", "sys/module/amdgpu")


def amd_driver_present(root: str = "/") -> bool:
    """True when this system shows an amdgpu/ROCm driver (cheap: a few stats)."""
    return any(os.path.exists(os.path.join(root, marker)) for marker in _AMD_DRIVER_MARKERS)


class CoveredByPsys(Unavailable):
    """The RAM source when RAPL psys is counted: DRAM is inside the CPU figure."""

    available = True
    itemised = True
    process_share = SHARE_BY_CPU_TIME

    def __init__(self) -> None:
        super().__init__("rapl", "ram", MEASURED, "DRAM is inside RAPL psys, counted with the CPU")
        self.reason = None
        self._detail = "DRAM is inside RAPL psys, counted with the CPU"

    def status(self) -> SensorStatus:
        """Says where DRAM went."""
        return SensorStatus(self.name, self.component, True, self.method, self._detail)


@dataclass
class Sensors:
    """What the tracker reads: sources, the models to fall back on, CPU-time counters.

    ``cpu_power`` is the ``cpu_power.CpuPowerModel`` behind ``cpu_model``;
    ``total_memory_bytes`` the installed memory (bytes).
    """

    cpu: EnergySource
    ram: EnergySource
    gpus: list[GpuSource]
    cpu_model: EnergySource
    ram_model: EnergySource
    system_cpu: SystemCpu
    process_tree: ProcessTree
    cpu_power: CpuPowerModel
    cpu_model_name: str
    n_cpus: float
    total_memory_bytes: int
    unused: list[SensorStatus] = field(default_factory=list)

    def sources(self) -> list[EnergySource]:
        """Every source read on a tick: CPU, RAM, then the GPUs."""
        return [self.cpu, self.ram, *self.gpus]

    def components(self) -> list[str]:
        """The components measured (``gpu`` only when GPUs are seen)."""
        return ["cpu", "gpu", "ram"] if self.gpus else ["cpu", "ram"]

    def methods(self) -> dict[str, str]:
        """How each component's energy is obtained: measured, modelled or assumed."""
        methods = {"cpu": self.cpu.method}
        if self.gpus:
            kinds = {gpu.method for gpu in self.gpus}
            methods["gpu"] = MEASURED if kinds == {MEASURED} else MODELLED
        methods["ram"] = self.ram.method
        return methods

    def disable(self, source: EnergySource) -> str | None:
        """Take a failing source out: CPU and RAM fall back to their models, a GPU
        source is dropped. Returns what happens instead (one phrase), or ``None`` when
        ``source`` is not in use."""
        if source is self.cpu:
            self.cpu = self.cpu_model
            return "using the CPU model"
        if source is self.ram:
            self.ram = self.ram_model
            return "using the W/GB model"
        if any(gpu is source for gpu in self.gpus):
            self.gpus[:] = [gpu for gpu in self.gpus if gpu is not source]
            return "its GPUs are no longer measured"
        return None

    def hardware(self) -> dict[str, object]:
        """A short hardware summary for the ledger and reports: host, platform, CPU
        model and count, RAM (GB), GPU names by device key, the CPU power model (W)."""
        return {
            "host": socket.gethostname(),
            "platform": sys.platform,
            "cpu_model": self.cpu_model_name,
            "n_cpus": self.n_cpus,
            "ram_gb": round(self.total_memory_bytes / 1e9, 1),
            "gpus": self.gpu_names(),
            "cpu_power": {
                "idle_w": self.cpu_power.idle_w,
                "max_w": self.cpu_power.max_w,
                "source": self.cpu_power.source,
            },
        }

    def statuses(self) -> list[SensorStatus]:
        """One line per source in use, then the ones looked for and not used."""
        return [source.status() for source in self.sources()] + list(self.unused)

    def gpu_names(self) -> dict[str, str]:
        """Product name per GPU device key, all vendors."""
        names: dict[str, str] = {}
        for gpu in self.gpus:
            names.update(gpu.gpu_names())
        return names

    def close(self) -> None:
        """Release every source and counter. Idempotent."""
        for source in {
            id(s): s for s in (*self.sources(), self.cpu_model, self.ram_model)
        }.values():
            try:
                source.close()
            except Exception:  # closing never fails a caller
                pass
        close = getattr(self.system_cpu, "close", None)
        if close is not None:
            close()


def detect(
    settings: Settings,
    *,
    proc_root: str = "/proc",
    modules: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    driver_root: str = "/",
    apple_silicon: bool | None = None,
) -> Sensors:
    """Find what this machine can measure, per ``settings`` (``powercap_root``,
    ``rapl_psys``, ``cpu_idle_w``/``cpu_max_w``, ``cloud_region``, ``ram_w_per_gb``,
    ``gpus``).

    Test seams: ``proc_root`` without a ``stat`` file forces the psutil path;
    ``modules`` maps ``pynvml``/``amdsmi``/``zeus_apple_silicon`` to stand-ins;
    ``environ`` replaces ``os.environ`` (visible-device variables); ``driver_root`` is
    where the cheap driver pre-check looks; ``apple_silicon`` overrides the platform
    check. Never raises for missing or failing hardware.
    """
    from carbon_magic.cpu_model import power as cpu_power

    from .cputime import cpu_time_counters, total_memory_bytes
    from .models import ModelledCpu, ModelledRam
    from .rapl import RaplSensor

    modules = modules or {}
    n_cpus = cpu_power.visible_cpu_count()
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    # A cgroup quota below the CPUs we may run on: a container, whose own usage counter
    # describes it better than the host's /proc/stat.
    system_cpu, process_tree = cpu_time_counters(
        proc_root, limited=allowed is not None and n_cpus < allowed
    )
    name = cpu_power.read_cpu_model_name()
    provider = settings.cloud_region.split(":")[0] if settings.cloud_region else None
    power = cpu_power.cpu_power_model(
        name,
        n_cpus,
        cpu_power.is_virtual_machine(),
        cloud_provider=provider,
        idle_override_w=settings.cpu_idle_w,
        max_override_w=settings.cpu_max_w,
        threads_per_package=cpu_power.read_threads_per_package(),
    )
    cpu_model = ModelledCpu(power, system_cpu)
    ram_model = ModelledRam(total_memory_bytes(), lambda: settings.ram_w_per_gb)
    sensors = Sensors(
        cpu=cpu_model,
        ram=ram_model,
        gpus=[],
        cpu_model=cpu_model,
        ram_model=ram_model,
        system_cpu=system_cpu,
        process_tree=process_tree,
        cpu_power=power,
        cpu_model_name=name,
        n_cpus=n_cpus,
        total_memory_bytes=ram_model.total_bytes,
    )
    wanted = gpu_list(getattr(settings, "gpus", "auto"))
    vendors = () if wanted in ("auto", "none") else tuple(wanted.split(","))
    if apple_silicon is None:
        from .apple import is_apple_silicon

        apple_silicon = is_apple_silicon()
    soc = None
    if apple_silicon or "apple" in vendors:
        from .apple import AppleSoc, AppleSource

        soc = AppleSoc(modules.get("zeus_apple_silicon"))
    if soc is not None and soc.available:
        sensors.cpu = AppleSource(soc, "cpu")
        ram = AppleSource(soc, "ram")
        if ram.available:
            sensors.ram = ram
    else:
        if soc is not None:
            sensors.unused.append(SensorStatus("apple", "cpu", False, MEASURED, soc.reason or ""))
        _detect_rapl(settings, sensors, RaplSensor)

    environ = os.environ if environ is None else environ
    for vendor in GPU_VENDORS:
        if wanted == "none" or (vendors and vendor not in vendors):
            continue
        source = _gpu_source(vendor, wanted == "auto", soc, modules, environ, driver_root)
        if source is None:
            continue
        if source.available:
            sensors.gpus.append(source)
        else:
            sensors.unused.append(source.status())
            if not isinstance(source, Unavailable):
                # A driver showed (or the vendor was named) but its library failed.
                log.warning("carbon_magic: %s GPUs not measured: %s", vendor, source.reason)
    return sensors


def _detect_rapl(settings: Settings, sensors: Sensors, rapl_class: Any) -> None:
    root, psys = settings.powercap_root, settings.rapl_psys
    cpu = rapl_class(root=root, use_psys=psys, domain="cpu")
    if not cpu.available:
        sensors.unused.append(cpu.status())
        return
    sensors.cpu = cpu
    dram = rapl_class(root=root, use_psys=psys, domain="dram")
    if dram.available:
        sensors.ram = dram
    elif any(z["kind"] == "psys" for z in cpu.describe_zones() if z["counted"]):
        sensors.ram = CoveredByPsys()


def _gpu_source(
    vendor: str,
    auto: bool,
    soc: Any,
    modules: Mapping[str, Any],
    environ: Mapping[str, str],
    driver_root: str,
) -> Any:
    """One vendor's GPU source, or ``None`` when auto-detection finds no trace of it."""
    if vendor == "nvidia":
        from .nvml import NvmlSensor, nvidia_driver_present

        if auto and "pynvml" not in modules and not nvidia_driver_present(driver_root):
            return Unavailable("nvml", "gpu", MEASURED, "no NVIDIA driver on this system")
        return NvmlSensor(nvml_module=modules.get("pynvml"), environ=environ)
    if vendor == "amd":
        if auto and "amdsmi" not in modules and not amd_driver_present(driver_root):
            return None  # most machines: say nothing about AMD GPUs
        from .amdsmi import AmdSmiSensor

        return AmdSmiSensor(amdsmi_module=modules.get("amdsmi"), environ=environ)
    if soc is None:
        if auto:
            return None
        from .apple import AppleSoc

        soc = AppleSoc(modules.get("zeus_apple_silicon"))
    if not soc.available:
        return None  # its reason is already listed with the CPU
    from .apple import AppleSource

    return AppleSource(soc, "gpu")
