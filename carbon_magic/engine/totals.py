"""Attributed cumulative totals, and the arithmetic between them.

The tracker keeps one ``Totals`` per attribution mode, advanced tick by tick (window
edges included) from counter differences. A window's figures are the difference of two
snapshots of these totals, turned into a ``Measurement`` here. Pure: nothing reads
hardware or clocks.

Units: joules, grams CO2e, gCO2e/kWh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from carbon_magic.engine import accounting
from carbon_magic.engine.measurement import Measurement
from carbon_magic.grid.base import Intensity
from carbon_magic.vocabulary import COMPONENTS


def zeros() -> dict[str, float]:
    """A 0.0 per component (``cpu``, ``gpu``, ``ram``)."""
    return dict.fromkeys(COMPONENTS, 0.0)


@dataclass
class Totals:
    """Attributed cumulative figures for one attribution mode since the tracker started.

    Facility energy (after PUE) and emissions carry their low and high ends, accumulated
    tick by tick from each source's own range (models) or its method's uncertainty.
    Energies in joules, emissions in grams CO2e.
    """

    energy_j: dict[str, float] = field(default_factory=zeros)
    facility_j: dict[str, float] = field(default_factory=zeros)
    facility_low_j: dict[str, float] = field(default_factory=zeros)
    facility_high_j: dict[str, float] = field(default_factory=zeros)
    devices_j: dict[str, float] = field(default_factory=dict)
    emissions_g: dict[str, float] = field(default_factory=zeros)
    emissions_low_g: dict[str, float] = field(default_factory=zeros)
    emissions_high_g: dict[str, float] = field(default_factory=zeros)
    embodied_g: float = 0.0

    def copy(self) -> Totals:
        """An independent snapshot (the dicts are copied)."""
        return Totals(
            energy_j=dict(self.energy_j),
            facility_j=dict(self.facility_j),
            facility_low_j=dict(self.facility_low_j),
            facility_high_j=dict(self.facility_high_j),
            devices_j=dict(self.devices_j),
            emissions_g=dict(self.emissions_g),
            emissions_low_g=dict(self.emissions_low_g),
            emissions_high_g=dict(self.emissions_high_g),
            embodied_g=self.embodied_g,
        )

    def minus(self, earlier: Totals) -> Totals:
        """What accumulated since ``earlier`` (a snapshot of the same totals)."""

        def diff(now: dict[str, float], then: dict[str, float]) -> dict[str, float]:
            return {key: value - then.get(key, 0.0) for key, value in now.items()}

        return Totals(
            energy_j=diff(self.energy_j, earlier.energy_j),
            facility_j=diff(self.facility_j, earlier.facility_j),
            facility_low_j=diff(self.facility_low_j, earlier.facility_low_j),
            facility_high_j=diff(self.facility_high_j, earlier.facility_high_j),
            devices_j=diff(self.devices_j, earlier.devices_j),
            emissions_g=diff(self.emissions_g, earlier.emissions_g),
            emissions_low_g=diff(self.emissions_low_g, earlier.emissions_low_g),
            emissions_high_g=diff(self.emissions_high_g, earlier.emissions_high_g),
            embodied_g=self.embodied_g - earlier.embodied_g,
        )


def accumulate(
    totals_by_mode: Mapping[str, Totals],
    attributed: Mapping[str, accounting.Attribution],
    intensity: Intensity,
    pue: float,
    embodied: bool,
) -> None:
    """Add one tick's attributed energy to each mode's totals, with PUE and the
    intensity (central, low, high); embodied grams only when ``embodied`` is on.

    This runs at every window edge: the conversions are written out here rather than
    called per component."""
    low_i, high_i = intensity.range_g_per_kwh
    # grams per joule of IT energy: PUE × intensity / (J per kWh)
    g_per_j = accounting.emissions_g(accounting.facility_energy_j(1.0, pue), 1.0)
    central_g, low_g, high_g = g_per_j * intensity.g_per_kwh, g_per_j * low_i, g_per_j * high_i
    for mode, charge in attributed.items():
        totals = totals_by_mode[mode]
        for component, energy in charge.energy.items():
            central, low, high = energy.central_j, energy.low_j, energy.high_j
            if not (central or low or high):
                continue
            totals.energy_j[component] += central
            totals.facility_j[component] += central * pue
            totals.facility_low_j[component] += low * pue
            totals.facility_high_j[component] += high * pue
            totals.emissions_g[component] += central * central_g
            totals.emissions_low_g[component] += low * low_g
            totals.emissions_high_g[component] += high * high_g
        for device, joules in charge.devices_j.items():
            totals.devices_j[device] = totals.devices_j.get(device, 0.0) + joules
        if embodied:
            totals.embodied_g += charge.embodied_g


def measurement_between(
    start: Totals,
    end: Totals,
    *,
    name: str,
    started_at: datetime | None,
    mode: str,
    duration_s: float,
    methods: dict[str, str],
    intensity: Intensity,
    pue: float,
) -> Measurement:
    """The ``Measurement`` of what accumulated from ``start`` to ``end``, named ``name``
    and started at ``started_at`` (UTC).

    ``duration_s`` is the window's length in seconds, ``methods`` how each component is
    obtained. The intensity reported is the effective one (emissions over facility
    energy), or ``intensity`` now when no energy was used."""
    delta = end.minus(start)
    energy_j = {name: delta.energy_j.get(name, 0.0) for name in COMPONENTS}
    facility_j = sum(delta.facility_j.values())
    facility_low = sum(delta.facility_low_j.values())
    facility_high = sum(delta.facility_high_j.values())
    emissions = sum(delta.emissions_g.values())
    low = sum(delta.emissions_low_g.values())
    high = sum(delta.emissions_high_g.values())
    facility_kwh = accounting.joules_to_kwh(facility_j)
    effective = emissions / facility_kwh if facility_kwh > 0 else intensity.g_per_kwh
    return Measurement(
        name=name,
        started_at=started_at,
        duration_s=duration_s,
        energy_j=energy_j,
        energy_kwh=facility_kwh,
        energy_range_kwh=(
            accounting.joules_to_kwh(facility_low),
            accounting.joules_to_kwh(facility_high),
        ),
        emissions_g=emissions,
        emissions_range_g=(low, high),
        embodied_g=delta.embodied_g,
        intensity_g_per_kwh=effective,
        intensity_source=intensity.source,
        pue=pue,
        methods=methods,
        devices={k: v for k, v in delta.devices_j.items() if v or k in start.devices_j},
        mode=mode,
    )
