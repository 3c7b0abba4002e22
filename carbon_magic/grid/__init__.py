"""Grid carbon-intensity providers behind one interface (see ``base.IntensityProvider``).

- ``static``: the packaged tables (cloud region, country, time-zone guess, world average);
- ``electricitymaps``: the Electricity Maps API, with a token;
- ``ukgrid``: the UK Carbon Intensity API, national or by outward postcode.

``make_provider(settings)`` picks one from the settings ``intensity``, ``zone``,
``country``, ``postcode``, ``electricitymaps_token``, ``electricitymaps_url`` and
``ukgrid_url``.
"""

from __future__ import annotations

import re
from typing import Any

from carbon_magic.grid.base import ForecastPoint, Intensity, IntensityProvider

__all__ = ["ForecastPoint", "Intensity", "IntensityProvider", "make_provider"]

_ISO2 = re.compile(r"^[A-Z]{2}$")


def make_provider(settings: Any, **live_options: Any) -> IntensityProvider:
    """The provider the settings ask for, created at once without touching the network.

    ``intensity`` chooses (``static``, ``electricitymaps``, ``ukgrid``); when it is not
    set, ``electricitymaps`` is used if a token is set, else ``static``. A live provider
    starts its first fetch in the background and answers from the static table until
    then. The settings are read now; call again (closing the old provider) when they
    change. ``live_options`` (``cache_s``, ``retry_s``, ``max_stale_s``, ``timeout_s``,
    ``clock``) go to a live provider and are ignored for ``static``.

    Raises ``ValueError`` for an unknown ``intensity`` value.
    """
    # Imported here so that importing the package stays cheap (no urllib, no tables).
    from carbon_magic.grid.static import StaticProvider

    choice = _setting(settings, "intensity")
    token = _setting(settings, "electricitymaps_token")
    if choice is None:
        choice = "electricitymaps" if token else "static"
    static = StaticProvider(settings)
    if choice == "static":
        return static
    if choice == "electricitymaps":
        from carbon_magic.grid.electricitymaps import DEFAULT_URL, ElectricityMapsProvider

        return ElectricityMapsProvider(
            zone=_electricitymaps_zone(settings, static),
            token=token,
            fallback=static,
            base_url=_setting(settings, "electricitymaps_url") or DEFAULT_URL,
            **live_options,
        )
    if choice == "ukgrid":
        from carbon_magic.grid.ukgrid import DEFAULT_URL as UK_URL
        from carbon_magic.grid.ukgrid import UKGridProvider

        return UKGridProvider(
            postcode=_setting(settings, "postcode"),
            fallback=static,
            base_url=_setting(settings, "ukgrid_url") or UK_URL,
            **live_options,
        )
    raise ValueError(f"intensity must be one of static, electricitymaps, ukgrid (got {choice!r})")


def _setting(settings: Any, name: str) -> Any:
    return getattr(settings, name, None)


def _electricitymaps_zone(settings: Any, static: IntensityProvider) -> str | None:
    """The ``zone`` setting, else the country (set, or resolved by the static table)."""
    zone = _setting(settings, "zone")
    if zone:
        return str(zone).strip().upper()
    country = str(_setting(settings, "country") or "").strip().upper()
    if _ISO2.match(country):
        return country
    # The static provider resolves ISO-3 codes and the time-zone guess to its table's
    # country; a cloud region or the world average has no Electricity Maps zone.
    try:
        resolved = static.current().zone.strip().upper()
    except Exception:
        return None
    return resolved if _ISO2.match(resolved) else None
