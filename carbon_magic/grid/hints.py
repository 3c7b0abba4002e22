"""Carbon-aware hints: when in the coming hours the grid is expected to be cleanest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from carbon_magic.grid.base import ForecastPoint, Intensity


@dataclass(frozen=True)
class Hint:
    """The lowest forecast intensity within a horizon, compared with now.

    ``now_g`` and ``best_g`` are gCO2e/kWh; ``best_at`` is an aware UTC time;
    ``saving_fraction`` is ``(now_g − best_g) / now_g`` (0.62 means 62 % less; zero or
    negative when nothing lower is forecast). ``text`` shows ``best_at`` in the local
    time of this machine (or the ``tz`` given to ``carbon_aware_hint``).
    """

    now_g: float
    best_g: float
    best_at: datetime
    saving_fraction: float
    horizon_h: float
    text: str


def carbon_aware_hint(
    current: Intensity,
    forecast: Sequence[ForecastPoint],
    horizon_h: float = 24,
    now: datetime | None = None,
    *,
    tz: tzinfo | None = None,
) -> Hint | None:
    """Compare the grid now with the lowest forecast point in the next ``horizon_h`` hours.

    ``now`` (default: the current time; a naive value is taken as UTC) starts the
    horizon; points from ``now`` to ``now + horizon_h`` count, the earliest winning a
    tie. ``tz`` is the time zone of the text (default: this machine's local time).
    Returns ``None`` when the forecast is empty or has no point in the horizon.
    Raises ``ValueError`` when ``horizon_h`` is not positive.
    """
    if not horizon_h > 0:
        raise ValueError(f"horizon_h must be a positive number of hours (got {horizon_h!r})")
    now = _utc(now or datetime.now(timezone.utc))
    end = now + timedelta(hours=horizon_h)
    ahead = [point for point in forecast if now <= _utc(point.at) <= end]
    if not ahead:
        return None
    best = min(ahead, key=lambda point: (point.g_per_kwh, _utc(point.at)))
    now_g = current.g_per_kwh
    best_g = best.g_per_kwh
    best_at = _utc(best.at)
    saving = (now_g - best_g) / now_g if now_g > 0 else 0.0
    when = _local_when(best_at, now, tz)
    span = f"the next {horizon_h:g} h"
    if saving > 0:
        text = (
            f"grid now {now_g:.0f} g/kWh; lowest in {span} ≈ {best_g:.0f} g/kWh "
            f"at {when} ({_signed_percent(-saving)})"
        )
    else:
        text = f"grid now {now_g:.0f} g/kWh; nothing lower is forecast in {span}"
    return Hint(
        now_g=now_g,
        best_g=best_g,
        best_at=best_at,
        saving_fraction=saving,
        horizon_h=float(horizon_h),
        text=text,
    )


def emissions_if_run_at(emissions_g: float, now_g: float, best_g: float) -> float:
    """What ``emissions_g`` (grams CO2e, emitted at ``now_g`` gCO2e/kWh) would have been
    at ``best_g`` gCO2e/kWh, for the same energy.

    Emissions scale linearly with intensity; with ``now_g`` zero there is nothing to
    scale and ``emissions_g`` is returned. Raises ``ValueError`` for negative inputs.
    """
    if emissions_g < 0 or now_g < 0 or best_g < 0:
        raise ValueError("emissions and intensities must not be negative")
    if now_g == 0:
        return emissions_g
    return emissions_g * best_g / now_g


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _local_when(moment: datetime, now: datetime, tz: tzinfo | None) -> str:
    """``03:00`` today, ``tomorrow 03:00``, or ``Sat 03:00``, plus the zone's name."""
    local = moment.astimezone(tz)
    today = now.astimezone(tz).date()
    clock = local.strftime("%H:%M")
    days = (local.date() - today).days
    if days == 1:
        clock = f"tomorrow {clock}"
    elif days > 1:
        clock = f"{local.strftime('%a')} {clock}"
    zone = local.tzname()
    return f"{clock} {zone}" if zone else clock


def _signed_percent(fraction: float) -> str:
    value = round(fraction * 100)
    sign = "−" if value < 0 else "+"
    return f"{sign}{abs(value)} %"
