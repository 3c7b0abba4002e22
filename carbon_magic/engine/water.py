"""Water a cell consumed locally: cooling water on site plus the grid's water.

    water (L) = WUE × IT energy (kWh) + grid water intensity × facility energy (kWh)

WUE (water usage effectiveness, litres per kWh of IT energy) is the ``wue`` setting, or
the figure a cloud provider publishes for its data centres (provider-wide: no provider
publishes it per region in a form we can ship), or 0 where the machine is not in a data
centre (no evaporative cooling). The grid's water intensity (litres consumed per kWh
delivered, the "WUE of the electricity mix") comes from EcoLogits' electricity mix data
for the country; without EcoLogits it is unknown and only the on-site part is counted.
Ranges come from the energy range and the published WUE span.

Units: litres, kWh, L/kWh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ON_SITE_WUE", "WaterFactors", "grid_water_intensity", "water_factors"]

# Provider → (WUE, low, high in L/kWh, source). Provider-wide annual figures.
ON_SITE_WUE: dict[str, tuple[float, float, float, str]] = {
    "aws": (
        0.12,
        0.12,
        0.18,
        "Amazon sustainability reports: AWS global data-centre WUE 0.12 L/kWh (2025), "
        "0.15 (2024), 0.18 (2023)",
    ),
    "azure": (
        0.30,
        0.30,
        0.49,
        "Microsoft environmental sustainability reports: global data-centre WUE "
        "0.30 L/kWh (FY2024), 0.49 (FY2022)",
    ),
}
NO_DATA_CENTRE = "0 L/kWh: no on-site cooling water assumed outside a data centre (set wue)"


@dataclass(frozen=True)
class WaterFactors:
    """The two water factors of a place and where they come from."""

    wue_l_per_kwh: float  # on-site, per kWh of IT energy
    wue_range: tuple[float, float]
    wue_source: str
    grid_l_per_kwh: float | None  # per kWh delivered; None when unknown
    grid_source: str

    def litres(self, it_kwh: float, facility_kwh: float) -> float:
        """Water consumed for ``it_kwh`` of IT energy drawn as ``facility_kwh``."""
        return self.wue_l_per_kwh * it_kwh + (self.grid_l_per_kwh or 0.0) * facility_kwh

    def litres_range(
        self, it_kwh: float, facility_range_kwh: tuple[float, float], facility_kwh: float
    ) -> tuple[float, float]:
        """(low, high) litres: the energy range (IT scaled with the facility's) and the
        published WUE span."""
        scale = [r / facility_kwh if facility_kwh > 0 else 1.0 for r in facility_range_kwh]
        grid = self.grid_l_per_kwh or 0.0
        return (
            self.wue_range[0] * it_kwh * scale[0] + grid * facility_range_kwh[0],
            self.wue_range[1] * it_kwh * scale[1] + grid * facility_range_kwh[1],
        )


def grid_water_intensity(country: str | None) -> tuple[float | None, str]:
    """The water intensity of a country's electricity (L/kWh) from EcoLogits' electricity
    mixes (ISO-3 zones; the world average when the country is not set), and its source."""
    try:
        from ecologits.electricity_mix_repository import electricity_mixes
    except Exception:
        return None, "grid water unknown (EcoLogits is not installed)"
    zone, where = "WOR", "world average"
    if country:
        try:
            from carbon_magic.grid.static import countries, validate_country

            zone = countries()[validate_country(country)].iso3
            where = zone
        except (KeyError, ValueError):
            pass
    try:
        mix = electricity_mixes.find_electricity_mix(zone=zone)
    except Exception:
        mix = None
    if mix is None:
        return None, f"grid water unknown for {zone} (EcoLogits has no mix for it)"
    return float(
        mix.wue
    ), f"grid water {float(mix.wue):g} L/kWh ({where}, EcoLogits electricity mixes)"


def water_factors(settings: Mapping[str, Any]) -> WaterFactors:
    """The water factors for a session's settings (``wue``, ``cloud_region``, ``country``)."""
    grid, grid_source = grid_water_intensity(settings.get("country"))
    wue = settings.get("wue")
    if wue is not None:
        value = float(wue)
        return WaterFactors(value, (value, value), "set (wue)", grid, grid_source)
    provider = str(settings.get("cloud_region") or "").partition(":")[0]
    if provider in ON_SITE_WUE:
        value, low, high, source = ON_SITE_WUE[provider]
        return WaterFactors(value, (low, high), source, grid, grid_source)
    if provider:
        source = f"0 L/kWh: {provider} publishes no WUE we can use (set wue)"
        return WaterFactors(0.0, (0.0, 0.0), source, grid, grid_source)
    return WaterFactors(0.0, (0.0, 0.0), NO_DATA_CENTRE, grid, grid_source)
