"""CPU power model for machines without energy counters: idle and full-load watts.

The tracker's CPU model is linear in utilisation, ``P = idle_w + (max_w - idle_w)·u``,
for the CPUs this process can use. This module finds ``idle_w`` and ``max_w``:

- on a virtual machine, from Cloud Carbon Footprint's per-vCPU coefficients for the
  CPU microarchitecture recognised in the model name (SPECpower-derived);
- on bare metal, from the CPU's thermal design power when the model is in the TDP
  table, else as on a VM;
- from the user's ``cpu_idle_w`` / ``cpu_max_w`` settings, which always win.

Every result says where it came from. Hardware is read through path parameters so
tests run the same code on fake files.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

PROVIDERS = ("aws", "gcp", "azure")

# CCF's figures for an unknown microarchitecture, W per vCPU at 0 % and 100 % load:
# the average (AWS, Azure) or median (GCP) over the provider's microarchitectures
# (Cloud Carbon Footprint methodology, Appendix I).
CCF_AVERAGE_W_PER_VCPU = {"aws": (0.74, 3.5), "gcp": (0.71, 4.26), "azure": (0.78, 3.76)}

# Idle power as a fraction of full-load power when only the TDP is known. CCF's
# SPECpower-derived averages above have idle/max = 0.74/3.5 = 0.21 (AWS), 0.17 (GCP)
# and 0.21 (Azure); 0.2 is in that band.
IDLE_FRACTION_OF_MAX = 0.2

# When a microarchitecture has no CCF coefficients, the previous generation's are
# used. Power per hardware thread changed little across these generations (TDP per
# thread from the packaged table: Cascade Lake 8259CL 4.4 W, Ice Lake 8375C 4.7 W;
# EPYC Milan 7763 2.2 W, Genoa 9654 1.9 W), so the older figure is a fair stand-in.
_PREVIOUS_GENERATION = {
    "Emerald Rapids": "Sapphire Rapids",
    "Sapphire Rapids": "Ice Lake",
    "Ice Lake": "Cascade Lake",
    "Cooper Lake": "Cascade Lake",  # a Cascade Lake derivative
    "Comet Lake": "Coffee Lake",  # both Skylake-derived client parts
    "Kaby Lake": "Coffee Lake",
    "EPYC 5th Gen": "EPYC 4th Gen",
    "EPYC 4th Gen": "EPYC 3rd Gen",
    "EPYC 3rd Gen": "EPYC 2nd Gen",
    "Graviton4": "Graviton3",
    "Graviton3": "Graviton2",
}

# Plain "AMD EPYC" (hypervisors often hide the model number): average of the EPYC
# generations in the table.
EPYC_FAMILY = "EPYC"

_EPYC_GENERATIONS = {
    "1": "EPYC 1st Gen",
    "2": "EPYC 2nd Gen",
    "3": "EPYC 3rd Gen",
    "4": "EPYC 4th Gen",
    "5": "EPYC 5th Gen",
}
_EPYC_CODENAMES = {
    "naples": "1",
    "rome": "2",
    "milan": "3",
    "genoa": "4",
    "bergamo": "4",
    "siena": "4",
    "turin": "5",
}
# Intel Xeon Scalable: the second digit of the model number is the generation
# (Platinum 8175M: 1st, Skylake; 8259CL: 2nd, Cascade Lake; 8375C: 3rd, Ice Lake,
# or Cooper Lake with an H suffix; 8488C: 4th, Sapphire Rapids; 8592+: 5th).
_XEON_SCALABLE = {
    "1": "Skylake",
    "2": "Cascade Lake",
    "3": "Ice Lake",
    "4": "Sapphire Rapids",
    "5": "Emerald Rapids",
}
# Xeon E3/E5/E7 "vN" suffix.
_XEON_E_VERSION = {
    "": "Sandy Bridge",
    "2": "Ivy Bridge",
    "3": "Haswell",
    "4": "Broadwell",
    "5": "Skylake",
    "6": "Kaby Lake",
}
# Intel Core iN-XYYY: X is the generation.
_CORE_GENERATION = {
    "2": "Sandy Bridge",
    "3": "Ivy Bridge",
    "4": "Haswell",
    "5": "Broadwell",
    "6": "Skylake",
    "7": "Kaby Lake",
    "8": "Coffee Lake",
    "9": "Coffee Lake",
}
# Codenames as virtual machines report them ("Intel Xeon Processor (Icelake)").
_CODENAMES = [
    (r"sapphire[\s-]*rapids", "Sapphire Rapids"),
    (r"emerald[\s-]*rapids", "Emerald Rapids"),
    (r"ice[\s-]*lake", "Ice Lake"),
    (r"cooper[\s-]*lake", "Cooper Lake"),
    (r"cascade[\s-]*lake", "Cascade Lake"),
    (r"sky[\s-]*lake", "Skylake"),
    (r"kaby[\s-]*lake", "Kaby Lake"),
    (r"coffee[\s-]*lake", "Coffee Lake"),
    (r"broadwell", "Broadwell"),
    (r"haswell", "Haswell"),
    (r"ivy[\s-]*bridge", "Ivy Bridge"),
    (r"sandy[\s-]*bridge", "Sandy Bridge"),
    # Arm Neoverse cores of the Graviton generations (also in Ampere and other chips).
    (r"neoverse[\s-]*n1", "Graviton2"),
    (r"neoverse[\s-]*v1", "Graviton3"),
    (r"neoverse[\s-]*v2", "Graviton4"),
]
# /proc/cpuinfo on Arm has no model name, only the part number of the core.
_ARM_PARTS = {
    "0xd0c": "ARM Neoverse-N1",
    "0xd40": "ARM Neoverse-V1",
    "0xd4f": "ARM Neoverse-V2",
    "0xd49": "ARM Neoverse-N2",
    "0xd08": "ARM Cortex-A72",
}


def _mean(values: list[float]) -> float:
    # statistics.fmean would cost an import of several milliseconds at start-up.
    return sum(values) / len(values)


# Relative half-width of the modelled power's range (see accounting.ENERGY_UNCERTAINTY).
MODEL_UNCERTAINTY = 0.40


@dataclass(frozen=True)
class ModelledEnergy:
    """Modelled energy over one tick, joules: the central value and its range."""

    central_j: float
    low_j: float
    high_j: float


@dataclass(frozen=True)
class CpuPowerModel:
    """Power of the whole visible CPU: ``idle_w`` at 0 % and ``max_w`` at 100 % load.

    Watts for ``n_cpus`` CPUs (fractional under a cgroup quota); ``source`` says
    where the figures came from.
    """

    idle_w: float
    max_w: float
    n_cpus: float
    source: str

    def power_w(self, utilisation: float) -> float:
        """Modelled power in watts at ``utilisation`` (0–1, clamped) of the visible CPUs."""
        u = min(1.0, max(0.0, utilisation))
        return self.idle_w + (self.max_w - self.idle_w) * u

    def power_range_w(self, utilisation: float) -> tuple[float, float]:
        """(low, high) watts at ``utilisation``: the interval the true power lies in."""
        power = self.power_w(utilisation)
        return (power * (1 - MODEL_UNCERTAINTY), power * (1 + MODEL_UNCERTAINTY))

    def energy_j(self, duration_s: float, busy_cpu_s: float) -> ModelledEnergy:
        """Modelled energy of one tick, joules: the curve applied to the tick's mean load.

        ``busy_cpu_s`` is the CPU time all visible CPUs spent busy during the tick
        (seconds of CPU), ``duration_s`` the tick's length. The mean utilisation
        ``busy / (n_cpus · duration)`` is clamped to [0, 1]. The tracker calls this for
        every tick and window edge, so a window's energy is a sum over its ticks.
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


