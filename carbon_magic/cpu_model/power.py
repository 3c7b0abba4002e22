"""CPU power model for machines without energy counters: a load→power curve per family.

The tracker integrates ``CpuPowerModel.energy_j`` over every tick from that tick's
CPU-time counters. This module builds the model for the CPUs this process can use:

- on bare metal with a known TDP (the packaged table or ``tdp_w``): the CPU family's
  load curve (``carbon_magic.cpu_model.curves``) in fractions of TDP, times the share
  of the package(s) visible;
- on a virtual machine, or without a TDP: the same curve on Cloud Carbon Footprint's
  full-load watts per vCPU for the recognised microarchitecture (SPECpower-derived);
- from the user's ``cpu_idle_w`` / ``cpu_max_w`` settings, which always win.

Every result says how it was obtained and where its figures come from. Hardware is
read through path parameters so tests run the same code on fake files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from carbon_magic.cpu_model.curves import LINEAR, LoadCurve
from carbon_magic.cpu_model.estimate import (
    Package,
    estimate,
)
from carbon_magic.cpu_model.host_name import platform_cpu_name
from carbon_magic.cpu_model.identify import (
    check_provider,
)

__all__ = [
    "CpuPowerModel",
    "ModelledEnergy",
    "cgroup_cpu_limit",
    "cpu_power_model",
    "detect_cpu_power_model",
    "is_virtual_machine",
    "read_cores_per_package",
    "read_cpu_model_name",
    "read_threads_per_package",
    "visible_cpu_count",
]

METHOD_SET = "modelled: your idle and full-load watts"

# /proc/cpuinfo on Arm has no model name, only the part number of the core.
_ARM_PARTS = {
    "0xd0c": "ARM Neoverse-N1",
    "0xd40": "ARM Neoverse-V1",
    "0xd4f": "ARM Neoverse-V2",
    "0xd49": "ARM Neoverse-N2",
    "0xd08": "ARM Cortex-A72",
}


@dataclass(frozen=True)
class ModelledEnergy:
    """Modelled energy over one tick, joules: the central value and its range."""

    central_j: float
    low_j: float
    high_j: float


@dataclass(frozen=True)
class CpuPowerModel:
    """Power of the whole visible CPU: ``idle_w`` at 0 % and ``max_w`` at 100 % load.

    Watts for ``n_cpus`` CPUs (fractional under a cgroup quota). Between the two the
    power follows ``curve``'s shape, and ``curve`` gives the range around it. ``source``
    says where the figures came from, ``method`` how they were obtained, ``features``
    what was known of the CPU and where from: (name, value, origin).
    """

    idle_w: float
    max_w: float
    n_cpus: float
    source: str
    curve: LoadCurve = LINEAR
    method: str = METHOD_SET
    features: tuple[tuple[str, str, str], ...] = ()

    def power_w(self, utilisation: float) -> float:
        """Modelled power in watts at ``utilisation`` (0–1, clamped) of the visible CPUs."""
        return self.idle_w + (self.max_w - self.idle_w) * self.curve.shape(utilisation)

    def power_range_w(self, utilisation: float) -> tuple[float, float]:
        """(low, high) watts at ``utilisation``: the interval the true power lies in."""
        power = self.power_w(utilisation)
        low, high = self.curve.band_at(utilisation)
        return (power * low, power * high)

    def energy_j(self, duration_s: float, busy_cpu_s: float) -> ModelledEnergy:
        """Modelled energy of one tick, joules: the curve applied to the tick's mean load.

        ``busy_cpu_s`` is the CPU time all visible CPUs spent busy during the tick
        (seconds of CPU), ``duration_s`` the tick's length. The mean utilisation
        ``busy / (n_cpus · duration)`` is clamped to [0, 1]. The tracker calls this for
        every tick and window edge, so a window's energy is a sum over its ticks; a
        steady load gives the same energy however the window is cut into ticks.
        """
        if duration_s <= 0 or self.n_cpus <= 0:
            return ModelledEnergy(0.0, 0.0, 0.0)
        utilisation = max(busy_cpu_s, 0.0) / (self.n_cpus * duration_s)
        low_w, high_w = self.power_range_w(utilisation)
        return ModelledEnergy(
            self.power_w(utilisation) * duration_s, low_w * duration_s, high_w * duration_s
        )


# --------------------------------------------------------------------- reading the host


def _read_text(path: str | os.PathLike[str]) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cpuinfo_fields(cpuinfo_path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    text = _read_text(cpuinfo_path) or ""
    fields = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.append((key.strip().lower(), value.strip()))
    return fields


def read_cpu_model_name(
    cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo", platform: str = sys.platform
) -> str:
    """The CPU model name from ``/proc/cpuinfo`` (``"AMD EPYC 7R13 Processor"``); on
    macOS and Windows (``platform``) from the system (``cpu_model.host_name``).

    On Arm, where there is no ``model name``, the core type from its part number
    (``"ARM Neoverse-N1"``). Empty string when unreadable or unknown.
    """
    if platform in ("darwin", "win32"):
        return platform_cpu_name(platform)
    fields = _cpuinfo_fields(cpuinfo_path)
    for key, value in fields:
        if key == "model name" and value:
            return value
    for key, value in fields:
        if key == "cpu part" and value.lower() in _ARM_PARTS:
            return _ARM_PARTS[value.lower()]
    return ""


def is_virtual_machine(cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """True when the CPU flags include ``hypervisor`` (x86 guests). False if unreadable."""
    return any(
        key == "flags" and "hypervisor" in value.split()
        for key, value in _cpuinfo_fields(cpuinfo_path)
    )


def read_threads_per_package(cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo") -> int | None:
    """Logical CPUs per physical package (``siblings``), or ``None`` when not given."""
    for key, value in _cpuinfo_fields(cpuinfo_path):
        if key == "siblings":
            try:
                siblings = int(value)
            except ValueError:
                return None
            return siblings if siblings > 0 else None
    return None


def read_cores_per_package(cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo") -> int | None:
    """Physical cores per package (``cpu cores``), or ``None`` when not given."""
    for key, value in _cpuinfo_fields(cpuinfo_path):
        if key == "cpu cores":
            return int(value) if value.isdigit() and int(value) > 0 else None
    return None


def _parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` ("200000 100000" → 2.0; "max …" → None)."""
    parts = text.split()
    if not 1 <= len(parts) <= 2 or parts[0] == "max":
        return None
    try:
        quota = float(parts[0])
        period = float(parts[1]) if len(parts) == 2 else 100000.0
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _parse_cfs(quota_text: str | None, period_text: str | None) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` (-1: none)."""
    if quota_text is None or period_text is None:
        return None
    try:
        quota = float(quota_text.strip())
        period = float(period_text.strip())
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _own_cgroup_paths(proc_cgroup: str | os.PathLike[str]) -> dict[str, str]:
    """Controller list → this process's cgroup path, from ``/proc/self/cgroup``."""
    paths = {}
    for line in (_read_text(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2].strip()
    return paths


def _ancestors(root: Path, cgroup_path: str) -> list[Path]:
    """``root/a/b``, ``root/a``, ``root`` for ``/a/b``, each kept inside ``root``."""
    parts = [p for p in cgroup_path.split("/") if p and p not in (".", "..")]
    return [root.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_cpu_limit(
    cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
    proc_cgroup: str | os.PathLike[str] = "/proc/self/cgroup",
) -> float | None:
    """CPUs allowed by a cgroup CPU quota (2.0 for "200000 100000"), ``None`` if none.

    cgroup v2: ``cpu.max`` of this process's cgroup and of each ancestor (the tightest
    wins). cgroup v1: ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` in the cpu controller
    folder. Missing, unreadable or malformed files are ignored.
    """
    root = Path(cgroup_root)
    own = _own_cgroup_paths(proc_cgroup)
    limits: list[float] = []
    for folder in _ancestors(root, own.get("", "/")):
        text = _read_text(folder / "cpu.max")
        if text is not None and (limit := _parse_cpu_max(text)) is not None:
            limits.append(limit)
    v1_path = next((path for names, path in own.items() if "cpu" in names.split(",")), "/")
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu", ""):
        base = root / controller if controller else root
        for folder in dict.fromkeys([*_ancestors(base, v1_path)[:1], base]):
            limit = _parse_cfs(
                _read_text(folder / "cpu.cfs_quota_us"), _read_text(folder / "cpu.cfs_period_us")
            )
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def visible_cpu_count(
    cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
    affinity: Collection[int] | None = None,
    *,
    proc_cgroup: str | os.PathLike[str] = "/proc/self/cgroup",
) -> float:
    """How many CPUs this process can use: its affinity mask, capped by a cgroup quota.

    ``affinity`` replaces ``os.sched_getaffinity(0)`` (CPU ids). The result is
    fractional under a quota (``cpu.max`` "50000 100000" → 0.5) and at least one
    CPU's worth when nothing can be read.
    """
    if affinity is None:
        try:
            count = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not on Linux
            count = os.cpu_count() or 1
    else:
        count = len(affinity)
    count = max(count, 1)
    limit = cgroup_cpu_limit(cgroup_root, proc_cgroup)
    return float(count) if limit is None else min(float(count), limit)


# ------------------------------------------------------------------------- the model


def _check_positive(label: str, value: float | None, *, whole: bool = False) -> None:
    if value is None:
        return
    if whole and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{label} must be a whole number of at least 1 (got {value!r})")
    if not value > 0:
        raise ValueError(f"{label} must be above 0 (got {value!r})")


def cpu_power_model(
    model_name: str,
    n_cpus: float,
    is_vm: bool,
    cloud_provider: str | None = None,
    idle_override_w: float | None = None,
    max_override_w: float | None = None,
    *,
    threads_per_package: int | None = None,
    sockets: int | None = None,
    tdp_w: float | None = None,
    vm_threads_per_package: int | None = None,
    cores_per_package: int | None = None,
) -> CpuPowerModel:
    """The power model of ``n_cpus`` visible CPUs of model ``model_name``, watts.

    - ``tdp_w`` given, or bare metal (``is_vm`` false) with the model in the TDP table:
      the family's curve times the TDP times the share of the packages visible,
      ``n_cpus / threads_per_package`` (``sockets`` whole packages when the package
      size is unknown, one by default).
    - On a virtual machine whose CPU is in the TDP table and whose host package size is
      known (``vm_threads_per_package``, the cloud CPU table, or the cores in an AMD
      model name): the curve on the TDP times ``n_cpus`` over the host package's threads.
    - Bare metal without a TDP but with the cores (``cores_per_package``, the name, or
      half the threads): the TDP estimated from the cores, the range widened.
    - Otherwise the family's curve on CCF's full-load watts per vCPU for the recognised
      microarchitecture (the ``cloud_provider``'s table, else AWS's), times ``n_cpus``;
      CCF's average over all microarchitectures when the CPU is not recognised.
    - ``idle_override_w`` / ``max_override_w`` (whole visible CPU, watts) replace the
      modelled figures; with both, the curve is a straight line between them.

    Raises ``ValueError`` for ``n_cpus <= 0``, an unknown provider, a negative
    override, a package size, socket count or TDP that is not positive, or an idle
    power above the maximum.
    """
    if not n_cpus > 0:
        raise ValueError(f"n_cpus must be positive (got {n_cpus!r})")
    provider = check_provider(cloud_provider)
    _check_positive("threads_per_package", threads_per_package, whole=True)
    _check_positive("sockets", sockets, whole=True)
    _check_positive("tdp_w", tdp_w)
    _check_positive("vm_threads_per_package", vm_threads_per_package, whole=True)
    _check_positive("cores_per_package", cores_per_package, whole=True)
    for label, value in (("cpu_idle_w", idle_override_w), ("cpu_max_w", max_override_w)):
        if value is not None and not value >= 0:
            raise ValueError(f"{label} must be at least 0 W (got {value!r})")
    if idle_override_w is not None and max_override_w is not None:
        model = CpuPowerModel(float(idle_override_w), float(max_override_w), n_cpus, "set by you")
    else:
        package = Package(
            threads_per_package, sockets, tdp_w, vm_threads_per_package, cores_per_package
        )
        found = estimate(model_name, n_cpus, is_vm, provider or "aws", package)
        model = CpuPowerModel(
            found.idle_w,
            found.max_w,
            n_cpus,
            found.source,
            found.curve,
            found.method,
            found.features,
        )
        if idle_override_w is not None:
            model = CpuPowerModel(
                float(idle_override_w),
                model.max_w,
                n_cpus,
                f"idle set by you; max from {model.source}",
                model.curve,
                model.method,
                model.features,
            )
        elif max_override_w is not None:
            model = CpuPowerModel(
                model.idle_w,
                float(max_override_w),
                n_cpus,
                f"max set by you; idle from {model.source}",
                model.curve,
                model.method,
                model.features,
            )
    if model.idle_w > model.max_w:
        raise ValueError(
            f"CPU idle power {model.idle_w:g} W is above its maximum {model.max_w:g} W"
            f" ({model.source}); set cpu_idle_w at most cpu_max_w"
        )
    return model


def detect_cpu_power_model(
    cloud_provider: str | None = None,
    idle_override_w: float | None = None,
    max_override_w: float | None = None,
    *,
    cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo",
    cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
    affinity: Collection[int] | None = None,
    proc_cgroup: str | os.PathLike[str] = "/proc/self/cgroup",
) -> CpuPowerModel:
    """``cpu_power_model`` for this machine: model name, VM flag, visible CPUs and
    package size read from ``cpuinfo_path``, ``cgroup_root`` and ``proc_cgroup``."""
    return cpu_power_model(
        read_cpu_model_name(cpuinfo_path),
        visible_cpu_count(cgroup_root, affinity, proc_cgroup=proc_cgroup),
        is_virtual_machine(cpuinfo_path),
        cloud_provider,
        idle_override_w,
        max_override_w,
        threads_per_package=read_threads_per_package(cpuinfo_path),
        cores_per_package=read_cores_per_package(cpuinfo_path),
    )
