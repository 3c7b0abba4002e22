"""Pure functions from energy to emissions: power model, PUE, intensity, embodied, ranges.

Units: joules, seconds, watts, grams CO2e, gCO2e/kWh. Nothing here reads hardware or
clocks; everything is a function of counter differences, so it is testable against
analytic truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from carbon_magic.engine.measurement import J_PER_KWH
from carbon_magic.sensors.base import ASSUMED, MEASURED, MODELLED

SECONDS_PER_YEAR = 365.25 * 24 * 3600

# Relative half-width of the energy range, by how a component's energy was obtained.
# - measured, RAPL: RAPL tracks package+DRAM power closely (Khan et al., "RAPL in
#   Action", ACM TOMPECS 2018, report errors of a few per cent against plug power for
#   those domains) but leaves out PSU losses, fans and board: ±10 %.
# - measured, NVML total-energy counter: NVIDIA documents ±5 % for board power on
#   recent GPUs (nvidia-smi documentation, "power.draw"); ±10 % leaves room for older
#   boards and counter granularity.
# - modelled: a linear utilisation model with SPECpower-derived per-vCPU coefficients
#   (Cloud Carbon Footprint methodology). The spread of SPECpower results within one
#   microarchitecture is about ±30-50 %; ±40 %.
# - assumed: RAM at a constant W/GB. Published figures differ by a third (0.3725 W/GB,
#   Green Algorithms, Lannelongue et al. 2021; 0.284 W/GB, Boavizta) and DIMM
#   generations differ more: ±50 %.
ENERGY_UNCERTAINTY: dict[str, float] = {MEASURED: 0.10, MODELLED: 0.40, ASSUMED: 0.50}


def cpu_share(process_cpu_s: float, system_busy_s: float) -> float:
    """The kernel's share of busy CPU time in a window, in [0, 1]."""
    if system_busy_s <= 0:
        return 0.0
    return min(max(process_cpu_s / system_busy_s, 0.0), 1.0)


def facility_energy_j(it_energy_j: float, pue: float) -> float:
    """IT energy scaled by the data centre's power usage effectiveness, joules."""
    return it_energy_j * pue


def joules_to_kwh(joules: float) -> float:
    """Joules → kWh."""
    return joules / J_PER_KWH


def emissions_g(energy_j: float, intensity_g_per_kwh: float) -> float:
    """Operational emissions of ``energy_j`` joules at a grid intensity, grams CO2e."""
    return joules_to_kwh(energy_j) * intensity_g_per_kwh


def embodied_rate_g_per_s(
    server_kg: float, gpu_kg: float, n_gpus: int, lifetime_years: float
) -> tuple[float, float]:
    """Amortised manufacturing emissions, grams CO2e per second of use.

    Returns ``(server_rate, gpus_rate)``: the server's share and the GPUs' share, kept
    apart because they are attributed differently in process mode. Defaults in the
    settings follow Cloud Carbon Footprint (1000 kgCO2e per server, +150 kg per GPU,
    4-year life).
    """
    seconds = lifetime_years * SECONDS_PER_YEAR
    return (server_kg * 1000.0 / seconds, gpu_kg * 1000.0 * n_gpus / seconds)


def energy_range_j(
    energy_j: Mapping[str, float], methods: Mapping[str, str]
) -> tuple[float, float]:
    """(low, high) total IT energy, joules, from per-component methods' uncertainties."""
    low = high = 0.0
    for component, joules in energy_j.items():
        spread = ENERGY_UNCERTAINTY.get(methods.get(component, ASSUMED), 0.5)
        low += joules * (1 - spread)
        high += joules * (1 + spread)
    return (low, high)


def emissions_range_g(
    emissions_by_component: Mapping[str, tuple[float, float]],
    methods: Mapping[str, str],
) -> tuple[float, float]:
    """(low, high) operational emissions, grams.

    ``emissions_by_component`` maps a component to its emissions at the low and high
    ends of the intensity range (g). Energy and intensity uncertainties are combined
    multiplicatively at each end: a conservative (wide) interval, never a false
    precision.
    """
    low = high = 0.0
    for component, (at_low, at_high) in emissions_by_component.items():
        spread = ENERGY_UNCERTAINTY.get(methods.get(component, ASSUMED), 0.5)
        low += at_low * (1 - spread)
        high += at_high * (1 + spread)
    return (low, high)


# ------------------------------------------------------------------ attribution


