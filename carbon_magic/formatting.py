"""Human formatting of figures: scaled units and honest precision (no false digits)."""

from __future__ import annotations

import math


def round_sig(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant figures."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, -int(math.floor(math.log10(abs(value)))) + (digits - 1))


# Below this much of the smallest unit a figure reads ``< 0.01 mg``: no µg, no µWh.
_FLOOR = 0.01


def _scaled(value: float, units: list[tuple[float, str]], digits: int) -> str:
    magnitude = abs(value)
    for factor, unit in units:
        if magnitude >= factor:
            return f"{_number(value / factor, digits)} {unit}"
    factor, unit = units[-1]
    amount = value / factor
    if amount != 0 and abs(amount) < _FLOOR:
        return f"< {_FLOOR:g} {unit}"
    # Two significant figures, at most two decimals: 0.042 → 0.04.
    return f"{round(round_sig(amount, digits), 2):g} {unit}"


def _number(value: float, digits: int) -> str:
    rounded = round_sig(value, digits)
    if rounded == 0:
        return "0"
    if abs(rounded) >= 10 ** (digits - 1):
        return f"{rounded:,.0f}"
    return f"{rounded:.{digits}g}"


_GRAMS = [(1e6, "t"), (1e3, "kg"), (1.0, "g"), (1e-3, "mg")]
_WATTS = [(1e3, "kW"), (1.0, "W"), (1e-3, "mW")]
_JOULES_AS_KWH = [(3.6e9, "MWh"), (3.6e6, "kWh"), (3.6e3, "Wh"), (3.6, "mWh")]


def format_grams(grams: float, digits: int = 2) -> str:
    """``1234.5`` → ``"1.2 kg"``; ``0.0042`` → ``"4.2 mg"``."""
    return _scaled(grams, _GRAMS, digits)


def format_watts(watts: float, digits: int = 2) -> str:
    """``38.2`` → ``"38 W"``; ``0.5`` → ``"500 mW"``."""
    return _scaled(watts, _WATTS, digits)


def format_energy_j(joules: float, digits: int = 2) -> str:
    """Joules shown as scaled watt-hours: ``7200`` → ``"2 Wh"``."""
    return _scaled(joules, _JOULES_AS_KWH, digits)


def format_kwh(kwh: float, digits: int = 2) -> str:
    """kWh shown with a scaled unit: ``0.0021`` → ``"2.1 Wh"``."""
    return format_energy_j(kwh * 3.6e6, digits)


_LITRES = [(1e3, "m³"), (1.0, "L"), (1e-3, "mL"), (1e-6, "µL")]


def format_litres(litres: float, digits: int = 2) -> str:
    """``0.0076`` → ``"7.6 mL"``; ``2500`` → ``"2.5 m³"``."""
    return _scaled(litres, _LITRES, digits)


def format_grams_range(grams: float, low: float, high: float) -> str:
    """``≈ 12 g (8.1–17 g)``: the central value and its range, two significant figures;
    nothing yet reads ``0 mg``."""
    if grams == 0 and low == 0 and high == 0:
        return format_grams(0.0)
    return f"≈ {format_grams(grams)} ({format_grams(low)}–{format_grams(high)})"


def format_duration(seconds: float) -> str:
    """``75.2`` → ``"1 min 15 s"``; ``0.0123`` → ``"12 ms"``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def format_methods(methods: dict[str, str]) -> str:
    """``{"cpu": "modelled", "ram": "assumed"}`` → ``"cpu modelled, ram assumed"``."""
    return ", ".join(f"{name} {method}" for name, method in methods.items())


def loaded_line(methods: dict[str, str], intensity_g_per_kwh: float, source: str) -> str:
    """The confirmation printed by ``%load_ext carbon_magic``: what is measured how, and
    the grid intensity (gCO2e/kWh) in use, with its source."""
    return (
        f"carbon_magic: recording every cell from now on ({format_methods(methods)}; "
        f"grid {intensity_g_per_kwh:.0f} g/kWh, {source}). "
        "%carbon status for details, %carbon config to change settings."
    )


def config_changed_line(
    before: dict[str, object], after: dict[str, object], keys: list[str]
) -> str:
    """The confirmation of ``%carbon config key=value ...``: each setting's new value,
    and its old one where it changed."""
    parts = []
    for key in keys:
        if key not in after:
            continue
        old, new = before.get(key), after[key]
        was = "not set" if old is None else old
        parts.append(f"{key} = {new}" + (f" (was {was})" if old != new else " (unchanged)"))
    return "carbon_magic config: " + ", ".join(parts) if parts else "carbon_magic config: no change"
