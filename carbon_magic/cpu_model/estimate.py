"""The modelled watts of the visible CPUs: which curve, which TDP, which features.

``estimate`` picks, for a CPU model name and what is known of the package, the family
curve (``curves``), the TDP (given, the cloud CPU table, the TDP table, or estimated
from the cores) and the cores per package, and says where each came from.
``carbon_magic.cpu_model.power`` turns the result into the tracker's ``CpuPowerModel``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from carbon_magic.cpu_model.curves import LoadCurve, families
from carbon_magic.cpu_model.identify import (
    CCF_AVERAGE_W_PER_VCPU,
    GENERIC_FAMILY,
    base_ghz_from_name,
    ccf_coefficients,
    ccf_per_tdp_per_thread,
    cloud_spec,
    cores_from_name,
    cpu_family,
    cpu_microarchitecture,
    find_tdp,
    package_threads_from_name,
    tdp_per_core,
)

# SPECpower wall power at full load over TDP × chips: the median over the results in
# benchmarks/data/specpower_load_curves.csv that list a CPU with a known TDP. Shown
# beside the cloud hosts' relation the per-vCPU path uses (``_per_vcpu``).
WALL_PER_TDP = 1.13

# Arm server cores run one thread each (no SMT).
ARM_NAMES = re.compile(r"\b(arm|neoverse|graviton|ampere|altra)\b", re.IGNORECASE)

# How a model's figures were obtained, as shown with them.
METHOD_TDP = "modelled: TDP × load curve"
METHOD_VCPU = "modelled: watts per vCPU × load curve"
METHOD_VM_TDP = "modelled: TDP per vCPU × load curve"
METHOD_CORES = "modelled: TDP estimated from the cores × load curve"


@dataclass(frozen=True)
class Estimate:
    """Idle and full-load watts of the visible CPUs, the curve and its range, how they
    were obtained, and the features used: (name, value, where it came from)."""

    idle_w: float
    max_w: float
    source: str
    curve: LoadCurve
    method: str
    features: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class Package:
    """What is known of the CPU package(s) besides the model name."""

    threads_per_package: int | None = None
    sockets: int | None = None
    tdp_w: float | None = None
    vm_threads_per_package: int | None = None
    cores_per_package: int | None = None  # from /proc/cpuinfo on bare metal


def _tdp(model_name: str, given_w: float | None) -> tuple[float, str] | None:
    if given_w is not None:
        return float(given_w), f"TDP {given_w:g} W given"
    spec = cloud_spec(model_name)
    if spec is not None:
        return float(spec["tdp_w"]), f"cloud CPU table: {spec['name']} {spec['tdp_w']} W"
    found = find_tdp(model_name)
    if found is not None:
        return found[1], f"TDP table: {found[0]} {found[1]:g} W"
    return None


def _cores(model_name: str, package: Package, is_vm: bool) -> tuple[int | None, str]:
    """Cores of one (host) package and where the figure comes from."""
    spec = cloud_spec(model_name)
    if package.cores_per_package and not is_vm:
        return package.cores_per_package, "/proc/cpuinfo (cpu cores)"
    if spec is not None:
        return int(spec["cores"]), f"cloud CPU table ({spec['source']})"
    if cores := cores_from_name(model_name):
        return cores, "the model name"
    host_threads = package.vm_threads_per_package if is_vm else package.threads_per_package
    if host_threads and ARM_NAMES.search(model_name):
        return host_threads, f"{host_threads} threads per package (Arm: one thread a core)"
    if host_threads:
        return max(1, host_threads // 2), f"{host_threads} threads per package / 2 (assumed SMT)"
    return None, "unknown: the full-load figure of a mid-size package is used"


def estimate(
    model_name: str, n_cpus: float, is_vm: bool, provider: str, package: Package
) -> Estimate:
    """Modelled idle and full-load watts of ``n_cpus`` visible CPUs of ``model_name``.

    - TDP known (given, cloud CPU table, TDP table) on bare metal: the family curve on
      the TDP times the share of the packages visible.
    - On a virtual machine with a known TDP and host package size (given, cloud CPU
      table, cores in an AMD name): the same, for the vCPUs' share of the host package.
    - Bare metal without a TDP: TDP estimated as cores × the median TDP per core of
      the family's cloud CPUs, the range widened by that ratio's spread.
    - Otherwise CCF's full-load watts per vCPU over its median ratio to the TDP per
      thread of the cloud CPU table's hosts (``ccf_per_tdp_per_thread``) as the TDP of
      one vCPU, the range widened by that ratio's spread.
    """
    family = cpu_family(model_name)
    curve = families()[family]
    note = _curve_note(curve, model_name)
    cores, cores_from = _cores(model_name, package, is_vm)
    features = [
        (
            "family",
            curve.label,
            f"model name {model_name!r}" if model_name else "model name unknown",
        ),
        ("cores per package", str(cores) if cores else "?", cores_from),
    ]
    if ghz := base_ghz_from_name(model_name):
        features.append(("base frequency", f"{ghz:g} GHz", "the model name (not used by the fit)"))
    tdp = _tdp(model_name, package.tdp_w)
    host_threads = package.vm_threads_per_package or _host_threads(model_name)
    if tdp is not None and (not is_vm or package.tdp_w is not None):
        features.append(("TDP", f"{tdp[0]:g} W", tdp[1]))
        share, where = _share(n_cpus, package.threads_per_package, package.sockets)
        return _on_tdp(note, curve, cores, tdp[0] * share, f"{tdp[1]}{where}", METHOD_TDP, features)
    if tdp is not None and host_threads:
        features.append(("TDP", f"{tdp[0]:g} W", tdp[1]))
        features.append(
            ("host package", f"{host_threads} threads", _host_note(model_name, package))
        )
        share, where = _share(n_cpus, host_threads, None)
        return _on_tdp(
            note, curve, cores, tdp[0] * share, f"{tdp[1]}{where}", METHOD_VM_TDP, features
        )
    if not is_vm and cores:
        per_core, lowest, highest = tdp_per_core(family)
        estimated_w = cores * per_core
        features.append(
            (
                "TDP",
                f"{estimated_w:.0f} W (estimated)",
                f"{cores} cores × {per_core:.1f} W per core, median of the cloud CPU table",
            )
        )
        share, where = _share(n_cpus, package.threads_per_package, package.sockets)
        widened = curve.widened(
            lowest / per_core, highest / per_core, "TDP estimated from the cores"
        )
        source = f"TDP estimated as {cores} cores × {per_core:.1f} W{where}"
        return _on_tdp(note, widened, cores, estimated_w * share, source, METHOD_CORES, features)
    return _per_vcpu(note, model_name, curve, n_cpus, provider, features)


def _curve_note(curve: LoadCurve, model_name: str) -> str:
    """How the curve was chosen, for the source: the family, or why the generic one."""
    if curve.name != GENERIC_FAMILY:
        return f"{curve.label} load curve"
    what = f"{model_name!r} not recognised" if model_name else "CPU model unknown"
    return f"generic load curve ({what})"


def _host_threads(model_name: str) -> int | None:
    spec = cloud_spec(model_name)
    if spec is not None:
        return int(spec["threads"])
    return package_threads_from_name(model_name)


def _host_note(model_name: str, package: Package) -> str:
    if package.vm_threads_per_package:
        return "given (--threads-per-package)"
    spec = cloud_spec(model_name)
    return f"cloud CPU table ({spec['source']})" if spec else "cores in the model name × 2 threads"


def _share(
    n_cpus: float, threads_per_package: int | None, sockets: int | None
) -> tuple[float, str]:
    """Share of the packages visible, and how it reads."""
    if threads_per_package:
        share = n_cpus / threads_per_package
        if share < 1:
            return (
                share,
                f" × {share:.3g} of a package ({n_cpus:g} of {threads_per_package} threads)",
            )
        return share, f" × {share:.3g} packages ({n_cpus:g} threads, {threads_per_package} each)"
    packages = sockets or 1
    return float(packages), f" × {packages} packages" if packages > 1 else ""


def _on_tdp(
    note: str,
    curve: LoadCurve,
    cores: int | None,
    package_w: float,
    where: str,
    method: str,
    features: list[tuple[str, str, str]],
) -> Estimate:
    full = curve.full_for(cores)
    source = f"{note}, idle {curve.idle:.0%} and full load {full:.0%} of TDP; {where}"
    return Estimate(
        curve.idle * package_w, full * package_w, source, curve, method, tuple(features)
    )


def _per_vcpu(
    note: str,
    model_name: str,
    curve: LoadCurve,
    n_cpus: float,
    table: str,
    features: list[tuple[str, str, str]],
) -> Estimate:
    """The curve on a TDP per vCPU from CCF's full-load watts per vCPU."""
    architecture = cpu_microarchitecture(model_name)
    found_ccf = ccf_coefficients(architecture, table) if architecture else None
    if found_ccf is None:
        _, per_vcpu_w = CCF_AVERAGE_W_PER_VCPU[table]
        basis = f"CCF {table} average over all microarchitectures"
    else:
        _, per_vcpu_w, basis = found_ccf
    # CCF's full-load figure is SPECpower wall power per hardware thread. On SPECpower's
    # servers that is a median 1.13 × TDP per thread, but a virtual machine runs on a
    # cloud host, whose CPUs are higher-binned: over the cloud CPU table CCF's figure
    # is a median 0.81 × their TDP per thread (0.42–1.09), so the figure / 0.81 is the
    # TDP of one vCPU of a cloud host. CCF's idle is not used.
    ratio, lowest, highest = ccf_per_tdp_per_thread()
    tdp_per_vcpu = per_vcpu_w / ratio
    features.append(
        (
            "TDP per vCPU",
            f"{tdp_per_vcpu:.2f} W",
            f"{basis}, {per_vcpu_w:.2f} W / {ratio:.2f} (CCF's watts over the TDP per thread "
            f"of the cloud CPU table's hosts; {WALL_PER_TDP:g} on SPECpower's servers)",
        )
    )
    widened = curve.widened(
        ratio / highest, ratio / lowest, "TDP per vCPU from CCF watts, spread over the cloud CPUs"
    )
    full = widened.full_for(None)
    source = (
        f"{note}, idle {curve.idle:.0%} and full load {full:.0%} of TDP per vCPU = "
        f"{per_vcpu_w:.2f} W ({basis}, full-load wall power per vCPU) / {ratio:.2f} "
        f"× {n_cpus:g} CPUs; host package not known"
    )
    reference_w = tdp_per_vcpu * n_cpus
    return Estimate(
        curve.idle * reference_w,
        full * reference_w,
        source,
        widened,
        METHOD_VCPU,
        tuple(features),
    )