@dataclass(frozen=True)
class EnergyRange:
    """Energy over a span with the interval it lies in, joules."""

    central_j: float
    low_j: float
    high_j: float

    def scaled(self, factor: float) -> EnergyRange:
        """The same range times ``factor`` (a share)."""
        return EnergyRange(self.central_j * factor, self.low_j * factor, self.high_j * factor)


def method_range(energy_j: float, method: str) -> EnergyRange:
    """``energy_j`` with the interval of its method's uncertainty (``ENERGY_UNCERTAINTY``)."""
    spread = ENERGY_UNCERTAINTY.get(method, ENERGY_UNCERTAINTY[ASSUMED])
    return EnergyRange(energy_j, energy_j * (1 - spread), energy_j * (1 + spread))


def memory_share(process_bytes: float, total_bytes: float) -> float:
    """The kernel tree's share of installed memory, in [0, 1]."""
    if total_bytes <= 0:
        return 0.0
    return min(max(process_bytes / total_bytes, 0.0), 1.0)


def gpu_process_fraction(
    energy_j: float,
    duration_s: float,
    used: bool,
    sm_share: float | None,
    idle_w: float,
) -> float:
    """The fraction of one GPU's energy over a tick that process mode charges the kernel.

    Unused: 0. Used alone, or shared where per-process utilisation is unknown
    (``sm_share`` None): 1, the whole device. Shared with a known share of the GPU's
    work (SM utilisation, gfx engine time): that share of the energy above idle
    (``idle_w`` × ``duration_s``); idle stays unattributed in process mode, as in
    Kepler, and is counted in machine mode.
    """
    if not used or energy_j <= 0:
        return 0.0
    if sm_share is None:
        return 1.0
    above_idle_j = max(energy_j - max(idle_w, 0.0) * duration_s, 0.0)
    return above_idle_j * min(max(sm_share, 0.0), 1.0) / energy_j


@dataclass(frozen=True)
class DeviceTick:
    """One device's energy over a tick, and the fraction process mode charges the kernel.

    ``key`` names the device in the per-device breakdown (``package-0``, ``nvidia:0``);
    ``None`` for models, which describe no device of their own.
    """

    component: str
    key: str | None
    energy: EnergyRange
    process_fraction: float


@dataclass
class Attribution:
    """What one attribution mode is charged over a tick."""

    energy: dict[str, EnergyRange]  # per component, IT energy (before PUE)
    devices_j: dict[str, float]  # per device key, central joules
    embodied_g: float


def embodied_tick_g(
    duration_s: float,
    server_g_per_s: float,
    gpu_g_per_s_each: float,
    n_gpus: int,
    n_gpus_used: int,
    cpu_share_of_machine: float,
) -> dict[str, float]:
    """Amortised manufacturing emissions over a tick per mode, grams.

    Machine mode: the server and every GPU. Process mode: the server by the kernel's
    CPU-time share, and the GPUs the kernel uses.
    """
    return {
        "machine": (server_g_per_s + gpu_g_per_s_each * n_gpus) * duration_s,
        "process": (server_g_per_s * cpu_share_of_machine + gpu_g_per_s_each * n_gpus_used)
        * duration_s,
    }


def attribute_tick(
    devices: list[DeviceTick], embodied_g: Mapping[str, float], components: tuple[str, ...]
) -> dict[str, Attribution]:
    """Charge one tick's device energies to ``machine`` (all) and ``process`` (the
    kernel's fractions) mode, per component and per device.

    Pure: every input is a number already measured or modelled. ``embodied_g`` maps a
    mode to its embodied grams over the tick (``embodied_tick_g``).
    """
    result: dict[str, Attribution] = {}
    for mode in ("machine", "process"):
        energy = {c: EnergyRange(0.0, 0.0, 0.0) for c in components}
        devices_j: dict[str, float] = {}
        for device in devices:
            part = (
                device.energy
                if mode == "machine"
                else device.energy.scaled(device.process_fraction)
            )
            total = energy.get(device.component, EnergyRange(0.0, 0.0, 0.0))
            energy[device.component] = EnergyRange(
                total.central_j + part.central_j,
                total.low_j + part.low_j,
                total.high_j + part.high_j,
            )
            if device.key is not None:
                devices_j[device.key] = devices_j.get(device.key, 0.0) + part.central_j
        result[mode] = Attribution(energy, devices_j, embodied_g.get(mode, 0.0))
    return result
