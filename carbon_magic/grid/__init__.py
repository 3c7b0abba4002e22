"""Grid carbon-intensity providers behind one interface (see ``base.IntensityProvider``).

- ``static``: the packaged tables (cloud region, country, time-zone guess, world average);
- ``electricitymaps``: the Electricity Maps API, with a token;
- ``ukgrid``: the UK Carbon Intensity API, national or by outward postcode.

``make_provider(settings)`` picks one by the ``intensity`` setting. Each provider is one
entry of ``PROVIDERS``: its factory and the settings it reads, so whoever holds a
provider knows when to build it again (``provider_settings()``). A new provider is a
module plus one entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carbon_magic.grid.base import ForecastPoint, Intensity, IntensityProvider

if TYPE_CHECKING:
    from carbon_magic.settings import Settings

__all__ = [
    "PROVIDERS",
    "ForecastPoint",
    "Intensity",
    "IntensityProvider",
    "make_provider",
    "provider_settings",
]

_ISO2 = re.compile(r"^[A-Z]{2}$")

# Settings every choice depends on: the choice itself, and what the static table (the
# fallback of every live provider) resolves the location from.
SELECTION_SETTINGS = frozenset({"intensity", "electricitymaps_token", "country", "cloud_region"})

Factory = Callable[[Any, IntensityProvider, dict[str, Any]], IntensityProvider]


@dataclass(frozen=True)
class ProviderEntry:
    """One grid-intensity provider: how to build it and which settings it reads."""

    name: str
    factory: Factory  # (settings, static fallback, live options) -> provider
    settings: frozenset[str]


def _static(
    settings: Settings, static: IntensityProvider, options: dict[str, Any]
) -> IntensityProvider:
    return static


def _electricitymaps(
    settings: Settings, static: IntensityProvider, options: dict[str, Any]
) -> IntensityProvider:
    from carbon_magic.grid.electricitymaps import DEFAULT_URL, ElectricityMapsProvider

    return ElectricityMapsProvider(
        zone=_electricitymaps_zone(settings, static),
        token=_setting(settings, "electricitymaps_token"),
        fallback=static,
        base_url=_setting(settings, "electricitymaps_url") or DEFAULT_URL,
        **options,
    )


def _ukgrid(
    settings: Settings, static: IntensityProvider, options: dict[str, Any]
) -> IntensityProvider:
    from carbon_magic.grid.ukgrid import DEFAULT_URL, UKGridProvider

    return UKGridProvider(
        postcode=_setting(settings, "postcode"),
        fallback=static,
        base_url=_setting(settings, "ukgrid_url") or DEFAULT_URL,
        **options,
    )


PROVIDERS: dict[str, ProviderEntry] = {
    entry.name: entry
    for entry in (
        ProviderEntry("static", _static, frozenset()),
        ProviderEntry(
            "electricitymaps",
            _electricitymaps,
            frozenset({"zone", "electricitymaps_token", "electricitymaps_url"}),
        ),
        ProviderEntry("ukgrid", _ukgrid, frozenset({"postcode", "ukgrid_url"})),
    )
}


def provider_settings() -> frozenset[str]:
    """Every setting a change of which calls for building the provider again."""
    return SELECTION_SETTINGS.union(*(entry.settings for entry in PROVIDERS.values()))


def make_provider(settings: Settings, **live_options: Any) -> IntensityProvider:
    """The provider the settings ask for, created at once without touching the network.

    ``intensity`` chooses (a name in ``PROVIDERS``); when it is not set,
    ``electricitymaps`` is used if a token is set, else ``static``. A live provider
    starts its first fetch in the background and answers from the static table until
    then. The settings are read now; call again (closing the old provider) when any of
    ``provider_settings()`` changes. ``live_options`` (``cache_s``, ``retry_s``,
    ``max_stale_s``, ``timeout_s``, ``clock``) go to a live provider and are ignored for
    ``static``.

    Raises ``ValueError`` for an unknown ``intensity`` value, naming the choices.
    """
    # Imported here so that importing the package stays cheap (no urllib, no tables).
    from carbon_magic.grid.static import StaticProvider

    choice = _setting(settings, "intensity")
    if choice is None:
        choice = "electricitymaps" if _setting(settings, "electricitymaps_token") else "static"
    entry = PROVIDERS.get(choice)
    if entry is None:
        raise ValueError(f"intensity must be one of {', '.join(PROVIDERS)} (got {choice!r})")
    return entry.factory(settings, StaticProvider(settings), live_options)


def provider_or_static(settings: Settings, notice: Callable[[str], None]) -> IntensityProvider:
    """``make_provider(settings)``, or the static table when that fails (an unknown
    ``intensity`` value, a broken provider), with one ``notice(message)`` saying why."""
    try:
        return make_provider(settings)
    except Exception as error:
        from carbon_magic.grid.static import StaticProvider

        notice(f"live grid intensity unavailable: {error}")
        return StaticProvider(settings)


def _setting(settings: Settings, name: str) -> Any:
    return getattr(settings, name, None)


def _electricitymaps_zone(settings: Settings, static: IntensityProvider) -> str | None:
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