def read_cpu_model_name(cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    """The CPU model name from ``/proc/cpuinfo`` (``"AMD EPYC 7R13 Processor"``).

    On Arm, where there is no ``model name``, the core type from its part number
    (``"ARM Neoverse-N1"``). Empty string when unreadable or unknown.
    """
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


# ------------------------------------------------------------------------- the tables


@functools.cache
def _coefficient_tables() -> dict[str, dict[str, tuple[float, float]]]:
    """provider → microarchitecture → (min, max) W per vCPU, read once."""
    from carbon_magic.data import COEFFICIENT_FILE, read_table

    tables: dict[str, dict[str, tuple[float, float]]] = {p: {} for p in PROVIDERS}
    for row in read_table(COEFFICIENT_FILE):
        tables[row["provider"]][row["architecture"]] = (
            float(row["min_w_per_vcpu"]),
            float(row["max_w_per_vcpu"]),
        )
    return tables


def _tdp_key(name: str) -> str:
    """Model name reduced for matching: no (R)/(TM)/(…), "CPU", "Processor", clock, cores."""
    text = name.replace("®", " ").replace("™", " ").casefold()
    text = re.sub(r"\([^)]*\)", " ", text)
    text = text.split("@")[0].split(" with ")[0]
    text = re.sub(r"\b\d+-core\b|\bcpu\b|\bprocessor\b", " ", text)
    return " ".join(text.split())


@functools.cache
def _tdp_table() -> dict[str, tuple[str, float]]:
    """Reduced model name → (name as listed, TDP in watts), read once."""
    from carbon_magic.data import TDP_FILE, read_table

    table: dict[str, tuple[str, float]] = {}
    for row in read_table(TDP_FILE):
        table.setdefault(_tdp_key(row["name"]), (row["name"], float(row["tdp_w"])))
    return table


def find_tdp(model_name: str) -> tuple[str, float] | None:
    """(model as listed, TDP watts) for a CPU model name, or ``None`` if not listed.

    ``"Intel(R) Xeon(R) Gold 6122 CPU @ 1.80GHz"`` finds ``Intel Xeon Gold 6122``.
    Failing an exact match of the reduced names, the longest listed name with a model
    number that appears whole inside the given one is taken.
    """
    key = _tdp_key(model_name)
    if not key:
        return None
    table = _tdp_table()
    if key in table:
        return table[key]
    padded = f" {key} "
    best: str | None = None
    for listed in table:
        # At least vendor-or-family plus a model number, so "AMD EPYC" matches nothing.
        if " " in listed and re.search(r"\d", listed) and f" {listed} " in padded:
            if best is None or len(listed) > len(best):
                best = listed
    return table[best] if best else None


def cpu_microarchitecture(model_name: str) -> str | None:
    """Microarchitecture named as in CCF's tables (``"Cascade Lake"``, ``"EPYC 3rd Gen"``)
    recognised from a CPU model name, ``"EPYC"`` for an AMD EPYC of unknown generation,
    or ``None`` when not recognised.
    """
    text = model_name.replace("®", " ").replace("™", " ").casefold()
    text = re.sub(r"\((r|tm)\)", " ", text)
    if match := re.search(r"xeon.*\b(?:platinum|gold|silver|bronze)\s+\d(\d)\d\d([a-z]*)", text):
        generation, suffix = match.groups()
        if generation == "3" and suffix.startswith("h"):
            return "Cooper Lake"
        if generation in _XEON_SCALABLE:
            return _XEON_SCALABLE[generation]
    if match := re.search(r"xeon.*\be([357])-\d{4}[a-z]*(?:\s*v(\d))?", text):
        family, version = match.groups()
        if family == "7" and not version:
            return None  # E7 without a version is Westmere, not in the tables
        return _XEON_E_VERSION.get(version or "")
    if re.search(r"xeon.*\be-2[12]\d\d", text):
        return "Coffee Lake"
    if match := re.search(r"\bcore.*\bi[3579]-(\d{4,5})", text):
        digits = match.group(1)
        if len(digits) == 4:
            return _CORE_GENERATION.get(digits[0])
        return "Comet Lake" if digits.startswith("10") else None
    if "epyc" in text:
        if match := re.search(r"epyc[\s-]*\d[0-9a-z]{2}(\d)[a-z]*\b", text):
            return _EPYC_GENERATIONS.get(match.group(1), EPYC_FAMILY)
        if match := re.search(r"epyc[\s-]*(" + "|".join(_EPYC_CODENAMES) + ")", text):
            return _EPYC_GENERATIONS[_EPYC_CODENAMES[match.group(1)]]
        return EPYC_FAMILY
    if match := re.search(r"graviton\s*([1-4])?", text):
        generation = match.group(1)
        return f"Graviton{generation}" if generation and generation != "1" else "Graviton"
    for pattern, name in _CODENAMES:
        if re.search(pattern, text):
            return name
    return None


def _ccf_coefficients(architecture: str, provider: str) -> tuple[float, float, str] | None:
    """(min, max) W per vCPU and a description, walking back to older generations and
    to other providers' tables when the provider's table lacks the architecture."""
    tables = _coefficient_tables()
    if architecture == EPYC_FAMILY:
        rows = {a: v for a, v in tables[provider].items() if a.startswith("EPYC ")}
        if not rows:
            return None
        names = ", ".join(sorted(rows))
        return (
            _mean([v[0] for v in rows.values()]),
            _mean([v[1] for v in rows.values()]),
            f"CCF {provider} coefficients, AMD EPYC of unknown generation (average of {names})",
        )
    wanted: str | None = architecture
    while wanted is not None:
        holders = (
            [provider]
            if wanted in tables[provider]
            else [p for p in PROVIDERS if wanted in tables[p]]
        )
        if holders:
            note = "" if wanted == architecture else f" ({architecture} not in the tables)"
            return (
                _mean([tables[p][wanted][0] for p in holders]),
                _mean([tables[p][wanted][1] for p in holders]),
                f"CCF {'/'.join(holders)} coefficients for {wanted}{note}",
            )
        wanted = _PREVIOUS_GENERATION.get(wanted)
    return None


def _check_provider(cloud_provider: str | None) -> str | None:
    if cloud_provider is None:
        return None
    provider = cloud_provider.partition(":")[0].strip().casefold()
    if provider not in PROVIDERS:
        raise ValueError(f"unknown cloud provider {cloud_provider!r}; use aws, gcp or azure")
    return provider


def cpu_power_model(
    model_name: str,
    n_cpus: float,
    is_vm: bool,
    cloud_provider: str | None = None,
    idle_override_w: float | None = None,
    max_override_w: float | None = None,
    *,
    threads_per_package: int | None = None,
) -> CpuPowerModel:
    """Idle and full-load watts of ``n_cpus`` visible CPUs of model ``model_name``.

    - Bare metal (``is_vm`` false) with the model in the TDP table: ``max_w`` is the
      TDP times the share of the package visible (``n_cpus / threads_per_package``;
      the whole package when ``threads_per_package`` is unknown), ``idle_w`` is
      ``IDLE_FRACTION_OF_MAX`` of that.
    - Otherwise CCF's per-vCPU coefficients for the recognised microarchitecture
      (the ``cloud_provider``'s table, else AWS's) times ``n_cpus``; CCF's average
      over all microarchitectures when the CPU is not recognised.
    - ``idle_override_w`` / ``max_override_w`` (whole visible CPU, watts) replace the
      modelled figures.

    Raises ``ValueError`` for ``n_cpus <= 0``, an unknown provider, a negative
    override, or an idle power above the maximum.
    """
    if not n_cpus > 0:
        raise ValueError(f"n_cpus must be positive (got {n_cpus!r})")
    provider = _check_provider(cloud_provider)
    for label, value in (("cpu_idle_w", idle_override_w), ("cpu_max_w", max_override_w)):
        if value is not None and not value >= 0:
            raise ValueError(f"{label} must be at least 0 W (got {value!r})")
    if idle_override_w is not None and max_override_w is not None:
        model = CpuPowerModel(float(idle_override_w), float(max_override_w), n_cpus, "set by you")
    else:
        model = _modelled(model_name, n_cpus, is_vm, provider, threads_per_package)
        if idle_override_w is not None:
            model = CpuPowerModel(
                float(idle_override_w),
                model.max_w,
                n_cpus,
                f"idle set by you; max from {model.source}",
            )
        elif max_override_w is not None:
            model = CpuPowerModel(
                model.idle_w,
                float(max_override_w),
                n_cpus,
                f"max set by you; idle from {model.source}",
            )
    if model.idle_w > model.max_w:
        raise ValueError(
            f"CPU idle power {model.idle_w:g} W is above its maximum {model.max_w:g} W"
            f" ({model.source}); set cpu_idle_w at most cpu_max_w"
        )
    return model


def _modelled(
    model_name: str,
    n_cpus: float,
    is_vm: bool,
    provider: str | None,
    threads_per_package: int | None,
) -> CpuPowerModel:
    if not is_vm and (found := find_tdp(model_name)) is not None:
        listed, tdp_w = found
        source = f"TDP table: {listed} {tdp_w:g} W"
        share = 1.0
        if threads_per_package:
            share = n_cpus / threads_per_package
            source += f" × {share:.3g} of the package ({n_cpus:g} of {threads_per_package} threads)"
        max_w = tdp_w * share
        source += f"; idle {IDLE_FRACTION_OF_MAX:.0%} of that"
        return CpuPowerModel(IDLE_FRACTION_OF_MAX * max_w, max_w, n_cpus, source)
    table = provider or "aws"
    architecture = cpu_microarchitecture(model_name)
    found_ccf = _ccf_coefficients(architecture, table) if architecture else None
    if found_ccf is None:
        low, high = CCF_AVERAGE_W_PER_VCPU[table]
        what = f"CPU {model_name!r}" if model_name else "CPU model unknown"
        basis = f"CCF {table} average over all microarchitectures ({what} not recognised)"
    else:
        low, high, basis = found_ccf
    source = f"{basis}: {low:.2f}–{high:.2f} W per vCPU × {n_cpus:g} CPUs"
    return CpuPowerModel(low * n_cpus, high * n_cpus, n_cpus, source)


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
    )
